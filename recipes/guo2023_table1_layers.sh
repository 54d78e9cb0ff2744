#!/usr/bin/env bash
# Guo et al. (2023), Table 1 (zero-shot): fine-tuning only the last one/two/three layers, freezing the first four
# layers (all / attention / feed-forward weights), and the last two layers' learning rate x10 (all / attention /
# feed-forward), against plain fine-tuning (DF), on one task.
#
# Usage:
#   recipes/guo2023_table1_layers.sh PRETRAINED TASK DATA OUT           # paper: 4 seeds
#   recipes/guo2023_table1_layers.sh --smoke PRETRAINED TASK DATA OUT   # 1 epoch, 1 seed, CPU
#
# PRETRAINED, TASK (xnli, ner or mlqa), DATA: as recipes/guo2023_table2_methods.sh.  Runs go to
# OUT/<method>/TASK-zero-shot/ with method in df last-1 last-2 last-3 freeze-4 freeze-4-attn freeze-4-ffn enlarge-2
# enlarge-2-attn enlarge-2-ffn, then `xlint report --paper guo2023 --table 1 OUT --published`.  The paper's layer
# numbers are for 12 layers; other depths scale them (the last k of 12 -> round(k*L/12), the first 4 -> round(L/3),
# the last 2 -> round(L/6), each at least 1; see recipes/guo2023_common.sh).  Overrides: METHODS, SEEDS
# (default 1,2,3,4), EPOCHS, PIVOT (en), LAYERS (default: the checkpoint's, `xlint fsf layers`).  $NGPUS runs side
# by side; re-running skips finished fine-tunings; commands are printed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/guo2023_common.sh"

guo_args "$@"
METHODS=${METHODS:-df last-1 last-2 last-3 freeze-4 freeze-4-attn freeze-4-ffn enlarge-2 enlarge-2-attn enlarge-2-ffn}
for method in $METHODS; do guo_run "$method"; done
xl_wait
xl_run "$XLINT" report --paper guo2023 --table 1 --published "$OUT"

#!/usr/bin/env bash
# Guo et al. (2023), Table 6 (zero-shot): re-initialising the first four layers' weights (all / attention /
# feed-forward) before fine-tuning, against plain fine-tuning (DF), on one task.
#
# Usage:
#   recipes/guo2023_table6_reinit.sh PRETRAINED TASK DATA OUT           # paper: 4 seeds
#   recipes/guo2023_table6_reinit.sh --smoke PRETRAINED TASK DATA OUT   # 1 epoch, 1 seed, CPU
#
# PRETRAINED, TASK (xnli, ner or mlqa), DATA: as recipes/guo2023_table2_methods.sh.  Runs go to
# OUT/<method>/TASK-zero-shot/ with method in df reinit-4 reinit-4-attn reinit-4-ffn (`xlint finetune --reinit
# 1-4:all|attn|ffn`; other depths: the first round(L/3) layers), then `xlint report --paper guo2023 --table 6 OUT
# --published`.  Overrides: METHODS, SEEDS (default 1,2,3,4), EPOCHS, PIVOT (en), LAYERS.  $NGPUS runs side by
# side; re-running skips finished fine-tunings; commands are printed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/guo2023_common.sh"

guo_args "$@"
METHODS=${METHODS:-df reinit-4 reinit-4-attn reinit-4-ffn}
for method in $METHODS; do guo_run "$method"; done
xl_wait
xl_run "$XLINT" report --paper guo2023 --table 6 --published "$OUT"

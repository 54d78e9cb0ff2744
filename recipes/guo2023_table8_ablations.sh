#!/usr/bin/env bash
# Guo et al. (2023), Table 8 (zero-shot): which weight sets take which policy: our method against Only S^I,
# Only S^II, S^II to S^I, Only V^I, Only V^II and V^II to V^I, on one task.  NER: no v2-to-v1 run (Policy IV is
# not applied to NER; the paper has no such cell).
#
# Usage:
#   recipes/guo2023_table8_ablations.sh PRETRAINED TASK DATA OUT           # paper: 4 seeds
#   recipes/guo2023_table8_ablations.sh --smoke PRETRAINED TASK DATA OUT   # 1 epoch, 1 seed, CPU
#
# PRETRAINED, TASK (xnli, ner or mlqa), DATA: as recipes/guo2023_table2_methods.sh.  Runs go to
# OUT/<method>/TASK-zero-shot/ with method in ours only-s1 only-s2 s2-to-s1 only-v1 only-v2 v2-to-v1 (`xlint
# finetune --method <method>`, ours = fsf), then `xlint report --paper guo2023 --table 8 OUT --published`.
# Overrides: METHODS, SEEDS (default 1,2,3,4), EPOCHS, PIVOT (en).  $NGPUS runs side by side; re-running skips
# finished fine-tunings; commands are printed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/guo2023_common.sh"

guo_args "$@"
METHODS=${METHODS:-ours only-s1 only-s2 s2-to-s1 only-v1 only-v2 v2-to-v1}
for method in $METHODS; do guo_run "$method"; done
xl_wait
xl_run "$XLINT" report --paper guo2023 --table 8 --published "$OUT"

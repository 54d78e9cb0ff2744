#!/usr/bin/env bash
# Guo et al. (2023), Table 5 (zero-shot): fine-tuning slow and fast with c1 in {0.5, 0.1, 0.01, 0.001, 0}, c2 in
# {5, 10, 15, 20, 100} and r in {1, 2, 3, 4}, one hyper-parameter changed at a time (the others: c1 = 0.01,
# c2 = 10, r = 3), on one task.  NER: no c2 runs (Policy IV is not applied to NER; the paper has no such cells).
#
# Usage:
#   recipes/guo2023_table5_hyper.sh PRETRAINED TASK DATA OUT           # paper: 4 seeds
#   recipes/guo2023_table5_hyper.sh --smoke PRETRAINED TASK DATA OUT   # 1 epoch, 1 seed, CPU
#
# PRETRAINED, TASK (xnli, ner or mlqa), DATA: as recipes/guo2023_table2_methods.sh.  Runs go to
# OUT/c1-<v>/, OUT/c2-<v>/, OUT/r-<v>/ (each TASK-zero-shot/; `xlint finetune --method fsf --fsf-c1 <v>` etc.), then
# `xlint report --paper guo2023 --table 5 OUT --published`.  c1-0.01, c2-10 and r-3 repeat the defaults (= ours).
# Overrides: C1, C2, R (space-separated values), METHODS (instead of the three sweeps), SEEDS (default 1,2,3,4),
# EPOCHS, PIVOT (en).  $NGPUS runs side by side; re-running skips finished fine-tunings; commands are printed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/guo2023_common.sh"

guo_args "$@"
if [ -z "${METHODS:-}" ]; then
  METHODS=""
  for v in ${C1:-0.5 0.1 0.01 0.001 0}; do METHODS+=" c1-$v"; done
  for v in ${C2:-5 10 15 20 100}; do METHODS+=" c2-$v"; done
  for v in ${R:-1 2 3 4}; do METHODS+=" r-$v"; done
fi
for method in $METHODS; do guo_run "$method"; done
xl_wait
xl_run "$XLINT" report --paper guo2023 --table 5 --published "$OUT"

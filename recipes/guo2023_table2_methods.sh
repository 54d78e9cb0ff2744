#!/usr/bin/env bash
# Guo et al. (2023), Table 2: DF, NoisyTune, FS, FF and fine-tuning slow and fast ("ours"), zero-shot and
# few-shot from English, on one task.
#
# Usage:
#   recipes/guo2023_table2_methods.sh PRETRAINED TASK DATA OUT           # paper: 4 seeds, M in 0 5 10 20
#   recipes/guo2023_table2_methods.sh --smoke PRETRAINED TASK DATA OUT   # 1 epoch, 1 seed, CPU
#
# PRETRAINED: an XLM-R release folder (the paper: xlmr.large) or any xlint checkpoint; TASK: xnli, ner or mlqa
# (the report's dataset names); DATA: `xlint data convert ... --encoder PRETRAINED` of that task, English
# training data and the target languages' dev/test sets.  Runs go to OUT/<method>/TASK-<setting>/
# (method: df noisytune fs ff ours, where ours = --method fsf; setting: zero-shot or few-shot-M), then
# `xlint report --paper guo2023 --table 2 OUT --published`.  Overrides: METHODS, FEW_SHOT (default "5 10 20",
# "" for zero-shot only), SEEDS (default 1,2,3,4), EPOCHS, PIVOT (en).  NER runs get Policy IV off, as in the
# paper.  $NGPUS runs side by side; re-running skips finished fine-tunings; commands are printed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/guo2023_common.sh"

guo_args "$@"
METHODS=${METHODS:-df noisytune fs ff ours}
FEW_SHOT=${FEW_SHOT-5 10 20}

for method in $METHODS; do
  for m in 0 $FEW_SHOT; do
    guo_run "$method" "$m"
  done
done
xl_wait
xl_run "$XLINT" report --paper guo2023 --table 2 --published "$OUT"

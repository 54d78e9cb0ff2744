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
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SMOKE=0
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
if [ $# -ne 4 ]; then xl_usage; exit 2; fi
PRETRAINED=$1 TASK=$2 DATA=$3 OUT=$4
PIVOT=${PIVOT:-en}
METHODS=${METHODS:-df noisytune fs ff ours}
FEW_SHOT=${FEW_SHOT-5 10 20}

if [ "$SMOKE" = 1 ]; then
  FINETUNE=(--seeds "${SEEDS:-1}" --epochs 1 --batch-size 16 --lr 1e-3 --max-length 32 --cpu --cpu-threads 1
            --quiet --fsf-window 2 --fsf-cka-interval 2)
  NGPUS=1
else
  FINETUNE=(--seeds "${SEEDS:-1,2,3,4}")
  if [ -n "${EPOCHS:-}" ]; then FINETUNE+=(--epochs "$EPOCHS"); fi
fi

for method in $METHODS; do
  cli_method=$method
  if [ "$method" = ours ]; then cli_method=fsf; fi
  run_options=()
  skip=0
  for option in "${FINETUNE[@]}"; do
    # the --fsf-* options (each with a value) belong to the slow-fast methods only
    if [ "$skip" = 1 ]; then skip=0; continue; fi
    case $option in --fsf-*) if [ "$cli_method" = df ] || [ "$cli_method" = noisytune ]; then skip=1; continue; fi ;;
    esac
    run_options+=("$option")
  done
  for m in 0 $FEW_SHOT; do
    if [ "$m" = 0 ]; then setting=zero-shot; shot=(--setting zero-shot); else
      setting=few-shot-$m; shot=(--setting few-shot --few-shot "$m"); fi
    echo "== $method $TASK $setting"
    xl_finetune "$OUT/$method/$TASK-$setting" "$DATA" --pretrained "$PRETRAINED" --source "$PIVOT" \
      "${shot[@]}" --method "$cli_method" "${run_options[@]}"
  done
done
xl_wait
xl_run "$XLINT" report --paper guo2023 --table 2 --published "$OUT"

#!/usr/bin/env bash
# Guo et al. (2023), Tables 4 and 7 (zero-shot): the source and non-source languages' scores of DF and our method
# (Table 4) and, on XNLI, each language's accuracy (Table 7).  Both read Table 2's zero-shot df and ours runs, so
# this runs only those, through recipes/guo2023_table2_methods.sh (METHODS="df ours" FEW_SHOT=""); a finished
# Table 2 run is reused.  Table 7 also has NoisyTune, FS and FF rows: run the Table 2 recipe for them.
#
# Usage:
#   recipes/guo2023_table4_table7.sh PRETRAINED TASK DATA OUT           # paper: 4 seeds
#   recipes/guo2023_table4_table7.sh --smoke PRETRAINED TASK DATA OUT   # 1 epoch, 1 seed, CPU
#
# PRETRAINED, TASK (xnli, ner or mlqa), DATA, OUT: as recipes/guo2023_table2_methods.sh.  Ends with
# `xlint report --paper guo2023 --table 4 OUT --published` and, for TASK xnli, `--table 7`.  Overrides: SEEDS,
# EPOCHS, PIVOT (en).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/guo2023_common.sh"

guo_args "$@"
smoke=()
if [ "$SMOKE" = 1 ]; then smoke=(--smoke); fi
xl_run env METHODS="df ours" FEW_SHOT= bash "$(dirname "${BASH_SOURCE[0]}")/guo2023_table2_methods.sh" "${smoke[@]}" \
  "$PRETRAINED" "$TASK" "$DATA" "$OUT"
xl_run "$XLINT" report --paper guo2023 --table 4 --published "$OUT"
if [ "$TASK" = xnli ]; then
  xl_run "$XLINT" report --paper guo2023 --table 7 --published "$OUT"
else
  echo "== Table 7 is XNLI's per-language table: not built for $TASK"
fi

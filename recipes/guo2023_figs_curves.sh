#!/usr/bin/env bash
# Guo et al. (2023), Figs. 1, 2, 4, 5 and 6: training curves (every 100 updates: the gap P_src - mean P_tgt on a
# fixed dev subset and the training loss; Fig. 6: each layer's CKA to the pretrained model), on one task.
#
# Usage:
#   recipes/guo2023_figs_curves.sh FIG PRETRAINED TASK DATA OUT           # paper: 4 seeds
#   recipes/guo2023_figs_curves.sh --smoke FIG PRETRAINED TASK DATA OUT   # 1 epoch, 1 seed, CPU
#
# FIG: 1 (DF, FS, FF and ours; the paper: XNLI), 2 (DF's gap and loss; the paper: XNLI, MLQA, NER: run once per
# TASK), 4 (fine-tuning only the last one/two/three layers), 5 (DF and ours; the paper: MLQA, NER) or 6 (DF's CKA
# per layer; the paper: XNLI, MLQA, NER).  PRETRAINED, TASK, DATA: as recipes/guo2023_table2_methods.sh.  Runs
# go to OUT/<method>/TASK-zero-shot/ with --curve-interval (CURVE_INTERVAL, default 100) --curve-examples
# (CURVE_EXAMPLES, default 200) --curve-cka, so use another OUT than the tables' (the curve options change the
# commands); the figure is OUT/guo2023_fig<FIG>_TASK.{png,pdf} (`xlint plot guo-gap`, Fig. 6 `xlint plot guo-cka`).
# Overrides: SEEDS (1,2,3,4), EPOCHS, PIVOT (en), LAYERS.  Re-running skips finished runs; commands are printed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/guo2023_common.sh"

smoke=()
if [ "${1:-}" = "--smoke" ]; then smoke=(--smoke); shift; fi
if [ $# -ne 5 ]; then xl_usage; exit 2; fi
FIG=$1
shift
guo_args "${smoke[@]}" "$@"
case $FIG in
  1) methods="df fs ff ours" ;;
  2 | 6) methods="df" ;;
  4) methods="df last-1 last-2 last-3" ;;
  5) methods="df ours" ;;
  *) echo "guo2023_figs_curves.sh: FIG must be 1, 2, 4, 5 or 6 (got $FIG)" >&2; exit 2 ;;
esac
if [ "$SMOKE" = 1 ]; then interval=${CURVE_INTERVAL:-1} examples=${CURVE_EXAMPLES:-5}
else interval=${CURVE_INTERVAL:-100} examples=${CURVE_EXAMPLES:-200}; fi
GUO_FINETUNE+=(--curve-interval "$interval" --curve-examples "$examples" --curve-cka)

for method in $methods; do guo_run "$method"; done
xl_wait
figure=$OUT/guo2023_fig${FIG}_$TASK
if [ "$FIG" = 6 ]; then
  xl_run "$XLINT" plot guo-cka "$OUT/df/$TASK-zero-shot" --title "Guo et al. Fig. 6: $TASK, DF" --out "$figure"
else
  runs=()
  for method in $methods; do runs+=("$method=$OUT/$method/$TASK-zero-shot"); done
  xl_run "$XLINT" plot guo-gap "${runs[@]}" --title "Guo et al. Fig. $FIG: $TASK (zero-shot)" --out "$figure"
fi

#!/usr/bin/env bash
# Wu, Van Durme & Dredze (2022), Figs 6, 8 and 9 (App. D): Fig. 2 broken down by task: the normalised
# source and target dev scores of the 1D interpolation theta(alpha) = alpha*theta_bi + (1-alpha)*theta_src
# (Eq. 1), mean over seeds and language pairs of ONE task, with the 95% t-interval.
#
#   TASK ner: Fig. 6 (F1)   pos: Fig. 8 (accuracy)   xnli: Fig. 9 (accuracy)
#   Fig. 7 (dependency parsing, LAS) is not reproduced: xlint has no parsing task.
#
# Usage:
#   recipes/wu2022_fig6_9_per_task.sh TASK FT PRETRAINED OUT SRC-TGT...           # paper scale (GPU)
#   recipes/wu2022_fig6_9_per_task.sh --smoke TASK FT PRETRAINED OUT SRC-TGT...   # tiny, on CPU
#
# FT: `xlint data convert` output of TASK with every pair's languages; SRC-TGT: the pairs (paper: en-ar en-de
# en-es en-fr en-hi en-ru en-vi en-zh ar-de ar-es ar-fr ar-hi ar-ru ar-vi ar-zh).  Writes
# OUT/TASK/SRC-TGT/theta_{src,tgt,bi}/ and sweeps/1d-seed<N>/, OUT/fig<N>_TASK.{json,md} (aggregate) and
# OUT/fig<N>_TASK.{png,pdf}.  The same OUT as wu2022_fig5_variance.sh / wu2022_fig4_geometry.sh shares the
# fine-tuned models; re-running skips finished fine-tuning runs and evaluated points.
# Settings: see recipes/wu2022_common.sh (SEEDS, EPOCHS, LR, BATCH, MAX_TRAIN, CPU, THREADS, XLINT, ALPHAS).
set -euo pipefail

SMOKE=0
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
if [ $# -lt 5 ]; then
  sed -n '2,19p' "$0" >&2
  exit 2
fi
TASK=$1 FT=$2 PRETRAINED=$3 OUT=$4
shift 4
# shellcheck source=recipes/wu2022_common.sh
. "$(dirname "$0")/wu2022_common.sh"
case $TASK in
  ner) FIGURE=fig6 ;;
  pos) FIGURE=fig8 ;;
  xnli) FIGURE=fig9 ;;
  *) wu2022_task_metric "$TASK" >/dev/null || exit 2 ;;
esac
wu2022_settings "$SMOKE"
if [ "$SMOKE" = 1 ]; then ALPHAS=${ALPHAS:-0,0.5,1}; else ALPHAS=${ALPHAS:-paper}; fi
PAIRS=$(IFS=,; echo "$*")

wu2022_experiments 1d "$PRETRAINED" "$OUT" "$TASK=$FT:$PAIRS"

echo "== aggregate and figure ($TASK, ${#SWEEPS[@]} sweeps)"
run "$XLINT" interpolate aggregate "${SWEEPS[@]}" --out "$OUT/${FIGURE}_$TASK"
run "$XLINT" plot interpolation "$OUT/${FIGURE}_$TASK.json" --figure 1d --out "$OUT/${FIGURE}_$TASK"
echo "figure: $OUT/${FIGURE}_$TASK.png; table: $OUT/${FIGURE}_$TASK.md"

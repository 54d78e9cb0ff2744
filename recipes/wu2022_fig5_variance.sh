#!/usr/bin/env bash
# Wu, Van Durme & Dredze (2022), Fig. 5 (App. C): the normalised variance over seeds of the 1D interpolation
# theta(alpha) = alpha*theta_bi + (1-alpha)*theta_src (Eq. 1), per language role (source, target), the mean
# over experiments (tasks x language pairs) of each experiment's variance of score / bilingual score.
#
# Usage:
#   recipes/wu2022_fig5_variance.sh PRETRAINED OUT TASK=FT:SRC-TGT[,SRC-TGT...]...           # paper scale (GPU)
#   recipes/wu2022_fig5_variance.sh --smoke PRETRAINED OUT TASK=FT:SRC-TGT[,SRC-TGT...]...   # tiny, on CPU
#
# TASK: ner, pos or xnli (parsing, the paper's fourth task, is not built); FT: that task's `xlint data convert`
# output, e.g.  pos=data/ft-pos:en-fr,en-de ner=data/ft-ner:en-fr.  Needs two seeds or more (SEEDS; the paper:
# 3).  Writes OUT/TASK/SRC-TGT/theta_{src,tgt,bi}/ and sweeps/1d-seed<N>/ (shared with
# wu2022_fig6_9_per_task.sh given the same OUT), OUT/fig5.{json,md} (aggregate) and OUT/fig5.{png,pdf}.
# Re-running skips finished fine-tuning runs and evaluated points.
# Settings: see recipes/wu2022_common.sh (SEEDS, EPOCHS, LR, BATCH, MAX_TRAIN, CPU, THREADS, XLINT, ALPHAS).
set -euo pipefail

SMOKE=0
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
if [ $# -lt 3 ]; then
  sed -n '2,15p' "$0" >&2
  exit 2
fi
PRETRAINED=$1 OUT=$2
shift 2
# shellcheck source=recipes/wu2022_common.sh
. "$(dirname "$0")/wu2022_common.sh"
wu2022_settings "$SMOKE"
if [ "${SEEDS//,/}" = "$SEEDS" ]; then echo "the variance over seeds needs two seeds or more (SEEDS=$SEEDS)" >&2; exit 2; fi
if [ "$SMOKE" = 1 ]; then ALPHAS=${ALPHAS:-0,0.5,1}; else ALPHAS=${ALPHAS:-paper}; fi

wu2022_experiments 1d "$PRETRAINED" "$OUT" "$@"

echo "== aggregate and figure (${#SWEEPS[@]} sweeps)"
run "$XLINT" interpolate aggregate "${SWEEPS[@]}" --out "$OUT/fig5"
run "$XLINT" plot interpolation "$OUT/fig5.json" --figure variance --out "$OUT/fig5"
echo "figure: $OUT/fig5.png; table: $OUT/fig5.md"

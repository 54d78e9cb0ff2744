#!/usr/bin/env bash
# Wu, Van Durme & Dredze (2022), Fig. 4 (App. B): ||delta_src|| / ||delta_tgt|| against the angle between
# delta_src = theta_src - theta_bi and delta_tgt = theta_tgt - theta_bi (Eq. 3's directions), one point per
# experiment (task x language pair) and seed.
#
# Usage:
#   recipes/wu2022_fig4_geometry.sh PRETRAINED OUT TASK=FT:SRC-TGT[,SRC-TGT...]...           # paper scale (GPU)
#   recipes/wu2022_fig4_geometry.sh --smoke PRETRAINED OUT TASK=FT:SRC-TGT[,SRC-TGT...]...   # tiny, on CPU
#
# TASK: ner, pos or xnli; FT: that task's `xlint data convert` output (as in wu2022_fig5_variance.sh, whose
# fine-tuned models it shares given the same OUT).  The geometry needs the three models only: each seed's
# 2D sweep (OUT/TASK/SRC-TGT/sweeps/geometry-seed<N>/) evaluates the bilingual model alone (the full planes
# are recipes/wu2022_fig3_plane.sh's).  Writes OUT/fig4.{json,md} (the norm ratios and angles) and
# OUT/fig4.{png,pdf}.  Re-running skips finished fine-tuning runs and sweeps.
# Settings: see recipes/wu2022_common.sh (SEEDS, EPOCHS, LR, BATCH, MAX_TRAIN, CPU, THREADS, XLINT).
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

wu2022_experiments geometry "$PRETRAINED" "$OUT" "$@"

echo "== aggregate and figure (${#SWEEPS[@]} sweeps)"
run "$XLINT" interpolate aggregate "${SWEEPS[@]}" --out "$OUT/fig4"
run "$XLINT" plot interpolation "$OUT/fig4.json" --figure geometry --out "$OUT/fig4"
echo "figure: $OUT/fig4.png; table: $OUT/fig4.md"

#!/usr/bin/env bash
# Wu, Van Durme & Dredze (2022), Fig. 2 and Fig. 5: 1D interpolation between the source-only model
# and the bilingual model, theta(alpha) = alpha*theta_bi + (1-alpha)*theta_src (Eq. 1), scored on the
# source and target dev sets, normalised by each seed's bilingual model, mean with a 95% t-interval.
#
# Usage:
#   recipes/wu2022_fig2_interpolation.sh FT PRETRAINED SRC TGT OUT           # paper scale (GPU)
#   recipes/wu2022_fig2_interpolation.sh --smoke FT PRETRAINED SRC TGT OUT   # tiny, on CPU
#
# FT: `xlint data convert` output with SRC and TGT train/dev splits (e.g. POS en and tr); PRETRAINED:
# the pretrained checkpoint.  Paper grid: alpha in {-0.5, -0.4, ..., 1.5} plus 12 points near 0 and 1
# (ALPHAS=paper; --smoke: 0,0.5,1).  Writes OUT/theta_{src,tgt,bi}/ (fine-tuning),
# OUT/sweeps/1d-seed<N>/ (sweeps), OUT/fig2.{json,md} (aggregate), OUT/fig2.{png,pdf} and
# OUT/fig5.{png,pdf}.  Re-running skips finished fine-tuning runs and evaluated points.
# Settings: see recipes/wu2022_common.sh (SEEDS, EPOCHS, LR, BATCH, MAX_TRAIN, CPU, THREADS, XLINT).
set -euo pipefail

SMOKE=0
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
if [ $# -ne 5 ]; then
  sed -n '2,16p' "$0" >&2
  exit 2
fi
FT=$1 PRETRAINED=$2 SRC=$3 TGT=$4 OUT=$5
# shellcheck source=recipes/wu2022_common.sh
. "$(dirname "$0")/wu2022_common.sh"
wu2022_settings "$SMOKE"
if [ "$SMOKE" = 1 ]; then ALPHAS=${ALPHAS:-0,0.5,1}; else ALPHAS=${ALPHAS:-paper}; fi

echo "== fine-tuning theta_src, theta_tgt, theta_bi (seeds $SEEDS)"
wu2022_finetune "$FT" "$PRETRAINED" "$SRC" "$TGT" "$OUT"

echo "== 1D sweeps (Eq. 1)"
sweeps=()
for seed in ${SEEDS//,/ }; do
  run "$XLINT" interpolate "$(wu2022_checkpoint "$OUT" theta_src "$seed")" "$(wu2022_checkpoint "$OUT" theta_bi "$seed")" \
    --out "$OUT/sweeps/1d-seed$seed" --alphas="$ALPHAS" --languages "$SRC,$TGT" "${DEVICE[@]}" "${THREAD_ARGS[@]}" -q
  sweeps+=("$OUT/sweeps/1d-seed$seed")
done

echo "== aggregate and figures"
run "$XLINT" interpolate aggregate "${sweeps[@]}" --out "$OUT/fig2"
run "$XLINT" plot interpolation "$OUT/fig2.json" --figure 1d --out "$OUT/fig2"
run "$XLINT" plot interpolation "$OUT/fig2.json" --figure variance --out "$OUT/fig5"
echo "figures: $OUT/fig2.png (Fig. 2), $OUT/fig5.png (Fig. 5); table: $OUT/fig2.md"

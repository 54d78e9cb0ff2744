#!/usr/bin/env bash
# Wu, Van Durme & Dredze (2022), Fig. 3 and Fig. 4: 2D interpolation in the plane of the three models,
# theta(a1, a2) = theta_bi + a1*(theta_src - theta_bi) + a2*(theta_tgt - theta_bi) (Eq. 3), contours of
# the normalised dev score per language, and the norm ratio and angle of delta_src and delta_tgt.
#
# Usage:
#   recipes/wu2022_fig3_plane.sh FT PRETRAINED SRC TGT OUT           # paper scale (GPU)
#   recipes/wu2022_fig3_plane.sh --smoke FT PRETRAINED SRC TGT OUT   # tiny, on CPU
#
# The same fine-tuned models as recipes/wu2022_fig2_interpolation.sh (same OUT: they are reused).
# Grid: a1 and a2 in {-0.5, -0.4, ..., 1.5} (ALPHAS=paper, 441 points; --smoke: 0,1).  Paper scale
# splits each seed's plane over SHARDS processes (default 1; one per GPU with CUDA_VISIBLE_DEVICES)
# and merges them.  Writes OUT/sweeps/2d-seed<N>/, OUT/fig3.{json,md}, OUT/fig3.{png,pdf} and
# OUT/fig4.{png,pdf}.  Re-running skips finished runs and evaluated points.
set -euo pipefail

SMOKE=0
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
if [ $# -ne 5 ]; then
  sed -n '2,15p' "$0" >&2
  exit 2
fi
FT=$1 PRETRAINED=$2 SRC=$3 TGT=$4 OUT=$5
# shellcheck source=recipes/wu2022_common.sh
. "$(dirname "$0")/wu2022_common.sh"
wu2022_settings "$SMOKE"
if [ "$SMOKE" = 1 ]; then ALPHAS=${ALPHAS:-0,1}; SHARDS=${SHARDS:-2}; else ALPHAS=${ALPHAS:-paper}; SHARDS=${SHARDS:-1}; fi

echo "== fine-tuning theta_src, theta_tgt, theta_bi (seeds $SEEDS)"
wu2022_finetune "$FT" "$PRETRAINED" "$SRC" "$TGT" "$OUT"

echo "== 2D sweeps (Eq. 3), $SHARDS shard(s) per seed"
sweeps=()
for seed in ${SEEDS//,/ }; do
  args=("$(wu2022_checkpoint "$OUT" theta_src "$seed")" "$(wu2022_checkpoint "$OUT" theta_bi "$seed")"
        --plane "$(wu2022_checkpoint "$OUT" theta_tgt "$seed")" --out "$OUT/sweeps/2d-seed$seed"
        --alphas="$ALPHAS" --languages "$SRC,$TGT" "${DEVICE[@]}" "${THREAD_ARGS[@]}" -q)
  if [ "$SHARDS" -gt 1 ]; then
    pids=()
    for ((i = 0; i < SHARDS; i++)); do
      run "$XLINT" interpolate "${args[@]}" --shard "$i/$SHARDS" &
      pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
    run "$XLINT" interpolate merge "$OUT/sweeps/2d-seed$seed"
  else
    run "$XLINT" interpolate "${args[@]}"
  fi
  sweeps+=("$OUT/sweeps/2d-seed$seed")
done

echo "== aggregate and figures"
run "$XLINT" interpolate aggregate "${sweeps[@]}" --out "$OUT/fig3"
run "$XLINT" plot interpolation "$OUT/fig3.json" --figure 2d --out "$OUT/fig3"
run "$XLINT" plot interpolation "$OUT/fig3.json" --figure geometry --out "$OUT/fig4"
echo "figures: $OUT/fig3.png (Fig. 3), $OUT/fig4.png (Fig. 4); table: $OUT/fig3.md"

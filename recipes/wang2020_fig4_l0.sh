#!/usr/bin/env bash
# Wang, Lipton & Tsvetkov (2020), Sec. 3.3 and Fig. 4: how much do languages share the parameters of a
# jointly pretrained model?  Per-language L0 masks (hard-concrete gates, Louizos et al. 2017) over the
# frozen JointPair model, compared by the cosine of their log alpha per layer, attention vs FFN (Fig. 4a),
# within a language over two seeds (the baseline), and by the most negative / positive groups (Fig. 4b).
#
# Usage:
#   recipes/wang2020_fig4_l0.sh DATA LANG OUT            # paper scale: pretrain JointPair (LANG+en) on GPUs
#   recipes/wang2020_fig4_l0.sh --smoke DATA LANG OUT    # the same steps with tiny models on CPU
#   PRETRAINED=CKPT recipes/wang2020_fig4_l0.sh ...      # mask an existing joint checkpoint (e.g. Table 2's
#                                                        # OUT/jointpair/checkpoint_best.pt) instead
#
# DATA comes from `xlint preprocess` over LANG and en.  Steps: (1) JointPair pretraining into OUT/jointpair
# (skipped once finished, or with PRETRAINED); (2) `xlint l0 train` into OUT/masks/<lang>/seed<k> (finished
# jobs are skipped, interrupted ones resume from checkpoint_last.pt); (3) `xlint l0 compare` into OUT/fig4
# (compare.json, fig4a_l0.png/pdf, fig4b_l0.png/pdf; redone only when a mask is newer).
# Environment: LAMBDA (default 0.1), L0_UPDATES (mask updates, default 2000; smoke: SMOKE_UPDATES, 4),
# SEEDS (default 1,2), NGPUS (paper scale, default 4), XLINT (the xlint executable).
set -euo pipefail

SMOKE=0
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
if [ $# -ne 3 ]; then
  sed -n '2,19p' "$0" >&2
  exit 2
fi
DATA=$1 LANG_CODE=$2 OUT=$3
PIVOT=${PIVOT:-en}
XLINT=${XLINT:-xlint}
LAMBDA=${LAMBDA:-0.1}
SEEDS=${SEEDS:-1,2}

if [ "$SMOKE" = 1 ]; then
  PRETRAIN=(--scale tiny --max-update "${SMOKE_UPDATES:-4}")
  L0=(--max-update "${SMOKE_UPDATES:-4}" --cpu --cpu-threads 1 --log-interval 1)
else
  PRETRAIN=(--scale paper -- --distributed-world-size "${NGPUS:-4}")
  L0=(--max-update "${L0_UPDATES:-2000}" --log-interval 100)
fi

run() {
  echo "+ $*"
  "$@"
}

if [ -n "${PRETRAINED:-}" ]; then
  CKPT=$PRETRAINED
  echo "== pretrained model: $CKPT (given)"
elif [ -f "$OUT/jointpair/.done" ]; then
  CKPT=$OUT/jointpair/checkpoint_last.pt
  echo "== pretrained model: $CKPT (done, skipped)"
else
  echo "== JointPair pretraining ($LANG_CODE+$PIVOT)"
  run "$XLINT" pretrain "$DATA" --setting jointpair --lang "$LANG_CODE" --pivot "$PIVOT" --variant joint \
    --save-dir "$OUT/jointpair" "${PRETRAIN[@]}"
  touch "$OUT/jointpair/.done"
  CKPT=$OUT/jointpair/checkpoint_last.pt
fi

echo "== L0 masks per language ($LANG_CODE, $PIVOT; seeds $SEEDS)"
run "$XLINT" l0 train "$CKPT" --data "$DATA" --languages "$LANG_CODE,$PIVOT" --seeds "$SEEDS" \
  --lambda "$LAMBDA" --save-dir "$OUT/masks" "${L0[@]}"

if [ -f "$OUT/fig4/compare.json" ] && [ -z "$(find "$OUT/masks" -name gates.json -newer "$OUT/fig4/compare.json")" ]; then
  echo "== comparison: $OUT/fig4/compare.json (up to date, skipped)"
else
  echo "== comparison (Fig. 4a, 4b)"
  run "$XLINT" l0 compare "$OUT/masks" --pair "$LANG_CODE,$PIVOT" --out "$OUT/fig4"
fi
echo "figures in $OUT/fig4/{fig4a_l0,fig4b_l0}.{png,pdf}, numbers in $OUT/fig4/compare.json"

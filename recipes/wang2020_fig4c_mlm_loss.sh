#!/usr/bin/env bash
# Wang, Lipton & Tsvetkov (2020), Fig. 4 (right): average MLM training loss after the warm-up stage
# of JointPair, + adapt and + meta adapt (Sec. 4.3: adapters converge more slowly than JointPair,
# meta adapters faster).
#
#   runs: Table 2's pretraining rows jointpair, adapt, meta-adapt (recipes/wang2020_table2_pretrain.sh's
#   settings and layout, OUT/<row>/), with JSON logs; figure: OUT/fig4c_mlm_loss.{png,pdf}
#
# Usage:
#   recipes/wang2020_fig4c_mlm_loss.sh DATA LANG OUT            # paper scale, $NGPUS GPUs (default 4)
#   recipes/wang2020_fig4c_mlm_loss.sh --smoke DATA LANG OUT    # same rows, tiny models on CPU
#
# DATA comes from `xlint preprocess` over LANG and en.  The figure reads OUT/<row>/train.log's train_inner
# records after the warm-up (the preset's warmup_updates: 4000 at paper scale; --smoke: 2 warm-up updates of
# SMOKE_UPDATES=8, logged every update), up to UNTIL (default: the whole run; the paper's "early stage").
# Table 2's own runs (wang2020_table2_pretrain.sh) log in fairseq's default format: give this recipe
# another OUT, or re-train them here.  A finished run is skipped (OUT/<row>/.done), an interrupted one
# resumes from its checkpoint_last.pt; the figure is redrawn every time.  Commands are printed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SMOKE=0
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
if [ $# -ne 3 ]; then xl_usage; exit 2; fi
DATA=$1 LANG_CODE=$2 OUT=$3
PIVOT=${PIVOT:-en}

if [ "$SMOKE" = 1 ]; then
  SCALE=(--scale tiny --max-update "${SMOKE_UPDATES:-8}")
  FAIRSEQ=(-- --log-format json --log-interval 1 --warmup-updates 2)
else
  SCALE=(--scale paper)
  FAIRSEQ=(-- --log-format json --distributed-world-size "${NGPUS:-4}")
fi
PLOT_ARGS=()
if [ -n "${UNTIL:-}" ]; then PLOT_ARGS=(--until-update "$UNTIL"); fi

# row name | --variant | legend label (wang2020_table2_pretrain.sh's rows, all --setting jointpair)
ROWS=(
  "jointpair|joint|JointPair"
  "adapt|adapter|+ adapt"
  "meta-adapt|meta_adapter|+ meta adapt"
)
runs=()
for entry in "${ROWS[@]}"; do
  IFS='|' read -r name variant label <<<"$entry"
  runs+=("$label=$OUT/$name")
  if [ -e "$OUT/$name/.done" ]; then echo "== $name: done, skipped"; continue; fi
  echo "== $name (jointpair, $variant)"
  xl_run "$XLINT" pretrain "$DATA" --setting jointpair --lang "$LANG_CODE" --pivot "$PIVOT" --variant "$variant" \
    "${SCALE[@]}" --save-dir "$OUT/$name" "${FAIRSEQ[@]}"
  touch "$OUT/$name/.done"
done
xl_run "$XLINT" plot mlm-loss "${runs[@]}" "${PLOT_ARGS[@]}" --out "$OUT/fig4c_mlm_loss"

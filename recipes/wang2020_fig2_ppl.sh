#!/usr/bin/env bash
# Wang, Lipton & Tsvetkov (2020), Fig. 2: validation perplexity per language over training,
# monolingual models against the bilingual JointPair model.
#
#   runs: Mono (lg), Mono (en), JointPair (lg+en); figure: OUT/fig2_ppl.{png,pdf}
#
# Usage:
#   recipes/wang2020_fig2_ppl.sh DATA LANG OUT            # paper scale, $NGPUS GPUs (default 4)
#   recipes/wang2020_fig2_ppl.sh --smoke DATA LANG OUT    # same runs, tiny models on CPU
#
# DATA comes from `xlint preprocess` over LANG and en.  Paper scale validates once per epoch
# (10k updates, 50 epochs); --smoke validates every 2 updates; logs are JSON (--log-format json).  A finished run is skipped
# (OUT/<run>/.done), an interrupted one resumes from its checkpoint_last.pt; the figure is
# redrawn every time.  Commands are printed before they run.
set -euo pipefail

SMOKE=0
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
if [ $# -ne 3 ]; then
  sed -n '2,15p' "$0" >&2
  exit 2
fi
DATA=$1 LANG_CODE=$2 OUT=$3
PIVOT=${PIVOT:-en}
XLINT=${XLINT:-xlint}

if [ "$SMOKE" = 1 ]; then
  SCALE=(--scale tiny --max-update "${SMOKE_UPDATES:-4}")
  FAIRSEQ=(-- --log-format json --validate-interval-updates 2)
  X_AXIS=update
else
  SCALE=(--scale paper)
  FAIRSEQ=(-- --log-format json --distributed-world-size "${NGPUS:-4}")
  X_AXIS=epoch
fi

run() { echo "+ $*"; "$@"; }

# run name | --setting | --lang
RUNS=(
  "mono-$LANG_CODE|mono|$LANG_CODE"
  "mono-$PIVOT|mono|$PIVOT"
  "jointpair|jointpair|$LANG_CODE"
)
dirs=()
for entry in "${RUNS[@]}"; do
  IFS='|' read -r name setting lang <<<"$entry"
  dirs+=("$OUT/$name")
  if [ -e "$OUT/$name/.done" ]; then echo "== $name: done, skipped"; continue; fi
  echo "== $name ($setting)"
  run "$XLINT" pretrain "$DATA" --setting "$setting" --lang "$lang" --pivot "$PIVOT" --variant joint \
    "${SCALE[@]}" --save-dir "$OUT/$name" "${FAIRSEQ[@]}"
  touch "$OUT/$name/.done"
done
run "$XLINT" plot ppl "${dirs[@]}" --x "$X_AXIS" --languages "$LANG_CODE,$PIVOT" --out "$OUT/fig2_ppl"

#!/usr/bin/env bash
# Wang, Lipton & Tsvetkov (2020), Table 4: does a third, similar language help?
#
#   rows: JointPair (lg+en) and JointTri (lg+similar+en), both fully shared (variant joint)
#
# Usage:
#   recipes/wang2020_table4_jointtri.sh DATA LANG SIMILAR OUT            # paper scale, $NGPUS GPUs (default 4)
#   recipes/wang2020_table4_jointtri.sh --smoke DATA LANG SIMILAR OUT    # tiny models on CPU
#
# DATA comes from `xlint preprocess` over LANG, SIMILAR and en (one joint BPE), e.g. the
# paper's pairs are ar + he and fr + es with en.  The checkpoints then go to `xlint finetune`
# like Table 2's.  Finished rows are skipped (OUT/<row>/.done), interrupted ones resume;
# commands are printed.
set -euo pipefail

SMOKE=0
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
if [ $# -ne 4 ]; then
  sed -n '2,14p' "$0" >&2
  exit 2
fi
DATA=$1 LANG_CODE=$2 SIMILAR=$3 OUT=$4
PIVOT=${PIVOT:-en}
XLINT=${XLINT:-xlint}

if [ "$SMOKE" = 1 ]; then
  SCALE=(--scale tiny --max-update "${SMOKE_UPDATES:-4}")
  DISTRIBUTED=()
else
  SCALE=(--scale paper)
  DISTRIBUTED=(-- --distributed-world-size "${NGPUS:-4}")
fi

run() { echo "+ $*"; "$@"; }

# row name | --setting
for row in "jointpair|jointpair" "jointtri|jointtri"; do
  IFS='|' read -r name setting <<<"$row"
  if [ -e "$OUT/$name/.done" ]; then echo "== $name: done, skipped"; continue; fi
  echo "== $name ($setting)"
  run "$XLINT" pretrain "$DATA" --setting "$setting" --lang "$LANG_CODE" --similar "$SIMILAR" --pivot "$PIVOT" \
    --variant joint "${SCALE[@]}" --save-dir "$OUT/$name" "${DISTRIBUTED[@]}"
  touch "$OUT/$name/.done"
done
echo "checkpoints in $OUT/{jointpair,jointtri}"

#!/usr/bin/env bash
# Wang, Lipton & Tsvetkov (2020), Table 5: does a smaller corpus change negative interference?
#
#   data: every LANG also as LANG_l, its training text subsampled to $SUBSAMPLE sentences
#         (paper: fr_l and ru_l, 100k sentences), with `xlint preprocess --subsample LANG_l=N`
#   rows: Mono and JointPair (with en) for every LANG and LANG_l
#
# Usage:
#   recipes/wang2020_table5_corpus_size.sh OUT LANG=FILE... en=FILE            # paper scale, $NGPUS GPUs
#   recipes/wang2020_table5_corpus_size.sh --smoke OUT LANG=FILE... en=FILE    # tiny models on CPU
#
# e.g. recipes/wang2020_table5_corpus_size.sh out fr=wiki.fr.txt ru=wiki.ru.txt en=wiki.en.txt
# The preprocessed data go to OUT/data (re-running skips `xlint preprocess`'s finished steps),
# the models to OUT/<row>; finished rows are skipped (OUT/<row>/.done), interrupted ones
# resume; commands are printed.  The checkpoints then go to `xlint finetune`.
set -euo pipefail

SMOKE=0
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
if [ $# -lt 2 ]; then
  sed -n '2,17p' "$0" >&2
  exit 2
fi
OUT=$1
shift
PIVOT=${PIVOT:-en}
XLINT=${XLINT:-xlint}

if [ "$SMOKE" = 1 ]; then
  SUBSAMPLE=${SUBSAMPLE:-50}
  PREPROCESS=(--vocab-size "${VOCAB_SIZE:-100}" --workers 1 --quiet)
  SCALE=(--scale tiny --max-update "${SMOKE_UPDATES:-4}")
  DISTRIBUTED=()
else
  SUBSAMPLE=${SUBSAMPLE:-100000}
  PREPROCESS=()
  SCALE=(--scale paper)
  DISTRIBUTED=(-- --distributed-world-size "${NGPUS:-4}")
fi

run() { echo "+ $*"; "$@"; }

inputs=() subsample=() studied=() have_pivot=0
for input in "$@"; do
  code=${input%%=*} file=${input#*=}
  if [ "$code" = "$input" ] || [ -z "$file" ]; then echo "expected LANG=FILE, got $input" >&2; exit 2; fi
  inputs+=("$code=$file")
  if [ "$code" = "$PIVOT" ]; then have_pivot=1; continue; fi
  inputs+=("${code}_l=$file")
  subsample+=(--subsample "${code}_l=$SUBSAMPLE")
  studied+=("$code" "${code}_l")
done
if [ "$have_pivot" = 0 ] || [ ${#studied[@]} -eq 0 ]; then
  echo "give $PIVOT=FILE and at least one other LANG=FILE" >&2
  exit 2
fi

echo "== data (${studied[*]} $PIVOT)"
run "$XLINT" preprocess --out "$OUT/data" "${inputs[@]}" "${subsample[@]}" "${PREPROCESS[@]}"

for lang in "${studied[@]}"; do
  for setting in mono jointpair; do
    name="$setting-$lang"
    if [ -e "$OUT/$name/.done" ]; then echo "== $name: done, skipped"; continue; fi
    echo "== $name"
    run "$XLINT" pretrain "$OUT/data" --setting "$setting" --lang "$lang" --pivot "$PIVOT" --variant joint \
      "${SCALE[@]}" --save-dir "$OUT/$name" "${DISTRIBUTED[@]}"
    touch "$OUT/$name/.done"
  done
done
echo "checkpoints in $OUT/{mono,jointpair}-{$(IFS=,; echo "${studied[*]}")}"

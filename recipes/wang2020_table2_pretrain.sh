#!/usr/bin/env bash
# Wang, Lipton & Tsvetkov (2020), Table 2: pretrain every model row for one studied language.
#
#   rows: Mono (lg), JointPair (lg+en), +ffn, +attn, +adapt, +share adapt, +meta adapt
#
# Usage:
#   recipes/wang2020_table2_pretrain.sh DATA LANG OUT            # paper scale, $NGPUS GPUs (default 4)
#   recipes/wang2020_table2_pretrain.sh --smoke DATA LANG OUT    # same rows, tiny models on CPU
#
# DATA comes from `xlint preprocess` over LANG and en (32k joint BPE in the paper), e.g.
#   xlint preprocess --out data/ar-en ar=wiki.ar.txt en=wiki.en.txt
# Paper scale: 8 layers, d=512, FFN 2048, 8 heads; batch 128 x 256 tokens per GPU on 4 GPUs (512),
# fp16, Adam with XLM's inverse-sqrt schedule, 50 epochs of 10k updates.  Each row resumes from
# OUT/<row>/checkpoint_last.pt, so the recipe can be re-run after an interruption.
set -euo pipefail

SMOKE=0
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
if [ $# -ne 3 ]; then
  sed -n '2,16p' "$0" >&2
  exit 2
fi
DATA=$1 LANG_CODE=$2 OUT=$3
PIVOT=${PIVOT:-en}
XLINT=${XLINT:-xlint}

if [ "$SMOKE" = 1 ]; then
  SCALE=(--scale tiny --max-update "${SMOKE_UPDATES:-4}")
  DISTRIBUTED=()
else
  SCALE=(--scale paper)
  # the paper preset already sets --ddp-backend legacy_ddp and --fp16-no-flatten-grads
  DISTRIBUTED=(-- --distributed-world-size "${NGPUS:-4}")
fi

# row name | --setting | --variant
ROWS=(
  "mono|mono|joint"
  "jointpair|jointpair|joint"
  "ffn|jointpair|ffn"
  "attn|jointpair|attn"
  "adapt|jointpair|adapter"
  "share-adapt|jointpair|shared_adapter"
  "meta-adapt|jointpair|meta_adapter"
)

for row in "${ROWS[@]}"; do
  IFS='|' read -r name setting variant <<<"$row"
  echo "== $name ($setting, $variant)"
  "$XLINT" pretrain "$DATA" --setting "$setting" --lang "$LANG_CODE" --pivot "$PIVOT" \
    --variant "$variant" "${SCALE[@]}" --save-dir "$OUT/$name" "${DISTRIBUTED[@]}"
done
echo "checkpoints in $OUT/{mono,jointpair,ffn,attn,adapt,share-adapt,meta-adapt}"

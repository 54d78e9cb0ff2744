#!/usr/bin/env bash
# Wang, Lipton & Tsvetkov (2020), Table 6: XNLI accuracy, zero-shot from English, of every bilingual row.
#
#   rows: JointPair, +ffn, +attn, +adapt, +share adapt, +meta adapt (recipes/wang2020_table2_pretrain.sh;
#   XNLI has English training data only, so there is no within-language setting and no Mono row)
#
# Usage:
#   recipes/wang2020_table6_xnli.sh PRETRAINED LANG XNLI_DATA OUT           # paper grid and epochs
#   recipes/wang2020_table6_xnli.sh --smoke PRETRAINED LANG XNLI_DATA OUT   # 1 epoch, 1 seed, CPU
#
# PRETRAINED: OUT of wang2020_table2_pretrain.sh for LANG (ar, fr, ru, hi or sw);
# XNLI_DATA: `xlint data convert xnli --corpus <its DATA> --languages en,LANG en:train=... dev=... test=...`.
# Runs go to OUT/LANG/<row>/xnli-zero-shot/, then `xlint report --paper wang2020 --table 6 OUT --published`.
# Paper: grid batch {4,8} x encoder lr {1e-6,5e-6,2e-5} x classifier lr {5e-6,2e-5,5e-5}, 200 epochs (sic),
# $SEEDS (default 1,2,3); $NGPUS runs side by side.  Overrides: ROWS, SEEDS, EPOCHS, PIVOT (en).
# Re-running skips finished fine-tunings; commands are printed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SMOKE=0
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
if [ $# -ne 4 ]; then xl_usage; exit 2; fi
PRETRAINED=$1 LANG_CODE=$2 DATA=$3 OUT=$4
PIVOT=${PIVOT:-en}
ROWS=${ROWS:-jointpair ffn attn adapt share-adapt meta-adapt}

if [ "$SMOKE" = 1 ]; then
  FINETUNE=(--seeds "${SEEDS:-1}" --epochs 1 --batch-size 16 --lr 1e-3 --head-lr 1e-3 --max-length 32 --cpu
            --cpu-threads 1 --quiet)
  NGPUS=1
else
  FINETUNE=(--seeds "${SEEDS:-1,2,3}" --grid paper)
  if [ -n "${EPOCHS:-}" ]; then FINETUNE+=(--epochs "$EPOCHS"); fi
fi

for row in $ROWS; do
  if [ "$row" = mono ]; then echo "== mono: no en, no zero-shot XNLI; skipped"; continue; fi
  echo "== $LANG_CODE $row xnli zero-shot"
  checkpoint="$PRETRAINED/$row/checkpoint_last.pt"
  xl_finetune "$OUT/$LANG_CODE/$row/xnli-zero-shot" "$DATA" --pretrained "$checkpoint" \
    --setting zero-shot --source "$PIVOT" --targets "$LANG_CODE" "${FINETUNE[@]}"
done
xl_wait
xl_run "$XLINT" report --paper wang2020 --table 6 --published "$OUT"

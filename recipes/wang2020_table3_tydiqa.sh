#!/usr/bin/env bash
# Wang, Lipton & Tsvetkov (2020), Tables 3 and 7: TyDiQA-GoldP F1 (and F1/EM) of every pretrained row.
#
#   rows: Mono, JointPair, +ffn, +attn, +adapt, +share adapt, +meta adapt (recipes/wang2020_table2_pretrain.sh)
#   within: fine-tune, select and test on LANG; zero-shot: fine-tune and select on en, test on LANG (not Mono)
#
# Usage:
#   recipes/wang2020_table3_tydiqa.sh PRETRAINED LANG TYDIQA_DATA OUT           # paper grid and epochs
#   recipes/wang2020_table3_tydiqa.sh --smoke PRETRAINED LANG TYDIQA_DATA OUT   # 1 epoch, 1 seed, CPU
#
# PRETRAINED: OUT of wang2020_table2_pretrain.sh for LANG (ar, ru, sw or te: TyDiQA has no fr or hi);
# TYDIQA_DATA: `xlint data convert tydiqa --corpus <its DATA> --languages LANG,en` output.
# Runs go to OUT/LANG/<row>/tydiqa-{within,zero-shot}/, then Table 3 (F1) and Table 7 (F1/EM) come from
# the same runs: `xlint report --paper wang2020 --table 3|7 OUT --published`.
# Paper: grid batch {16,32} x lr {2,3,5}e-5, 2 epochs, $SEEDS (default 1,2,3); $NGPUS runs side by side.
# Overrides: ROWS="mono jointpair ...", SETTINGS="within zero-shot", SEEDS, PIVOT (en).
# Table 5: LANG fr, LANG_DIR=fr_l (runs in OUT/fr_l/) and PRETRAINED_SUFFIX=-fr_l (reads
# PRETRAINED/<row>-fr_l/, wang2020_table5_corpus_size.sh's names): the fr_l model on French data.
# Re-running skips finished fine-tunings; commands are printed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SMOKE=0
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
if [ $# -ne 4 ]; then xl_usage; exit 2; fi
PRETRAINED=$1 LANG_CODE=$2 DATA=$3 OUT=$4
PIVOT=${PIVOT:-en}
ROWS=${ROWS:-mono jointpair ffn attn adapt share-adapt meta-adapt}
SETTINGS=${SETTINGS:-within zero-shot}

if [ "$SMOKE" = 1 ]; then
  FINETUNE=(--seeds "${SEEDS:-1}" --epochs 1 --batch-size 16 --lr 1e-3 --max-length 64 --cpu --cpu-threads 1
            --quiet)
  NGPUS=1
else
  FINETUNE=(--seeds "${SEEDS:-1,2,3}" --grid paper)
fi

for row in $ROWS; do
  for setting in $SETTINGS; do
    case $setting in
      within) source_args=(--setting within --source "$LANG_CODE") ;;
      zero-shot)
        if [ "$row" = mono ]; then continue; fi  # a Mono model has no en
        source_args=(--setting zero-shot --source "$PIVOT" --targets "$LANG_CODE") ;;
      *) echo "unknown setting $setting" >&2; exit 2 ;;
    esac
    echo "== $LANG_CODE $row tydiqa $setting"
    checkpoint="$PRETRAINED/$row${PRETRAINED_SUFFIX:-}/checkpoint_last.pt"
    xl_finetune "$OUT/${LANG_DIR:-$LANG_CODE}/$row/tydiqa-$setting" "$DATA" --pretrained "$checkpoint" \
      "${source_args[@]}" "${FINETUNE[@]}"
  done
done
xl_wait
xl_run "$XLINT" report --paper wang2020 --table 3 --published "$OUT"
xl_run "$XLINT" report --paper wang2020 --table 7 --published "$OUT"

#!/usr/bin/env bash
# Wang, Lipton & Tsvetkov (2020), Table 2: NER and POS of every pretrained row, within-language and zero-shot.
#
#   rows: Mono, JointPair, +ffn, +attn, +adapt, +share adapt, +meta adapt (recipes/wang2020_table2_pretrain.sh)
#   within: fine-tune, select and test on LANG; zero-shot: fine-tune and select on en, test on LANG (not Mono)
#
# Usage:
#   recipes/wang2020_table2_downstream.sh PRETRAINED LANG NER_DATA POS_DATA OUT           # paper grid and epochs
#   recipes/wang2020_table2_downstream.sh --smoke PRETRAINED LANG NER_DATA POS_DATA OUT   # 1 epoch, 1 seed, CPU
#
# PRETRAINED: OUT of wang2020_table2_pretrain.sh for LANG (PRETRAINED/<row>/checkpoint_last.pt);
# NER_DATA, POS_DATA: `xlint data convert wikiann|conllu --corpus <its DATA>` outputs with en and LANG.
# Runs go to OUT/LANG/<row>/{ner,pos}-{within,zero-shot}/ (`xlint report`'s layout), then
# `xlint report --paper wang2020 --table 2 OUT --published` prints the table (every language under OUT).
# Paper: grid batch {16,32} x lr {2,3,5}e-5, 10 epochs, $SEEDS (default 1,2,3); $NGPUS runs side by side.
# Overrides: ROWS="mono jointpair ...", TASKS="ner pos", SETTINGS="within zero-shot", SEEDS, PIVOT (en),
# NGPUS, XLINT.
# Table 5: LANG fr, LANG_DIR=fr_l (runs in OUT/fr_l/) and PRETRAINED_SUFFIX=-fr_l (reads
# PRETRAINED/<row>-fr_l/, wang2020_table5_corpus_size.sh's names): the fr_l model on French data.
# Re-running skips finished fine-tunings; commands are printed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SMOKE=0
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
if [ $# -ne 5 ]; then xl_usage; exit 2; fi
PRETRAINED=$1 LANG_CODE=$2 NER_DATA=$3 POS_DATA=$4 OUT=$5
PIVOT=${PIVOT:-en}
ROWS=${ROWS:-mono jointpair ffn attn adapt share-adapt meta-adapt}
TASKS=${TASKS:-ner pos}
SETTINGS=${SETTINGS:-within zero-shot}

if [ "$SMOKE" = 1 ]; then
  FINETUNE=(--seeds "${SEEDS:-1}" --epochs 1 --batch-size 16 --lr 1e-3 --max-length 32 --cpu --cpu-threads 1
            --quiet)
  NGPUS=1
else
  FINETUNE=(--seeds "${SEEDS:-1,2,3}" --grid paper)
fi

for row in $ROWS; do
  checkpoint="$PRETRAINED/$row${PRETRAINED_SUFFIX:-}/checkpoint_last.pt"
  for task in $TASKS; do
    case $task in ner) data=$NER_DATA ;; pos) data=$POS_DATA ;; *) echo "unknown task $task" >&2; exit 2 ;; esac
    for setting in $SETTINGS; do
      case $setting in
        within) source_args=(--setting within --source "$LANG_CODE") ;;
        zero-shot)
          if [ "$row" = mono ]; then continue; fi  # a Mono model has no en
          source_args=(--setting zero-shot --source "$PIVOT" --targets "$LANG_CODE") ;;
        *) echo "unknown setting $setting" >&2; exit 2 ;;
      esac
      echo "== $LANG_CODE $row $task $setting"
      xl_finetune "$OUT/${LANG_DIR:-$LANG_CODE}/$row/$task-$setting" "$data" --pretrained "$checkpoint" \
        "${source_args[@]}" "${FINETUNE[@]}"
    done
  done
done
xl_wait
xl_run "$XLINT" report --paper wang2020 --table 2 --published "$OUT"

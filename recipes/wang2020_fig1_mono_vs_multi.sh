#!/usr/bin/env bash
# Wang, Lipton & Tsvetkov (2020), Fig. 1: monolingual (Mono) against bilingual (JointPair) models on NER,
# within-language (fine-tuned, selected and tested on LANG), per language.
#
#   runs: Table 2's Mono and JointPair NER within-language fine-tunings (recipes/wang2020_table2_downstream.sh
#   with ROWS="mono jointpair" TASKS=ner SETTINGS=within, OUT/LANG/<row>/ner-within/); figure:
#   OUT/fig1_mono_vs_multi.{png,pdf}, with the paper's Mono, JointPair and XLM numbers hatched beside ours
#
# Usage:
#   recipes/wang2020_fig1_mono_vs_multi.sh PRETRAINED LANG NER_DATA OUT           # paper grid and epochs
#   recipes/wang2020_fig1_mono_vs_multi.sh --smoke PRETRAINED LANG NER_DATA OUT   # 1 epoch, 1 seed, CPU
#
# PRETRAINED: OUT of wang2020_table2_pretrain.sh for LANG (PRETRAINED/{mono,jointpair}/checkpoint_last.pt);
# NER_DATA: `xlint data convert wikiann` output with LANG.  Run it once per language (ar fr ru hi sw te in the
# paper) into the same OUT: the figure shows every language found there.  With the same OUT as
# wang2020_table2_downstream.sh, its finished runs are reused (re-running skips finished fine-tunings).
# Overrides: SEEDS, NGPUS, XLINT (see wang2020_table2_downstream.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SMOKE=()
if [ "${1:-}" = "--smoke" ]; then SMOKE=(--smoke); shift; fi
if [ $# -ne 4 ]; then xl_usage; exit 2; fi
PRETRAINED=$1 LANG_CODE=$2 NER_DATA=$3 OUT=$4

# TASKS=ner: the POS_DATA argument is never read
ROWS="mono jointpair" TASKS=ner SETTINGS=within \
  bash "$(dirname "${BASH_SOURCE[0]}")/wang2020_table2_downstream.sh" "${SMOKE[@]}" "$PRETRAINED" "$LANG_CODE" \
  "$NER_DATA" "$NER_DATA" "$OUT"
xl_run "$XLINT" plot mono-vs-multi "$OUT" --task ner --published --out "$OUT/fig1_mono_vs_multi"

#!/usr/bin/env bash
# Guo et al. (2023)'s methods on the demo's real data (not a table of the paper): DF, NoisyTune, FS, FF and ours
# (fine-tuning slow and fast) fine-tune the demo's Joint (grc+tr+en) model on English POS, zero-shot to Turkish
# and Koine Greek, over 4 seeds, with training curves; then the per-language table and the gap-curve figure.
#
# Usage:
#   recipes/guo2023_demo_pos.sh PRETRAINED POS_DATA OUT           # the README's table: 4 seeds, 2 CPU jobs at a time
#   recipes/guo2023_demo_pos.sh --smoke PRETRAINED POS_DATA OUT   # 1 epoch, 1 seed
#
# PRETRAINED: the demo's Joint checkpoint (demo-runs/runs/joint-*/checkpoints/checkpoint_last.pt, after `make demo`);
# POS_DATA: its POS folder (demo-runs/pos-data-*).  The demo's budget: 2 epochs of 2,000 English sentences
# (126 updates), lr 5e-4, batch 32; FSF and FS with a loss window of 20 updates (the paper's 100 needs 200
# updates before the slow phase can start); a curve point every 10 updates on 100 dev sentences per language.
# Runs go to OUT/<method>/pos-zero-shot/; the table is `xlint report --paper guo2023 --table pos OUT`, the figure
# OUT/guo2023_demo_gap.{png,pdf}.  Overrides: METHODS, SEEDS (1,2,3,4), NGPUS (parallel CPU jobs, default 2).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/guo2023_common.sh"

smoke=()
if [ "${1:-}" = "--smoke" ]; then smoke=(--smoke); shift; fi
if [ $# -ne 3 ]; then xl_usage; exit 2; fi
guo_args "${smoke[@]}" "$1" pos "$2" "$3"
CURVES=(--curve-interval 10 --curve-examples 100)
if [ "$SMOKE" = 1 ]; then
  CURVES=(--curve-interval 1 --curve-examples 5)
else
  GUO_FINETUNE=(--seeds "${SEEDS:-1,2,3,4}" --epochs 2 --batch-size 32 --lr 5e-4 --max-train-examples 2000 --cpu
                --cpu-threads 1 --quiet)
  GUO_FSF_SMOKE=(--fsf-window 20)  # the slow-fast methods' options (see guo2023_common.sh)
  NGPUS=${NGPUS:-2}
fi
GUO_FINETUNE+=("${CURVES[@]}")
METHODS=${METHODS:-df noisytune fs ff ours}

for method in $METHODS; do guo_run "$method"; done
xl_wait
xl_run "$XLINT" report --paper guo2023 --table pos "$OUT"
runs=()
for method in $METHODS; do
  case $method in df) label=DF ;; noisytune) label=NoisyTune ;; ours) label=FSF ;; *) label=${method^^} ;; esac
  runs+=("$label=$OUT/$method/pos-zero-shot")
done
xl_run "$XLINT" plot guo-gap "${runs[@]}" --title "Joint model, POS en -> tr, grc (zero-shot; band: min-max over seeds)" \
  --out "$OUT/guo2023_demo_gap"

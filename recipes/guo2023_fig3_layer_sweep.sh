#!/usr/bin/env bash
# Guo et al. (2023), Fig. 3 (zero-shot): for every layer k = 1..L, one run that freezes all of layer k's weights and
# one that re-initialises them, against plain fine-tuning (DF, the dotted line); then the fine-tuning slow and fast
# weight sets the sweep implies (`xlint fsf derive-sets`, the paper's Sec. 3 rule) and the figure.
#
# Usage:
#   recipes/guo2023_fig3_layer_sweep.sh PRETRAINED TASK DATA OUT           # paper: 4 seeds, 12 layers
#   recipes/guo2023_fig3_layer_sweep.sh --smoke PRETRAINED TASK DATA OUT   # 1 epoch, 1 seed, CPU
#
# PRETRAINED, TASK (xnli, ner or mlqa), DATA: as recipes/guo2023_table2_methods.sh.  Runs go to
# OUT/df/, OUT/freeze-layer-<k>/, OUT/reinit-layer-<k>/ (each TASK-zero-shot/; `xlint finetune --freeze <k>:all`,
# `--reinit <k>:all`); the sets go to OUT/guo2023_fsf_sets_TASK.txt (its last line: the --fsf-* options for
# `xlint finetune --method fsf`), the figure to OUT/guo2023_fig3_TASK.{png,pdf}.  Overrides: SWEEP_LAYERS
# (space-separated k, default 1..L), REINIT_DROP (1.0), FREEZE_GAIN (0.0), SEEDS (default 1,2,3,4), EPOCHS, PIVOT
# (en), LAYERS.  $NGPUS runs side by side; re-running skips finished fine-tunings; commands are printed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/guo2023_common.sh"

guo_args "$@"
guo_layers
guo_run df
for k in ${SWEEP_LAYERS:-$(seq 1 "$GUO_L")}; do
  guo_run "freeze-layer-$k"
  guo_run "reinit-layer-$k"
done
xl_wait
xl_run "$XLINT" fsf derive-sets "$OUT" --task "$TASK" --reinit-drop "${REINIT_DROP:-1.0}" \
  --freeze-gain "${FREEZE_GAIN:-0.0}" | tee "$OUT/guo2023_fsf_sets_$TASK.txt"
# `xlint plot guo-layers` is another engineer's command: a --smoke run draws only where it is installed (its
# --help answers), so that the runs and the sets are tested without it; a full run always draws.
if [ "$SMOKE" = 1 ] && ! "$XLINT" plot guo-layers --help >/dev/null 2>&1; then
  echo "== xlint plot guo-layers is not available: no figure (--smoke)"
else
  xl_run "$XLINT" plot guo-layers "$OUT" --task "$TASK" --out "$OUT/guo2023_fig3_$TASK"
fi

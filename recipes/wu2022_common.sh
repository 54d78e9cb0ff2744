# Shared by recipes/wu2022_*.sh (sourced, not run): settings and the fine-tuning of
# Wu, Van Durme & Dredze (2022)'s three models from ONE pretrained checkpoint, per seed:
#
#   theta_src  source only          xlint finetune --setting zero-shot --source SRC --targets TGT
#   theta_tgt  target only          xlint finetune --setting within --source TGT
#   theta_bi   source + target      xlint finetune --setting bilingual --source SRC --targets TGT
#
# App. A: Adam, lr 2e-5, 10% linear warm-up then linear decay, 5 epochs, batch 32, max length 128
# (a sliding window for tagging), selection on the training languages' dev sets.  Every seed's three
# models get the same head initialisation (fairseq's --seed; tests/test_interpolate_cli.py checks it).
# xlint finetune reuses a finished run whose command is unchanged, so a re-run skips it.
#
# Environment (defaults: paper scale; --smoke: tiny CPU runs):
#   SEEDS (1,2,3)  EPOCHS (5)  LR (2e-5)  BATCH (32)  MAX_LENGTH (128)  MAX_TRAIN (0: all)
#   CPU (0; 1: --cpu)  THREADS (CPU threads)  XLINT (xlint)
set -euo pipefail

XLINT=${XLINT:-xlint}

wu2022_settings() {  # $1: 1 for --smoke
  if [ "$1" = 1 ]; then
    SEEDS=${SEEDS:-1,2} EPOCHS=${EPOCHS:-1} LR=${LR:-2e-3} BATCH=${BATCH:-16} MAX_LENGTH=${MAX_LENGTH:-128}
    MAX_TRAIN=${MAX_TRAIN:-0} CPU=${CPU:-1} THREADS=${THREADS:-1}
  else
    SEEDS=${SEEDS:-1,2,3} EPOCHS=${EPOCHS:-5} LR=${LR:-2e-5} BATCH=${BATCH:-32} MAX_LENGTH=${MAX_LENGTH:-128}
    MAX_TRAIN=${MAX_TRAIN:-0} CPU=${CPU:-0} THREADS=${THREADS:-}
  fi
  DEVICE=()
  if [ "$CPU" = 1 ]; then DEVICE=(--cpu); fi
  THREAD_ARGS=()
  if [ -n "$THREADS" ]; then THREAD_ARGS=(--threads "$THREADS"); fi
  RUN_NAME="bs${BATCH}-lr$(printf '%g' "$LR")"
}

run() {  # print the command, then run it
  echo "+ $*" >&2
  "$@"
}

wu2022_finetune() {  # FT PRETRAINED SRC TGT OUT
  local ft=$1 pretrained=$2 src=$3 tgt=$4 out=$5
  local common=(--pretrained "$pretrained" --seeds "$SEEDS" --epochs "$EPOCHS" --lr "$LR" --batch-size "$BATCH"
                --max-length "$MAX_LENGTH" --max-train-examples "$MAX_TRAIN" --metric acc --warmup-ratio 0.1
                --no-evaluate "${DEVICE[@]}")
  if [ -n "$THREADS" ]; then common+=(--cpu-threads "$THREADS"); fi
  local extra=(-- --no-epoch-checkpoints --no-last-checkpoints)
  run "$XLINT" finetune "$ft" --save-dir "$out/theta_src" --setting zero-shot --source "$src" --targets "$tgt" \
    "${common[@]}" "${extra[@]}"
  run "$XLINT" finetune "$ft" --save-dir "$out/theta_tgt" --setting within --source "$tgt" "${common[@]}" "${extra[@]}"
  run "$XLINT" finetune "$ft" --save-dir "$out/theta_bi" --setting bilingual --source "$src" --targets "$tgt" \
    "${common[@]}" "${extra[@]}"
}

wu2022_checkpoint() {  # OUT MODEL SEED -> the selected checkpoint of that run
  echo "$1/$2/$RUN_NAME/seed$3/checkpoint_best.pt"
}

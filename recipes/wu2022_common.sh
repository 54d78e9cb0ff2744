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

wu2022_finetune() {  # FT PRETRAINED SRC TGT OUT [METRIC: model selection, default acc (POS, XNLI); NER: f1]
  local ft=$1 pretrained=$2 src=$3 tgt=$4 out=$5 metric=${6:-acc}
  local common=(--pretrained "$pretrained" --seeds "$SEEDS" --epochs "$EPOCHS" --lr "$LR" --batch-size "$BATCH"
                --max-length "$MAX_LENGTH" --max-train-examples "$MAX_TRAIN" --metric "$metric" --warmup-ratio 0.1
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

# --------------------------------------------------------------------------- several tasks and pairs
# recipes/wu2022_fig4_geometry.sh, wu2022_fig5_variance.sh and wu2022_fig6_9_per_task.sh pool experiments
# (task x language pair); one experiment's runs live in OUT/<task>/<src>-<tgt>/ (theta_*, sweeps/), so
# the three recipes share their fine-tunings and 1D sweeps when given the same OUT.

wu2022_task_metric() {  # TASK -> the selection metric of its fine-tunings (the paper's: NER F1, POS/XNLI acc)
  case $1 in
    ner) echo f1 ;;
    pos | xnli) echo acc ;;
    parsing) echo "Fig. 7 (dependency parsing) is not reproduced: xlint has no parsing task" >&2; return 2 ;;
    *) echo "unknown task '$1' (ner, pos, xnli)" >&2; return 2 ;;
  esac
}

wu2022_check_pair() {  # SRC-TGT: refuse anything else
  if ! [[ $1 =~ ^[A-Za-z_]+-[A-Za-z_]+$ ]]; then
    echo "expected a language pair SRC-TGT (e.g. en-fr), got '$1'" >&2
    return 2
  fi
}

wu2022_experiment() {  # MODE(1d|geometry) TASK FT PRETRAINED SRC-TGT OUT: fine-tune, sweep every seed; appends to SWEEPS
  local mode=$1 task=$2 ft=$3 pretrained=$4 pair=$5 out=$6
  local metric src=${pair%%-*} tgt=${pair#*-}
  metric=$(wu2022_task_metric "$task")
  wu2022_check_pair "$pair"
  local dir="$out/$task/$pair"
  echo "== $task $src->$tgt: fine-tuning theta_src, theta_tgt, theta_bi (seeds $SEEDS)"
  wu2022_finetune "$ft" "$pretrained" "$src" "$tgt" "$dir" "$metric"
  local seed args sweep
  for seed in ${SEEDS//,/ }; do
    args=("$(wu2022_checkpoint "$dir" theta_src "$seed")" "$(wu2022_checkpoint "$dir" theta_bi "$seed")")
    sweep="$dir/sweeps/$mode-seed$seed"
    case $mode in
      1d) args+=(--alphas="$ALPHAS") ;;
      # the norms and the angle need no evaluated plane: the grid is the bilingual model alone
      geometry) args+=(--plane "$(wu2022_checkpoint "$dir" theta_tgt "$seed")" --alphas=0 --alphas2=0) ;;
      *) echo "unknown sweep mode $mode" >&2; return 2 ;;
    esac
    run "$XLINT" interpolate "${args[@]}" --out "$sweep" --languages "$src,$tgt" "${DEVICE[@]}" "${THREAD_ARGS[@]}" -q
    SWEEPS+=("$sweep")
  done
}

wu2022_experiments() {  # MODE PRETRAINED OUT TASK=FT:SRC-TGT[,SRC-TGT...]...: every task's pairs; fills SWEEPS
  local mode=$1 pretrained=$2 out=$3 spec task ft pairs pair pass
  shift 3
  SWEEPS=()
  for pass in check run; do  # every argument is checked before anything runs
    for spec in "$@"; do
      task=${spec%%=*} ft=${spec#*=}
      pairs=${ft##*:} ft=${ft%:*}
      if [ "$task" = "$spec" ] || [ "$ft" = "$pairs" ] || [ -z "$ft" ] || [ -z "$pairs" ]; then
        echo "expected TASK=FT:SRC-TGT[,SRC-TGT...], got '$spec'" >&2
        return 2
      fi
      for pair in ${pairs//,/ }; do
        if [ $pass = check ]; then
          wu2022_task_metric "$task" >/dev/null
          wu2022_check_pair "$pair"
        else
          wu2022_experiment "$mode" "$task" "$ft" "$pretrained" "$pair" "$out"
        fi
      done
    done
  done
}

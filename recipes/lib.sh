# shellcheck shell=bash
# Shared helpers of the recipes: `source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"`.
#
#   xl_usage                   print the calling script's header comment (its usage) to stderr
#   xl_run CMD...              print "+ CMD" (shell-quoted), then run it
#   xl_finetune SAVE_DIR ARGS  `$XLINT finetune ARGS --save-dir SAVE_DIR`, skipped when SAVE_DIR/results.json
#                              holds test results of the same command (SAVE_DIR/recipe.command); with
#                              NGPUS > 1 up to NGPUS runs go side by side, one GPU each
#                              (CUDA_VISIBLE_DEVICES), their output in SAVE_DIR/recipe.log
#   xl_wait                    wait for the runs xl_finetune started in the background; fail if one failed
#
# Environment: XLINT (default xlint), NGPUS (default 1).

XLINT=${XLINT:-xlint}
XL_RUNNING=()
XL_LOGS=()

xl_usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
}

xl_quote() {
  printf '%q ' "$@" | sed 's/ $//'
}

xl_run() {
  echo "+ $(xl_quote "$@")"
  "$@"
}

xl_finished() {  # SAVE_DIR COMMAND-TEXT: results.json with test results, written by this very command
  local save_dir=$1 text=$2
  [ -f "$save_dir/results.json" ] && [ -f "$save_dir/recipe.command" ] \
    && [ "$(cat "$save_dir/recipe.command")" = "$text" ] \
    && grep -q '"test"' "$save_dir/results.json"
}

xl_finetune() {
  local save_dir=$1
  shift
  local command=("$XLINT" finetune "$@" --save-dir "$save_dir")
  local text
  text=$(xl_quote "${command[@]}")
  if xl_finished "$save_dir" "$text"; then
    echo "== $save_dir: done, skipped"
    return 0
  fi
  mkdir -p "$save_dir"
  if [ "${NGPUS:-1}" -le 1 ]; then
    echo "+ $text"
    "${command[@]}"
    printf '%s\n' "$text" >"$save_dir/recipe.command"
    return 0
  fi
  if [ ${#XL_RUNNING[@]} -ge "$NGPUS" ]; then xl_wait; fi
  local gpu=${#XL_RUNNING[@]}
  echo "+ CUDA_VISIBLE_DEVICES=$gpu $text  (log: $save_dir/recipe.log)"
  ( CUDA_VISIBLE_DEVICES=$gpu "${command[@]}" >"$save_dir/recipe.log" 2>&1 \
      && printf '%s\n' "$text" >"$save_dir/recipe.command" ) &
  XL_RUNNING+=("$!")
  XL_LOGS+=("$save_dir/recipe.log")
}

xl_wait() {
  local failed=0 i
  for i in "${!XL_RUNNING[@]}"; do
    if ! wait "${XL_RUNNING[$i]}"; then
      echo "failed: see ${XL_LOGS[$i]}" >&2
      failed=1
    fi
  done
  XL_RUNNING=()
  XL_LOGS=()
  return $failed
}

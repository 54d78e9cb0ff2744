# shellcheck shell=bash
# Shared pieces of the Guo et al. (2023) recipes: `source "$(dirname "${BASH_SOURCE[0]}")/guo2023_common.sh"`
# (it sources lib.sh).  Every run is `xlint finetune --setting zero-shot` into OUT/<method>/<task>-zero-shot/,
# the layout `xlint report --paper guo2023` and `xlint fsf derive-sets` read.
#
#   guo_args "$@"                parse `[--smoke] PRETRAINED TASK DATA OUT`: sets SMOKE PRETRAINED TASK DATA OUT PIVOT
#                                and GUO_FINETUNE (the common xlint finetune options; --smoke: 1 epoch, 1 seed, CPU)
#   guo_layers                   L, the encoder depth of PRETRAINED (`xlint fsf layers`; $LAYERS overrides), into GUO_L
#                                (guo_run calls it once, for the first method whose options name layers)
#   guo_method_options METHOD    the method's xlint finetune options, one per line (layer methods need GUO_L)
#   guo_run METHOD [M]           fine-tune METHOD on TASK zero-shot, or few-shot with M examples per target language
#                                (OUT/METHOD/TASK-few-shot-M; skipped when finished, see lib.sh xl_finetune);
#                                on NER, c2-<v> and v2-to-v1 are not run: Policy IV is not applied to NER, so the
#                                paper has no such cells (Tables 5 and 8)
#
# Method directories (the names cli/report_tables.py reads) and their options, for an L-layer encoder.  The
# paper's layer counts are for 12 layers; other depths scale them proportionally, as the slow-fast sets'
# default depth rule does (user_dir/analysis/slow_fast_sets.py; rounding half up):
#   TOP = max(1, round(L/6)) (2 of 12), BOTTOM = min(max(1, round(L/3)), L - TOP) (4 of 12),
#   LAST_k = max(1, round(k*L/12)) layers fine-tuned for last-k (k of 12).
#   df | noisytune | fs | ff        --method df|noisytune|fs|ff;   ours: --method fsf
#   last-1 | last-2 | last-3        --freeze embeddings,1-(L-LAST_k):all (fine-tune only the top LAST_k layers;
#                                   --freeze embeddings when LAST_k = L)
#   freeze-4[-attn|-ffn]            --freeze 1-BOTTOM:all|attn|ffn
#   enlarge-2[-attn|-ffn]           --lr-scale (L-TOP+1)-L:all|attn|ffn=10
#   reinit-4[-attn|-ffn]            --reinit 1-BOTTOM:all|attn|ffn
#   c1-<v> | c2-<v> | r-<v>         --method fsf --fsf-c1|--fsf-c2|--fsf-r <v>
#   only-s1 only-s2 s2-to-s1 only-v1 only-v2 v2-to-v1   --method <the same>
#   freeze-layer-<k> | reinit-layer-<k>                 --freeze|--reinit <k>:all (Fig. 3's sweep)
# Slow-fast methods (fsf, fs, ff, c*/r-*, Table 8) get the --smoke phase-detector options; fs has no Policy IV, so
# no --fsf-cka-interval.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

guo_args() {
  SMOKE=0
  if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
  if [ $# -ne 4 ]; then xl_usage; exit 2; fi
  PRETRAINED=$1 TASK=$2 DATA=$3 OUT=$4
  PIVOT=${PIVOT:-en}
  if [ "$SMOKE" = 1 ]; then
    # the same options, in the same order, as guo2023_table2_methods.sh --smoke: its df and ours runs are these
    GUO_FINETUNE=(--seeds "${SEEDS:-1}" --epochs 1 --batch-size 16 --lr 1e-3 --max-length 32 --cpu --cpu-threads 1
                  --quiet)
    GUO_FSF_SMOKE=(--fsf-window 2 --fsf-cka-interval 2)
    NGPUS=1
  else
    GUO_FINETUNE=(--seeds "${SEEDS:-1,2,3,4}")
    if [ -n "${EPOCHS:-}" ]; then GUO_FINETUNE+=(--epochs "$EPOCHS"); fi
    GUO_FSF_SMOKE=()
  fi
}

guo_layers() {
  if [ -n "${LAYERS:-}" ]; then GUO_L=$LAYERS; else GUO_L=$("$XLINT" fsf layers "$PRETRAINED"); fi
  if ! [ "$GUO_L" -ge 2 ] 2>/dev/null; then
    echo "guo2023: the encoder needs at least 2 layers (got L=$GUO_L)" >&2
    exit 2
  fi
  GUO_TOP=$(( (2 * GUO_L + 6) / 12 )); if [ "$GUO_TOP" -lt 1 ]; then GUO_TOP=1; fi
  GUO_BOTTOM=$(( (2 * GUO_L + 3) / 6 )); if [ "$GUO_BOTTOM" -lt 1 ]; then GUO_BOTTOM=1; fi
  if [ "$GUO_BOTTOM" -gt $((GUO_L - GUO_TOP)) ]; then GUO_BOTTOM=$((GUO_L - GUO_TOP)); fi
}

guo_range() {  # FIRST LAST KIND -> A-B:KIND (A:KIND when FIRST = LAST)
  if [ "$1" = "$2" ]; then echo "$1:$3"; else echo "$1-$2:$3"; fi
}

guo_sublayer() {  # the kind a -attn/-ffn suffix names (all without one)
  case $1 in *-attn) echo attn ;; *-ffn) echo ffn ;; *) echo all ;; esac
}

guo_cli_method() {  # the xlint finetune --method of a method directory
  case $1 in
    ours | c1-* | c2-* | r-*) echo fsf ;;
    df | noisytune | fs | ff | only-s1 | only-s2 | s2-to-s1 | only-v1 | only-v2 | v2-to-v1) echo "$1" ;;
    *) echo df ;;
  esac
}

guo_method_options() {
  local method=$1 cli_method kind last
  cli_method=$(guo_cli_method "$method")
  case $method in
    df | noisytune | fs | ff | ours | only-s1 | only-s2 | s2-to-s1 | only-v1 | only-v2 | v2-to-v1 | c1-* | c2-* | r-*)
      ;;
    last-[123])
      last=$(( (2 * ${method#last-} * GUO_L + 12) / 24 )); if [ "$last" -lt 1 ]; then last=1; fi
      if [ "$last" -ge "$GUO_L" ]; then printf '%s\n' --freeze embeddings
      else printf '%s\n' --freeze "embeddings,$(guo_range 1 $((GUO_L - last)) all)"; fi ;;
    freeze-4 | freeze-4-attn | freeze-4-ffn)
      printf '%s\n' --freeze "$(guo_range 1 "$GUO_BOTTOM" "$(guo_sublayer "$method")")" ;;
    reinit-4 | reinit-4-attn | reinit-4-ffn)
      printf '%s\n' --reinit "$(guo_range 1 "$GUO_BOTTOM" "$(guo_sublayer "$method")")" ;;
    enlarge-2 | enlarge-2-attn | enlarge-2-ffn)
      printf '%s\n' --lr-scale "$(guo_range $((GUO_L - GUO_TOP + 1)) "$GUO_L" "$(guo_sublayer "$method")")=10" ;;
    freeze-layer-* | reinit-layer-*)
      kind=${method%%-layer-*}
      printf '%s\n' "--$kind" "${method##*-layer-}:all" ;;
    *) echo "guo2023: unknown method directory $method" >&2; return 2 ;;
  esac
  case $method in
    c1-*) printf '%s\n' --fsf-c1 "${method#c1-}" ;;
    c2-*) printf '%s\n' --fsf-c2 "${method#c2-}" ;;
    r-*) printf '%s\n' --fsf-r "${method#r-}" ;;
  esac
  case $cli_method in
    df | noisytune) ;;
    fs) if [ ${#GUO_FSF_SMOKE[@]} -gt 0 ]; then printf '%s\n' "${GUO_FSF_SMOKE[@]:0:2}"; fi ;;
    *) if [ ${#GUO_FSF_SMOKE[@]} -gt 0 ]; then printf '%s\n' "${GUO_FSF_SMOKE[@]}"; fi ;;
  esac
}

guo_run() {  # METHOD [M]: zero-shot, or few-shot with M examples per target language (OUT/METHOD/TASK-few-shot-M)
  local method=$1 shots=${2:-0} options=() setting=zero-shot shot=(--setting zero-shot)
  local text
  if [ "$shots" != 0 ]; then setting=few-shot-$shots; shot=(--setting few-shot --few-shot "$shots"); fi
  case $method in last-* | freeze-* | reinit-* | enlarge-*) if [ -z "${GUO_L:-}" ]; then guo_layers; fi ;; esac
  if [ "$TASK" = ner ]; then
    case $method in c2-* | v2-to-v1)
      echo "== $method $TASK: not run (Policy IV is not applied to NER; the paper has no such cell)"
      return 0 ;;
    esac
  fi
  text=$(guo_method_options "$method")
  if [ -n "$text" ]; then mapfile -t options <<<"$text"; fi
  echo "== $method $TASK $setting"
  xl_finetune "$OUT/$method/$TASK-$setting" "$DATA" --pretrained "$PRETRAINED" --source "$PIVOT" \
    "${shot[@]}" --method "$(guo_cli_method "$method")" "${GUO_FINETUNE[@]}" "${options[@]}"
}

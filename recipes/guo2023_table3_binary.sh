#!/usr/bin/env bash
# Guo et al. (2023), Table 3 (zero-shot): DF against our method on a large binary classification task.  The paper's
# QAM data (12M English <question, passage> pairs from a search engine; is the passage an answer?) is private: this
# recipe takes ANY binary pair-classification data in the XNLI layout instead.  Write it as XNLI-1.0-style tsv files
# (columns language, gold_label, sentence1, sentence2; label "entailment" for the positive class and
# "contradiction" for the negative one: the classification data always has the three NLI labels, the third never
# occurs), e.g. en:train, and every language's dev and test, and convert them with
#   xlint data convert xnli --encoder PRETRAINED --out DATA en:train=en.train.tsv de:dev=de.dev.tsv ...
#
# Usage:
#   recipes/guo2023_table3_binary.sh PRETRAINED TASK DATA OUT           # paper: 4 seeds
#   recipes/guo2023_table3_binary.sh --smoke PRETRAINED TASK DATA OUT   # 1 epoch, 1 seed, CPU
#
# TASK names the runs' folders (e.g. qam): OUT/df/TASK-zero-shot/, OUT/ours/TASK-zero-shot/.  `xlint report` has
# no Table 3 (its columns are the private data's languages): the recipe ends by printing each run's test table
# (results.md: every language's accuracy and the target average, the paper's 'avg').  Overrides: METHODS
# (df ours), SEEDS (default 1,2,3,4), EPOCHS, PIVOT (en).  $NGPUS runs side by side; re-running skips finished
# fine-tunings; commands are printed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/guo2023_common.sh"

guo_args "$@"
METHODS=${METHODS:-df ours}
for method in $METHODS; do guo_run "$method"; done
xl_wait
for method in $METHODS; do
  echo "== Table 3: $method ($OUT/$method/$TASK-zero-shot/results.md)"
  cat "$OUT/$method/$TASK-zero-shot/results.md"
done

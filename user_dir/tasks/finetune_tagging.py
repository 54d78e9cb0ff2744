"""``xlint_tagging``: POS tagging and NER with a linear layer on each word's first subword.

Task ``xlint_tagging`` + criterion ``xlint_tagging`` (:mod:`..criterions.finetune_tagging`;
Wang et al. 2020, App. A; XTREME's ``udpos``/``panx``):

* every word is labelled at its first subword; the other subwords, ``<s>``,
  ``</s>`` and padding are ignored by the loss;
* a sentence longer than ``--max-length`` (``<s>``/``</s>`` included) is cut into
  sliding windows of ``max_length - 2`` subwords whose starts are
  ``--window-stride`` apart (default: half a window); each word is scored once,
  from the window where its first subword has the most context on both sides
  (the larger ``min(left, right)``), and windows that score no word are dropped;
* validation collects every word's predicted tag and scores whole sentences
  over the whole set: POS data (``kind`` pos) logs token accuracy ``acc_<lang>``
  and seqeval F1 ``f1_<lang>`` (XTREME's "POS F1"); NER data (``kind`` ner) logs
  seqeval span ``f1_<lang>``, ``precision_<lang>`` and ``recall_<lang>``, all in
  percent, via :mod:`..metrics.xtreme`.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch
from fairseq.tasks import register_task

from ..data.finetune_data import IGNORE_INDEX, FinetuneDataError, best_window, sliding_windows
from ..metrics.xtreme import pos_scores, span_scores, token_accuracy
from .finetune_base import FinetuneConfig, FinetuneTask

#: tag given to a word that received no prediction (cannot happen in a complete pass)
MISSING_TAG = "O"


@dataclass
class TaggingConfig(FinetuneConfig):
    window_stride: int = field(
        default=0, metadata={"help": "subwords between the starts of the sliding windows over sentences "
                                     "longer than --max-length (0: half a window)"})


@register_task("xlint_tagging", dataclass=TaggingConfig)
class TaggingTask(FinetuneTask):
    """Word-level tagging over ``xlint data convert`` tagging data (see the module docstring)."""

    TASK = "tagging"
    HEAD_KIND = "token"
    HEAD_NAME = "tagging"

    def __init__(self, cfg: TaggingConfig, dictionary, meta, data_dir):
        super().__init__(cfg, dictionary, meta, data_dir)
        self.labels: List[str] = list(meta["labels"])
        self.label_index = {label: index for index, label in enumerate(self.labels)}
        self.kind = meta["kind"]

    def num_outputs(self) -> int:
        return len(self.labels)

    def metric_names(self) -> Tuple[str, ...]:
        return ("acc", "f1") if self.kind == "pos" else ("f1", "precision", "recall")

    # ------------------------------------------------------------------ data

    def make_items(self, example, lang, lang_id, record, split):
        tokens: List[int] = record["tokens"]
        starts: List[int] = record["word_starts"]
        try:
            labels = [self.label_index[tag] for tag in record["tags"]]
        except KeyError as error:
            raise FinetuneDataError(f"{self.data_dir}: example {record.get('id')} ({lang}) has tag {error} "
                                    f"missing from meta.json's labels") from None
        width = self.effective_max_length - 2
        stride = self.cfg.window_stride or max(1, width // 2)
        windows = sliding_windows(len(tokens), width, stride)
        owner = [best_window(position, windows) for position in starts]
        bos, eos = self.dictionary.bos(), self.dictionary.eos()
        items = []
        for index, (start, end) in enumerate(windows):
            words = [word for word, window in enumerate(owner) if window == index]
            if not words:
                continue
            items.append({
                "tokens": torch.LongTensor([bos] + tokens[start:end] + [eos]),
                "positions": np.asarray([starts[word] - start + 1 for word in words], dtype=np.int64),
                "labels": np.asarray([labels[word] for word in words], dtype=np.int64),
                "words": np.asarray(words, dtype=np.int32),
                "n_words": len(starts),
                "example": example, "lang": lang, "lang_id": lang_id,
            })
        return items

    def collate_extra(self, items, batch):
        width = batch["net_input"]["src_tokens"].size(1)
        target = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
        for row, item in enumerate(items):
            target[row, torch.from_numpy(item["positions"])] = torch.from_numpy(item["labels"])
        batch["target"] = target
        batch["words"] = [item["words"] for item in items]
        batch["n_words"] = [item["n_words"] for item in items]

    # ------------------------------------------------------------------ metrics

    def assemble(self, predictions: Sequence[Any]) -> Dict[int, Tuple[str, np.ndarray, np.ndarray]]:
        """Per example: (lang, predicted label ids (-1 = none), gold label ids), words in order."""
        sentences: Dict[int, Tuple[str, np.ndarray, np.ndarray]] = {}
        for example, lang, n_words, words, predicted, gold in predictions:
            if example not in sentences:
                sentences[example] = (lang, np.full(n_words, -1, dtype=np.int64), np.full(n_words, -1, dtype=np.int64))
            _, pred_row, gold_row = sentences[example]
            pred_row[words] = predicted
            gold_row[words] = gold
        return sentences

    def tag_sequences(self, predictions: Sequence[Any]) -> Tuple[List[List[str]], List[List[str]]]:
        gold_tags, predicted_tags = [], []
        sentences = self.assemble(predictions)
        for example in sorted(sentences):
            _, predicted, gold = sentences[example]
            gold_tags.append([self.labels[g] if g >= 0 else MISSING_TAG for g in gold])
            predicted_tags.append([self.labels[p] if p >= 0 else MISSING_TAG for p in predicted])
        return gold_tags, predicted_tags

    def score_language(self, lang, predictions):
        gold, predicted = self.tag_sequences(predictions)
        if self.kind == "pos":
            scores = pos_scores(gold, predicted)
            return {"acc": scores.accuracy, "f1": scores.f1}
        scores = span_scores(gold, predicted)
        return {"f1": scores.f1, "precision": scores.precision, "recall": scores.recall,
                "acc": token_accuracy(gold, predicted)}

    def curve_score(self, lang, predictions):
        if self.kind == "pos":  # the accuracy alone (the seqeval F1 costs more than the predictions)
            return token_accuracy(*self.tag_sequences(predictions))
        return super().curve_score(lang, predictions)

    def prediction_records(self, items, dataset):
        records = []
        sentences = self.assemble(items)
        for example in sorted(sentences):
            lang, predicted, gold = sentences[example]
            record = dataset.examples[example][1]
            records.append({"id": record.get("id"), "lang": lang, "words": record["words"], "gold": record["tags"],
                            "predicted": [self.labels[p] if p >= 0 else MISSING_TAG for p in predicted]})
        return records

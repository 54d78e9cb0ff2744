"""``xlint_classification``: sentence-pair classification (XNLI) with a sentence head.

Task ``xlint_classification`` + criterion ``xlint_classification``
(:mod:`..criterions.finetune_classification`).  Input:
``<s> premise </s> hypothesis </s>`` (RoBERTa / XLM-R: ``<s> premise </s> </s> hypothesis
</s>``, ``--pair-separators 2``), cut to ``--max-length`` subwords by
removing tokens from the end of the longer of the two texts first; the
sentence head (dense + tanh + linear, as RoBERTa's) reads the ``<s>`` position.
Validation logs accuracy per language (``acc_<lang>``) in percent.

Wang et al. (2020, App. A) tune the encoder and classifier learning rates
separately for XNLI: use ``--optimizer xlint_adam --lr ENCODER_LR --head-lr
CLASSIFIER_LR`` (see :mod:`..optim.adam_with_head_lr`).
"""
from dataclasses import dataclass, field
from typing import List, Tuple

import torch
from fairseq.tasks import register_task

from ..data.finetune_data import FinetuneDataError
from ..metrics.xtreme import accuracy
from .finetune_base import FinetuneConfig, FinetuneTask


def truncate_pair(first: List[int], second: List[int], budget: int) -> Tuple[List[int], List[int]]:
    """Drop tokens from the end of the longer sequence until both fit in ``budget`` tokens."""
    first, second = list(first), list(second)
    while len(first) + len(second) > budget:
        if len(first) >= len(second):
            first.pop()
        else:
            second.pop()
    return first, second


@dataclass
class ClassificationConfig(FinetuneConfig):
    pair_separators: int = field(
        default=1, metadata={"help": "</s> tokens between premise and hypothesis: 1 (xlm_adapter's "
                                     "pretraining) or 2 (RoBERTa / XLM-R: <s> A </s> </s> B </s>)"})


@register_task("xlint_classification", dataclass=ClassificationConfig)
class ClassificationTask(FinetuneTask):
    """Premise/hypothesis pairs -> one of the labels in meta.json (see the module docstring)."""

    TASK = "classification"
    HEAD_KIND = "sentence"
    HEAD_NAME = "classification"

    def __init__(self, cfg, dictionary, meta, data_dir):
        super().__init__(cfg, dictionary, meta, data_dir)
        self.labels: List[str] = list(meta["labels"])
        self.label_index = {label: index for index, label in enumerate(self.labels)}

    def num_outputs(self) -> int:
        return len(self.labels)

    def metric_names(self):
        return ("acc",)

    def make_items(self, example, lang, lang_id, record, split):
        if record["label"] not in self.label_index:
            raise FinetuneDataError(f"{self.data_dir}: example {record.get('id')} ({lang}) has label "
                                    f"{record['label']!r} missing from meta.json's labels")
        separators = self.cfg.pair_separators
        premise, hypothesis = truncate_pair(record["premise_tokens"], record["hypothesis_tokens"],
                                            self.effective_max_length - 2 - separators)
        bos, eos = self.dictionary.bos(), self.dictionary.eos()
        return [{"tokens": torch.LongTensor([bos] + premise + [eos] * separators + hypothesis + [eos]),
                 "label": self.label_index[record["label"]], "example": example, "lang": lang, "lang_id": lang_id}]

    def collate_extra(self, items, batch):
        batch["target"] = torch.LongTensor([item["label"] for item in items])

    def score_language(self, lang, predictions):
        return {"acc": accuracy([gold for *_, gold in predictions], [pred for *_, pred, _ in predictions])}

    def prediction_records(self, items, dataset):
        records = []
        for example, lang, predicted, gold in sorted(items, key=lambda item: item[0]):
            record = dataset.examples[example][1]
            records.append({"id": record.get("id"), "lang": lang, "gold": self.labels[gold],
                            "predicted": self.labels[predicted]})
        return records

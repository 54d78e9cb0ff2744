"""Criterion ``xlint_tagging``: cross-entropy of the token head at each word's first subword.

The task (:mod:`..tasks.finetune_tagging`) sets the target of a word's first subword to its
label and every other position (further subwords, ``<s>``, ``</s>``, padding) to
``IGNORE_INDEX``; the loss sums over the labelled positions:

    loss = sum_{labelled t} -log softmax(logits_t)[y_t],      sample_size = labelled words

In evaluation mode every window's predicted and gold label ids travel in the logging output,
so that the task scores whole sentences over the whole evaluation set.
"""
from typing import List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from fairseq.criterions import register_criterion

from ..data.finetune_data import IGNORE_INDEX, PREDICTIONS_KEY
from .finetune_criterion import FinetuneCriterion, FinetuneCriterionConfig


@register_criterion("xlint_tagging", dataclass=FinetuneCriterionConfig)
class TaggingCriterion(FinetuneCriterion):
    """Cross-entropy over the labelled (first-subword) positions; sample_size = labelled words."""

    def forward(self, model, sample, reduce=True):
        logits, _ = model(**sample["net_input"], head=self.task.HEAD_NAME)
        target = sample["target"]
        labelled = target.ne(IGNORE_INDEX)
        loss = F.cross_entropy(logits[labelled].float(), target[labelled], reduction="sum")
        sample_size = int(labelled.sum())
        logging_output = {"loss": loss.data, "ntokens": sample["ntokens"], "nsentences": sample["nsentences"],
                          "sample_size": sample_size}
        if not model.training:
            logging_output[PREDICTIONS_KEY] = tagging_predictions(sample, logits, labelled)
        return loss, sample_size, logging_output


def tagging_predictions(sample, logits: torch.Tensor, labelled: torch.Tensor) -> List[Tuple]:
    """``(example, lang, n_words, word indices, predicted ids, gold ids)`` per window (numpy arrays)."""
    predicted = logits.argmax(-1).cpu()
    target = sample["target"].cpu()
    labelled = labelled.cpu()
    out = []
    for row, (example, lang, words, n_words) in enumerate(
            zip(sample["example"], sample["lang"], sample["words"], sample["n_words"])):
        mask = labelled[row]
        out.append((example, lang, n_words, words, predicted[row][mask].numpy().astype(np.int16),
                    target[row][mask].numpy().astype(np.int16)))
    return out

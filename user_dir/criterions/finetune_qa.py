"""Criterion ``xlint_qa``: start/end cross-entropy of the span head, and span decoding.

Per window, with the padding positions masked out of both softmaxes and the gold start and
end subwords ``s``, ``e`` (both ``<s>``, position 0, when the answer is not inside the window):

    loss = (-log softmax(start_logits)[s] - log softmax(end_logits)[e]) / 2,   sample_size = windows

Decoding (evaluation mode): the span ``(i, j)`` maximising ``start_i + end_j`` with
``i <= j < i + max_answer_length``, ``j`` in the window's context and ``i`` a context position
whose window is its max-context one (:func:`best_spans`); every window's best span travels in
the logging output with its score and the task keeps each question's best-scoring one
(:mod:`..tasks.finetune_qa`).
"""
import math
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from fairseq.criterions import register_criterion
from omegaconf import II

from ..data.finetune_data import PREDICTIONS_KEY
from .finetune_criterion import FinetuneCriterion, FinetuneCriterionConfig


def best_spans(start_logits: torch.Tensor, end_logits: torch.Tensor, allowed_starts: torch.Tensor,
               allowed_ends: torch.Tensor, max_answer_length: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row the best ``(score, i, j)`` with ``i <= j < i + max_answer_length``; score -inf if none."""
    width = start_logits.size(1)
    positions = torch.arange(width, device=start_logits.device)
    gap = positions[None, :] - positions[:, None]  # j - i
    span_ok = (gap >= 0) & (gap < max_answer_length)
    scores = start_logits[:, :, None] + end_logits[:, None, :]
    ok = allowed_starts[:, :, None] & allowed_ends[:, None, :] & span_ok[None]
    scores = scores.masked_fill(~ok, float("-inf"))
    best, flat = scores.view(scores.size(0), -1).max(-1)
    return best, flat // width, flat % width


@dataclass
class QaCriterionConfig(FinetuneCriterionConfig):
    max_answer_length: int = field(
        default=II("task.max_answer_length"),
        metadata={"help": "longest predicted answer, in subwords (the task's --max-answer-length)"})


@register_criterion("xlint_qa", dataclass=QaCriterionConfig)
class QaCriterion(FinetuneCriterion):
    """(CE(start) + CE(end)) / 2 per window; sample_size = number of windows."""

    def __init__(self, cfg: QaCriterionConfig, task):
        super().__init__(task)
        self.max_answer_length = cfg.max_answer_length

    def forward(self, model, sample, reduce=True):
        logits, _ = model(**sample["net_input"], head=self.task.HEAD_NAME)
        padding = sample["net_input"]["src_tokens"].eq(self.task.dictionary.pad())
        logits = logits.float().masked_fill(padding.unsqueeze(-1), float("-inf"))
        start_logits, end_logits = logits[..., 0], logits[..., 1]
        target = sample["target"]
        loss = (F.cross_entropy(start_logits, target[:, 0], reduction="sum")
                + F.cross_entropy(end_logits, target[:, 1], reduction="sum")) / 2
        sample_size = target.size(0)
        logging_output = {"loss": loss.data, "ntokens": sample["ntokens"], "nsentences": sample["nsentences"],
                          "sample_size": sample_size}
        if not model.training:
            logging_output[PREDICTIONS_KEY] = qa_predictions(
                sample, start_logits, end_logits, self.max_answer_length)
        return loss, sample_size, logging_output


def qa_predictions(sample, start_logits, end_logits, max_answer_length: int) -> List[tuple]:
    """``(example, lang, score, answer text or None, gold texts)`` per window."""
    scores, starts, ends = best_spans(start_logits, end_logits, sample["answer_starts"], sample["answer_ends"],
                                      max_answer_length)
    out = []
    for row, (score, i, j) in enumerate(zip(scores.tolist(), starts.tolist(), ends.tolist())):
        meta = sample["qa"][row]
        text: Optional[str] = None
        if math.isfinite(score):
            first = meta["window"][0] + i - meta["offset"]
            last = meta["window"][0] + j - meta["offset"]
            text = meta["context"][meta["offsets"][first][0]: meta["offsets"][last][1]]
        else:
            score = float("-inf")
        out.append((sample["example"][row], sample["lang"][row], score, text, meta["golds"]))
    return out

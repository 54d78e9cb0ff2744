"""Criterion ``xlint_classification``: cross-entropy of the sentence head.

    loss = sum_{examples i} -log softmax(logits_i)[y_i],      sample_size = examples

In evaluation mode every example's predicted and gold label ids travel in the logging output
(scored by :mod:`..tasks.finetune_classification` over the whole evaluation set).
"""
import torch.nn.functional as F
from fairseq.criterions import register_criterion

from ..data.finetune_data import PREDICTIONS_KEY
from .finetune_criterion import FinetuneCriterion, FinetuneCriterionConfig


@register_criterion("xlint_classification", dataclass=FinetuneCriterionConfig)
class ClassificationCriterion(FinetuneCriterion):
    """Cross-entropy of the sentence head; sample_size = number of examples."""

    def forward(self, model, sample, reduce=True):
        logits, _ = model(**sample["net_input"], head=self.task.HEAD_NAME)
        target = sample["target"]
        loss = F.cross_entropy(logits.float(), target, reduction="sum")
        sample_size = target.numel()
        logging_output = {"loss": loss.data, "ntokens": sample["ntokens"], "nsentences": sample["nsentences"],
                          "sample_size": sample_size}
        if not model.training:
            predicted = logits.argmax(-1).tolist()
            logging_output[PREDICTIONS_KEY] = [
                (example, lang, pred, gold)
                for example, lang, pred, gold in zip(sample["example"], sample["lang"], predicted, target.tolist())]
        return loss, sample_size, logging_output

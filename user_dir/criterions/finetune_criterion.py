"""What xlint's fine-tuning criteria share: their config, loss logging, predictions in the logs.

A criterion scores the logits of the head that its task added (``self.task.HEAD_NAME``) and,
in evaluation mode, also puts the predictions of the batch into its logging output under
:data:`~..data.finetune_data.PREDICTIONS_KEY`; the task collects them over the whole
evaluation set and scores them there (:mod:`..tasks.finetune_base`).  Such logging outputs
cannot be summed across data-parallel workers, only gathered.
"""
import math
from dataclasses import dataclass

from fairseq import utils
from fairseq.criterions import FairseqCriterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics


@dataclass
class FinetuneCriterionConfig(FairseqDataclass):
    """Options of the fine-tuning criteria: none beyond their task's, which decides what is scored.

    A registered dataclass (even without fields) is what makes fairseq keep only
    ``{_name: ...}`` for the criterion in a checkpoint's cfg; a criterion registered without
    one gets the whole command line there, as an ``argparse.Namespace``.
    """


class FinetuneCriterion(FairseqCriterion):
    """Loss logging shared by the fine-tuning criteria (predictions travel in the logs)."""

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        """``loss`` in bits per scored unit: sum(loss) / sum(sample_size) / ln 2."""
        loss_sum = utils.item(sum(log.get("loss", 0) for log in logging_outputs))
        sample_size = utils.item(sum(log.get("sample_size", 0) for log in logging_outputs))
        if sample_size > 0:
            metrics.log_scalar("loss", loss_sum / sample_size / math.log(2), sample_size, round=3)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return False  # they carry predictions (PREDICTIONS_KEY) during validation

"""The fine-tuning criteria (``xlint_tagging``, ``xlint_classification``, ``xlint_qa``)."""
from . import finetune_classification, finetune_criterion, finetune_qa, finetune_tagging, l0_hard_concrete  # noqa: F401

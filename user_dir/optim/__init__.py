"""Optimizers: ``xlint_adam``, fairseq's Adam with a separate task-head learning rate."""
from . import adam_with_head_lr  # noqa: F401

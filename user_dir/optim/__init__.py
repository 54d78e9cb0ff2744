"""Optimizers: ``xlint_adam`` (fairseq's Adam with tagged parameter groups: a task-head learning rate,
per-group multipliers) and the fine-tuning slow and fast controller that sets those multipliers
(:mod:`.slow_fast`, used by tasks through its mixin; it registers nothing)."""
from . import adam_with_head_lr  # noqa: F401
from . import slow_fast  # noqa: F401  (loaded here so that it exists under one name only)

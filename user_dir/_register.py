"""Imports every component module once, so that fairseq's registries see it."""
from . import checkpoint_compat  # noqa: F401  (first: makes checkpoints loadable)
from . import criterions, data, models, optim, tasks  # noqa: F401

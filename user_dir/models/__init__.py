"""The ``xlm_adapter`` model family (registered with its architectures) and its fine-tuning heads."""
from . import task_heads, xlm_adapter  # noqa: F401  (every module: fairseq's --user-dir imports them by name)

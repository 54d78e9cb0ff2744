"""The model families (``xlm_adapter``; ``xlint_roberta``, fairseq's RoBERTa / XLM-R with xlint's heads),
their fine-tuning heads and the layer interface both implement (:mod:`.layer_groups`)."""
from . import layer_groups, task_heads, xlint_roberta, xlm_adapter  # noqa: F401  (fairseq's --user-dir imports them by name)

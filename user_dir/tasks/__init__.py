"""Tasks: multilingual MLM pretraining (``xlm_mlm``, ``meta_mlm``) and downstream fine-tuning."""
from . import (  # noqa: F401  (every module: fairseq's --user-dir imports them by name)
    finetune_base,
    finetune_classification,
    finetune_qa,
    finetune_tagging,
    l0_mlm,
    meta_mlm,
    xlm_mlm,
)

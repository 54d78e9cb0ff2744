"""Imports every component module so that fairseq's registries see it."""
from . import checkpoint_compat  # noqa: F401  (first: makes checkpoints loadable)
from . import data  # noqa: F401  (datasets; the --language-sampler registry)
from . import models  # noqa: F401
from . import xlm_mlm  # noqa: F401
from . import meta_mlm  # noqa: F401
from . import finetune_optim  # noqa: F401  (the xlint_adam optimizer: --head-lr)
from . import finetune_tagging  # noqa: F401
from . import finetune_classification  # noqa: F401
from . import finetune_qa  # noqa: F401

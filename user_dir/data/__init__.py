"""Datasets, batch iterators and language samplers (the ``--language-sampler`` registry)."""
from . import finetune_data, language_sampling, multilingual_split  # noqa: F401

"""Raw text per language -> fairseq-binarized multilingual data (installed as ``xlint.preprocess``)."""

"""``torch.nn`` building blocks of the ``xlm_adapter`` encoder (fairseq's ``modules/`` room).

Language routing (:mod:`.language_routed`), the transformer sublayers it routes
(:mod:`.transformer_sublayers`) and the residual adapter (:mod:`.residual_adapter`).  They take
plain sizes, not a model config, and register nothing.
"""

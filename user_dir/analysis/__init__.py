"""Pure numeric modules of the plugin: they register nothing and import torch or numpy, never fairseq.

Today: the temperature formula of language sampling (:mod:`.temperature`), the meta-gradient
of ``meta_mlm`` (:mod:`.hypergradient`) and name-derived seeds (:mod:`.seeding`).

This folder is installed twice: as ``xlint.user_dir.analysis`` (what the plugin's modules import,
relatively, so that a ``--user-dir`` checkout works without xlint installed) and as
``xlint.analysis`` (what notebooks, ``xlint preprocess`` and the CLI import: it runs no plugin
``__init__``, which registers the components and therefore imports fairseq).  A module loaded under
both names is executed twice; that is harmless because none of them holds a registry or other state.
This ``__init__`` imports nothing, so that importing one module pulls in no other.
"""

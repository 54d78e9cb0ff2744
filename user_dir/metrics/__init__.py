"""Downstream metrics, computed the way XTREME computes them (:mod:`.xtreme`); standard library only.

This folder is installed twice: as ``xlint.user_dir.metrics`` (what the plugin's fine-tuning
tasks import, relatively, so that a ``--user-dir`` checkout works without xlint installed) and as
``xlint.metrics`` (what notebooks and tests import: it runs no plugin ``__init__``, which registers
the components and therefore imports fairseq).  A module loaded under both names is executed
twice; that is harmless because it holds no registry or other state.
"""

"""xlint's fairseq plugin: ``fairseq-train --user-dir user_dir ...``.

fairseq imports a ``--user-dir`` folder as a top-level module named after the folder
(``user_dir``), and then imports the modules of its ``tasks/`` and ``models/`` subfolders a
second time by name (``user_dir.tasks.<module>``, ``user_dir.models.<module>``), while the
``xlint`` commands import the same files as ``xlint.user_dir``.  Executing the component
modules under two names would register every model, task and criterion twice (fairseq refuses
duplicates), so whenever the installed ``xlint.user_dir`` is importable this module becomes an
alias of it: the components are registered once, under ``xlint.user_dir.*``, and every loaded
``xlint.user_dir.<sub>`` module is also entered as ``<this name>.<sub>``, where fairseq's second
import finds it loaded.  This holds whichever entry point comes first.  A checkout used without
installing xlint registers its components under its own name.

Layout (fairseq's): ``models/``, ``modules/``, ``tasks/``, ``criterions/``, ``optim/``,
``data/``; ``metrics/`` and ``analysis/`` hold pure modules that register nothing (also
installed as ``xlint.metrics`` and ``xlint.analysis``, see ``analysis/__init__.py``).
"""
import importlib
import sys

_CANONICAL_NAME = "xlint.user_dir"


def _installed_plugin():
    try:
        return importlib.import_module(_CANONICAL_NAME)
    except ModuleNotFoundError as err:
        if err.name in ("xlint", _CANONICAL_NAME):
            return None
        raise


def _alias_loaded_modules(alias: str) -> None:
    """Enter every loaded ``xlint.user_dir.<sub>`` module also as ``<alias>.<sub>``."""
    prefix = _CANONICAL_NAME + "."
    for name, module in list(sys.modules.items()):
        if name.startswith(prefix):
            sys.modules.setdefault(alias + "." + name[len(prefix):], module)


if __name__ != _CANONICAL_NAME and _installed_plugin() is not None:
    sys.modules[__name__] = sys.modules[_CANONICAL_NAME]
    _alias_loaded_modules(__name__)
else:
    from . import _register  # noqa: F401  (imports every component once)

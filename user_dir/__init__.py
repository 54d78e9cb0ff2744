"""xlint's fairseq plugin: ``fairseq-train --user-dir user_dir ...``.

fairseq imports a ``--user-dir`` folder as a top-level module named after the
folder (``user_dir``), while the ``xlint`` commands import the same files as
``xlint.user_dir``.  Executing the component modules under two names would
register every model, task and criterion twice (fairseq refuses duplicates), so
whenever the installed ``xlint.user_dir`` is importable this module becomes an
alias of it and the components are registered exactly once per process,
whichever entry point comes first.  A checkout used without installing xlint
registers its components under its own name.
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


if __name__ != _CANONICAL_NAME and _installed_plugin() is not None:
    sys.modules[__name__] = sys.modules[_CANONICAL_NAME]
else:
    from . import _register  # noqa: F401  (imports every component once)

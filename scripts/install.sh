#!/usr/bin/env bash
# Create (or reuse) the virtual environment used by `make demo` and `make test`.
#
# Order matters on this stack:
#   1. torch first: the CPU build torch==2.13.0, unless the environment already has a
#      torch (a GPU user's), which is kept.  pip must never resolve torch itself: a
#      plain requirement pulls gigabytes of CUDA wheels.
#   2. numpy<2 and cython: fairseq 0.12 uses numpy aliases that numpy 2 removed.
#   3. fairseq-fixed==0.12.3.1 without build isolation (compiles against this torch).
#   4. seqeval (sdist; needs --use-pep517 when wheel is present), then xlint itself.
# Every step after 1 runs under a constraints file pinning the installed torch.
set -euo pipefail

VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  echo "xlint: creating $VENV with $($PYTHON --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

pip_install --upgrade pip setuptools wheel

if "$PY" -W ignore -c "import torch" 2>/dev/null; then
  echo "xlint: keeping the installed torch $("$PY" -W ignore -c 'import torch; print(torch.__version__)')"
else
  pip_install torch==2.13.0
fi

CONSTRAINTS="$VENV/xlint-constraints.txt"
{
  echo "torch==$("$PY" -W ignore -c 'import torch; print(torch.__version__)')"
  echo "numpy<2"
} > "$CONSTRAINTS.tmp"
mv "$CONSTRAINTS.tmp" "$CONSTRAINTS"

pip_install -c "$CONSTRAINTS" "numpy<2" cython
if ! "$PY" -c "import fairseq" 2>/dev/null; then
  echo "xlint: building fairseq-fixed==0.12.3.1 (about 3 minutes)"
  pip_install -c "$CONSTRAINTS" --no-build-isolation fairseq-fixed==0.12.3.1
fi
pip_install -c "$CONSTRAINTS" --use-pep517 seqeval
pip_install -c "$CONSTRAINTS" --no-build-isolation -e ".[test]"
"$PY" -c "import torch, fairseq, xlint.user_dir; print('xlint: environment ready (torch', torch.__version__ + ')')"

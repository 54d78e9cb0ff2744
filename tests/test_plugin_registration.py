"""The plugin registers its components exactly once, whichever way it is imported first.

``fairseq-train --user-dir user_dir`` imports the folder as the top-level module
``user_dir``; the ``xlint`` commands import ``xlint.user_dir``.  Each check runs in
a fresh interpreter, since registration is per process.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import subprocess_env

REPO_ROOT = Path(__file__).resolve().parents[1]
USER_DIR = REPO_ROOT / "user_dir"

_CHECK_ONCE = """
import sys
from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY
from fairseq.tasks import TASK_REGISTRY
from xlint.user_dir.language_sampling import LANGUAGE_SAMPLER_REGISTRY

assert sys.modules["user_dir"] is sys.modules["xlint.user_dir"], "the two names must be one module"
assert MODEL_REGISTRY["xlm_adapter"].__module__ == "xlint.user_dir.xlm_adapter"
assert TASK_REGISTRY["xlm_mlm"].__module__ == "xlint.user_dir.xlm_mlm"
for arch in ("xlm_adapter_tiny", "xlm_adapter_paper", "xlm_adapter_base"):
    assert ARCH_MODEL_REGISTRY[arch] is MODEL_REGISTRY["xlm_adapter"], arch
assert "temperature" in LANGUAGE_SAMPLER_REGISTRY
# no component module was executed under the second name
assert not [m for m in sys.modules if m.startswith("user_dir.")], [m for m in sys.modules if m.startswith("user_dir.")]
print("REGISTERED-ONCE")
"""


def run_python(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("order", ["package_first", "user_dir_first"])
def test_both_import_paths_register_once(order, tmp_path):
    import_package = "import xlint.user_dir\n"
    import_user_dir = (
        "from argparse import Namespace\n"
        "from fairseq import utils\n"
        f"utils.import_user_module(Namespace(user_dir={str(USER_DIR)!r}))\n"
    )
    steps = {
        "package_first": [import_package, import_user_dir],
        "user_dir_first": [import_user_dir, import_package],
    }[order]
    proc = run_python("".join(steps) + _CHECK_ONCE, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "REGISTERED-ONCE" in proc.stdout


def test_relative_user_dir_from_repo_root():
    """``--user-dir user_dir`` as typed in the repository root."""
    code = (
        "from argparse import Namespace\nfrom fairseq import utils\n"
        "utils.import_user_module(Namespace(user_dir='user_dir'))\nimport xlint.user_dir\n" + _CHECK_ONCE
    )
    proc = run_python(code, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_registries_refuse_duplicates():
    """The guard matters: executing the component modules a second time would fail."""
    code = """
    import xlint.user_dir
    from fairseq.models import register_model_architecture
    from xlint.user_dir.language_sampling import TemperatureLanguageSampler, register_language_sampler
    for register, target in [
        (register_model_architecture("xlm_adapter", "xlm_adapter_tiny"), lambda args: None),
        (register_language_sampler("temperature"), TemperatureLanguageSampler),
    ]:
        try:
            register(target)
        except ValueError as err:
            print("REFUSED:", err)
    """
    proc = run_python(code, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("REFUSED:") == 2, proc.stdout


# --------------------------------------------------------------------------- checkpoint compat

_COMPAT_PROBE = r'''
import argparse, fractions, io, sys
import torch
from fairseq import checkpoint_utils
from fairseq.distributed.utils import _split_tensors_from_obj

path, legacy_path = sys.argv[1], sys.argv[2]


def broadcast_roundtrip(state):
    """What fairseq's broadcast_object does with a checkpoint that rank 0 loaded (distributed resume):
    the non-tensor part is pickled and unpickled with torch.load on every other rank."""
    obj = _split_tensors_from_obj(state, [])
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, map_location="cpu")


def attempt(label, fn):
    try:
        result = fn()
        print(label, "OK")
        return result
    except Exception as err:  # the weights_only unpickler raises pickle.UnpicklingError
        print(label, "FAIL", type(err).__name__)


def weights_only_is_default():
    buf = io.BytesIO()
    torch.save(fractions.Fraction(1, 3), buf)
    buf.seek(0)
    try:
        torch.load(buf)
    except Exception:
        return True
    return False


print("weights_only_default", weights_only_is_default())
state = checkpoint_utils.load_checkpoint_to_cpu(path)
# a legacy fairseq checkpoint keeps its options as an argparse.Namespace in "args"
legacy = torch.load(path, weights_only=False)
legacy["args"] = argparse.Namespace(arch="xlm_adapter_tiny", lr=[0.001])
torch.save(legacy, legacy_path)

assert not [m for m in sys.modules if m.startswith(("xlint", "user_dir"))]
attempt("without_plugin:broadcast", lambda: broadcast_roundtrip(state))
attempt("without_plugin:legacy", lambda: torch.load(legacy_path, weights_only=True))

import xlint.user_dir  # noqa: E402  (installs the allow-list)

received = attempt("with_plugin:broadcast", lambda: broadcast_roundtrip(state))
print("received_variant", received["cfg"].model.language_specific)
loaded = attempt("with_plugin:legacy", lambda: torch.load(legacy_path, weights_only=True))
print("legacy_args", loaded["args"].arch)
print("weights_only_default", weights_only_is_default())
'''


def test_checkpoint_loads_under_weights_only(adapter_train_run):
    """After importing the plugin, fairseq's loader reads a fairseq-train checkpoint with
    torch's default ``weights_only=True``."""
    from fairseq import checkpoint_utils

    assert not os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    state = checkpoint_utils.load_checkpoint_to_cpu(str(adapter_train_run.save_dir / "checkpoint_last.pt"))
    assert state["cfg"].model.language_specific == "adapter"
    assert state["cfg"].task._name == "xlm_mlm"
    assert any(".per_language.fr." in name for name in state["model"])


def test_allow_list_is_what_makes_weights_only_loading_work(adapter_train_run, tmp_path):
    """In a fresh interpreter that has not imported xlint, the objects fairseq unpickles on
    distributed resume (its broadcast of the loaded checkpoint: omegaconf containers,
    tensor placeholders) and legacy ``args`` checkpoints fail under weights_only=True;
    importing the plugin makes the same loads succeed."""
    script = tmp_path / "probe.py"
    script.write_text(_COMPAT_PROBE)
    proc = subprocess.run(
        [sys.executable, str(script), str(adapter_train_run.save_dir / "checkpoint_last.pt"),
         str(tmp_path / "legacy.pt")],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    assert lines.count("weights_only_default True") == 2, proc.stdout
    assert "without_plugin:broadcast FAIL UnpicklingError" in lines, proc.stdout
    assert "without_plugin:legacy FAIL UnpicklingError" in lines, proc.stdout
    assert "with_plugin:broadcast OK" in lines, proc.stdout
    assert "with_plugin:legacy OK" in lines, proc.stdout
    assert "received_variant adapter" in lines and "legacy_args xlm_adapter_tiny" in lines, proc.stdout

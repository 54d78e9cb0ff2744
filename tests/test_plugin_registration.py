"""The plugin registers its components exactly once, whichever way it is imported first.

``fairseq-train --user-dir user_dir`` imports the folder as the top-level module
``user_dir``; the ``xlint`` commands import ``xlint.user_dir``.  Each check runs in
a fresh interpreter, since registration is per process.
"""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path
from typing import List

import pytest

from conftest import parse_json_log, subprocess_env

REPO_ROOT = Path(__file__).resolve().parents[1]
USER_DIR = REPO_ROOT / "user_dir"

_CHECK_ONCE = """
import sys
from fairseq.criterions import CRITERION_REGISTRY
from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY
from fairseq.optim import OPTIMIZER_REGISTRY
from fairseq.tasks import TASK_REGISTRY
from xlint.user_dir.data.language_sampling import LANGUAGE_SAMPLER_REGISTRY

assert sys.modules["user_dir"] is sys.modules["xlint.user_dir"], "the two names must be one module"
assert MODEL_REGISTRY["xlm_adapter"].__module__ == "xlint.user_dir.models.xlm_adapter"
assert TASK_REGISTRY["xlm_mlm"].__module__ == "xlint.user_dir.tasks.xlm_mlm"
assert CRITERION_REGISTRY["xlint_qa"].__module__ == "xlint.user_dir.criterions.finetune_qa"
assert OPTIMIZER_REGISTRY["xlint_adam"].__module__ == "xlint.user_dir.optim.adam_with_head_lr"
for arch in ("xlm_adapter_tiny", "xlm_adapter_paper", "xlm_adapter_base"):
    assert ARCH_MODEL_REGISTRY[arch] is MODEL_REGISTRY["xlm_adapter"], arch
assert "temperature" in LANGUAGE_SAMPLER_REGISTRY
# no component module was executed under the second name: every user_dir.* is an xlint.user_dir.* module
second = {name: module for name, module in sys.modules.items() if name.startswith("user_dir.")}
assert second, "fairseq's --user-dir import finds the tasks/ and models/ modules under user_dir.*"
executed_twice = [name for name, module in second.items() if module is not sys.modules.get("xlint." + name)]
assert not executed_twice, executed_twice
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


def bare_venv(venv: Path) -> Path:
    """The interpreter of a new venv without pip or any package."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    return venv / "bin" / "python"


def reuse_this_environment(python: Path) -> Path:
    """Make ``python``'s venv see this environment's packages (torch, fairseq) through one ``.pth``
    line, which processes none of this environment's ``.pth`` files: the editable xlint install
    stays invisible.  Returns the venv's site-packages."""
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site_packages = Path(subprocess.run([str(python), "-c", purelib], check=True, capture_output=True,
                                        text=True).stdout.strip())
    (site_packages / "reuse_test_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    return site_packages


def test_checkout_without_xlint_installed_registers_under_its_own_name(tmp_path):
    """Where ``xlint`` is not importable, ``--user-dir`` registers the checkout's components as
    ``user_dir.*``, once."""
    code = """
    import importlib.util, sys
    from argparse import Namespace
    from fairseq import utils
    from fairseq.models import MODEL_REGISTRY
    from fairseq.tasks import TASK_REGISTRY

    assert importlib.util.find_spec("xlint") is None
    utils.import_user_module(Namespace(user_dir=%r))
    assert MODEL_REGISTRY["xlm_adapter"].__module__ == "user_dir.models.xlm_adapter"
    assert TASK_REGISTRY["xlm_mlm"].__module__ == "user_dir.tasks.xlm_mlm"
    assert not [name for name in sys.modules if name.startswith("xlint")]
    print("REGISTERED-AS-USER-DIR")
    """ % str(USER_DIR)
    python = bare_venv(tmp_path / "venv")
    reuse_this_environment(python)
    proc = subprocess.run([str(python), "-c", textwrap.dedent(code)], cwd=tmp_path, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "REGISTERED-AS-USER-DIR" in proc.stdout


def test_registries_refuse_duplicates():
    """The guard matters: executing the component modules a second time would fail."""
    code = """
    import xlint.user_dir
    from fairseq.models import register_model_architecture
    from xlint.user_dir.data.language_sampling import TemperatureLanguageSampler, register_language_sampler
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


FINETUNE_CRITERIA = ("xlint_tagging", "xlint_classification", "xlint_qa")


def test_fine_tuning_criteria_have_dataclass_configs():
    """Each fine-tuning criterion is registered with a ``FairseqDataclass`` whose fields all have
    a help text, so a checkpoint's cfg holds ``{_name, ...}`` for it, not the whole command line;
    ``xlint_qa`` decodes with the task's ``--max-answer-length``."""
    import dataclasses

    from fairseq import options
    from fairseq.criterions import CRITERION_DATACLASS_REGISTRY
    from fairseq.dataclass import FairseqDataclass
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from omegaconf import DictConfig

    import xlint.user_dir  # noqa: F401

    for name in FINETUNE_CRITERIA:
        config = CRITERION_DATACLASS_REGISTRY[name]
        assert issubclass(config, FairseqDataclass), name
        undocumented = [f.name for f in dataclasses.fields(config) if f.name != "_name" and not f.metadata.get("help")]
        assert not undocumented, (name, undocumented)
    argv = ["DATA", "--task", "xlint_qa", "--criterion", "xlint_qa", "--arch", "xlm_adapter_tiny",
            "--max-answer-length", "7"]
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))
    assert isinstance(cfg.criterion, DictConfig) and cfg.criterion._name == "xlint_qa"
    assert cfg.criterion.max_answer_length == 7


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


@pytest.mark.slow
def test_checkpoint_loads_under_weights_only(adapter_train_run):
    """After importing the plugin, fairseq's loader reads a fairseq-train checkpoint with
    torch's default ``weights_only=True``."""
    from fairseq import checkpoint_utils

    assert not os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    state = checkpoint_utils.load_checkpoint_to_cpu(str(adapter_train_run.save_dir / "checkpoint_last.pt"))
    assert state["cfg"].model.language_specific == "adapter"
    assert state["cfg"].task._name == "xlm_mlm"
    assert any(".per_language.fr." in name for name in state["model"])


@pytest.mark.slow
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


# --------------------------------------------------------------------------- checkpoints from before the layout move

FIXTURE_CHECKPOINTS = REPO_ROOT / "tests" / "fixtures" / "checkpoints"
EXPECTED_OUTPUTS = json.loads((FIXTURE_CHECKPOINTS / "expected_outputs.json").read_text(encoding="utf-8"))
#: committed checkpoint -> registry names its cfg holds (task, model, criterion, optimizer)
FIXTURE_REGISTRY_NAMES = {
    "xlm_mlm_adapter": ("xlm_mlm", "xlm_adapter_tiny", "masked_lm", "adam"),
    "tagging": ("xlint_tagging", "xlm_adapter_tiny", "xlint_tagging", "xlint_adam"),
}


def fixture_data_dir(name: str, tmp_path: Path) -> Path:
    """The data folder a committed checkpoint's task reads (``tests/fixtures/checkpoints/README.md``)."""
    if name == "tagging":
        return FIXTURE_CHECKPOINTS / "tagging" / "data"
    data = tmp_path / name
    shutil.copytree(FIXTURE_CHECKPOINTS / name, data, ignore=shutil.ignore_patterns("*.pt"))
    for lang in json.loads((data / "metadata.json").read_text(encoding="utf-8"))["languages"]:
        (data / lang).mkdir()
    return data


@pytest.mark.parametrize("name", sorted(FIXTURE_REGISTRY_NAMES))
def test_checkpoints_written_before_the_layout_move_load(name, tmp_path):
    """fairseq's loader rebuilds task, model, criterion and optimizer of a checkpoint written by
    the flat ``user_dir/`` from the registry names in its cfg; the model loads strictly and gives
    the outputs recorded then; the criterion's and optimizer's class names are the ones its
    ``optimizer_history`` holds (fairseq's trainer refuses to resume when they differ)."""
    import torch
    from fairseq import checkpoint_utils, optim

    import xlint.user_dir  # noqa: F401

    path = FIXTURE_CHECKPOINTS / name / "checkpoint.pt"
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(path)], arg_overrides={"data": str(fixture_data_dir(name, tmp_path))})
    task_name, arch, criterion_name, optimizer_name = FIXTURE_REGISTRY_NAMES[name]
    assert (cfg.task._name, cfg.model._name, cfg.criterion._name, cfg.optimizer._name) == (
        task_name, arch, criterion_name, optimizer_name)

    expected = EXPECTED_OUTPUTS[name]
    model = models[0].eval()
    with torch.no_grad():
        output, _ = model(torch.tensor(expected["src_tokens"]), src_lang_id=torch.tensor(expected["src_lang_id"]),
                          head="tagging" if name == "tagging" else None)
    torch.testing.assert_close(output, torch.tensor(expected["output"], dtype=output.dtype), atol=1e-5, rtol=1e-5)

    history = checkpoint_utils.load_checkpoint_to_cpu(str(path))["optimizer_history"][-1]
    criterion = task.build_criterion(cfg.criterion)
    optimizer = optim.build_optimizer(cfg.optimizer, [p for p in model.parameters() if p.requires_grad])
    assert (type(criterion).__name__, type(optimizer).__name__) == (history["criterion_name"],
                                                                    history["optimizer_name"])


@pytest.mark.slow
def test_finetuning_run_from_before_the_layout_move_resumes(tmp_path):
    """Rerunning the pre-move tagging run's ``fairseq-train`` command (``train_args.json``) with one
    more epoch resumes its checkpoint, Adam state included: fairseq's trainer finds the criterion's
    and optimizer's class names that the checkpoint recorded."""
    save_dir = tmp_path / "run"
    save_dir.mkdir()
    shutil.copy(FIXTURE_CHECKPOINTS / "tagging" / "checkpoint.pt", save_dir / "checkpoint_last.pt")
    template = json.loads((FIXTURE_CHECKPOINTS / "tagging" / "train_args.json").read_text(encoding="utf-8"))
    places = {"data": fixture_data_dir("tagging", tmp_path), "user_dir": USER_DIR, "save_dir": save_dir}
    argv = [arg.format(**places) for arg in template] + ["--max-epoch", "2"]
    proc = subprocess.run([sys.executable, "-m", "fairseq_cli.train", *argv], cwd=tmp_path, env=subprocess_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:]
    loaded = [line for line in proc.stdout.splitlines() if "Loaded checkpoint" in line]
    assert loaded and loaded[0].endswith("@ 2 updates)"), proc.stdout[-4000:]
    assert parse_json_log(proc.stdout, "train")[-1]["train_num_updates"] == "4", proc.stdout[-4000:]


# --------------------------------------------------------------------------- light imports

#: which of these a command imports is what the checks below look at
HEAVY_MODULES = ("torch", "fairseq", "xlint.user_dir")

_REPORT_HEAVY = """
import atexit, sys
heavy = {heavy!r}
atexit.register(lambda: print("HEAVY-MODULES", sorted(name for name in heavy if name in sys.modules)))
{body}
"""
_RUN_XLINT = """
from xlint.cli.main import main
sys.argv = ["xlint", *{args!r}]
main()
"""


@pytest.mark.parametrize("body, allowed", [
    pytest.param(_RUN_XLINT.format(args=["--help"]), [], id="xlint --help"),
    pytest.param(_RUN_XLINT.format(args=["preprocess", "--help"]), [], id="xlint preprocess --help"),
    pytest.param("import xlint.metrics.xtreme", [], id="xlint.metrics.xtreme"),
    pytest.param("import xlint.analysis.temperature", [], id="xlint.analysis.temperature"),
    pytest.param("import xlint.analysis.hypergradient", ["torch"], id="xlint.analysis.hypergradient"),
    pytest.param("import xlint.user_dir", list(HEAVY_MODULES), id="xlint.user_dir"),
])
def test_imports_stay_light(body, allowed, tmp_path):
    """Help texts, the metrics and the analysis modules import neither fairseq nor the plugin's
    ``__init__`` (which registers every component, so imports fairseq); only the plugin does."""
    code = _REPORT_HEAVY.format(heavy=HEAVY_MODULES, body=textwrap.dedent(body))
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.splitlines()[-1] == f"HEAVY-MODULES {sorted(allowed)}", proc.stdout[-2000:]


# --------------------------------------------------------------------------- the wheel

def _run(command: List[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(part) for part in command], cwd=cwd, env=subprocess_env(), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(map(str, command))}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _python_files(folder: Path) -> List[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*.py") if "__pycache__" not in path.parts)


@pytest.mark.slow
def test_wheel_holds_every_module_and_runs_outside_the_repository(tmp_path):
    """A wheel built from the working tree's files holds every module of every mapped folder
    (subpackages found, not listed); installed in a fresh venv that reuses this one's torch and
    fairseq, ``fairseq-train --user-dir "$(xlint user-dir)"`` and ``xlint`` run from another folder."""
    source = tmp_path / "source"
    listed = _run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], REPO_ROOT).stdout.split()
    for name in listed:
        if (REPO_ROOT / name).is_file():  # a file deleted in the working tree is still listed
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, source / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", tmp_path / "wheels", source], tmp_path)
    wheel, = (tmp_path / "wheels").glob("xlint-*.whl")

    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
    for package, folder in {"xlint/user_dir": "user_dir", "xlint/cli": "cli", "xlint/preprocess": "preprocess",
                            "xlint/analysis": "user_dir/analysis", "xlint/metrics": "user_dir/metrics"}.items():
        expected = {f"{package}/{name}" for name in _python_files(source / folder)}
        assert expected <= in_wheel, sorted(expected - in_wheel)

    # install first, into a venv that sees nothing else (pip finds no xlint to replace); then reuse our packages
    python = bare_venv(tmp_path / "venv")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel], tmp_path)
    site_packages = reuse_this_environment(python)
    xlint = python.parent / "xlint"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    user_dir = _run([xlint, "user-dir"], elsewhere).stdout.strip()
    assert Path(user_dir) == site_packages / "xlint" / "user_dir"
    # argparse checks --task against the task registry before it reaches --help (exit status 2 if unknown);
    # fairseq's help lists the registries' choices (criteria, optimizers), not a task's own options
    help_text = _run([python, "-m", "fairseq_cli.train", "--user-dir", user_dir, "--task", "xlm_mlm", "--help"],
                     elsewhere).stdout
    assert "xlint_tagging" in help_text and "xlint_adam" in help_text
    assert "preprocess" in _run([xlint, "--help"], elsewhere).stdout

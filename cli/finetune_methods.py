"""``xlint finetune --method``: Guo et al. (2023)'s fine-tuning methods as fairseq-train options.

* ``df`` (default): plain fine-tuning; the command line is exactly the one without ``--method``.
* ``fsf`` (the paper's method, "Our method"), ``fs``, ``ff`` and Table 8's ablations ``only-s1``,
  ``only-s2``, ``s2-to-s1``, ``only-v1``, ``only-v2``, ``v2-to-v1``: the task's
  ``--slow-fast-preset`` (:mod:`xlint.user_dir.optim.slow_fast`), with ``--fsf-*`` options for
  c1, c2, r, the window, the threshold, the sets and Policy IV.  Policy IV's default is ``auto``,
  except on NER data, where the paper does not apply it (``off``).
* ``noisytune`` (Wu et al. 2022): plain fine-tuning from a noised copy of the pretrained
  checkpoint, ``W <- W + U(-lambda/2, lambda/2) * std(W)`` per tensor
  (:func:`xlint.analysis.noisytune.noisytune_`), written once per (checkpoint, lambda, seed)
  under ``SAVE_DIR/noisytune/`` (atomically; reused when it exists) and passed as
  ``--finetune-from-model``.  fairseq starts from it only on a fresh run: a resumed run
  continues from its ``checkpoint_last.pt`` and is never noised again.

For ``xlint report --paper guo2023``, a method's runs live under ``<method dir>/<task>-<setting>``:
the report names FSF's directory ``ours`` (``--save-dir ours/ner-zero-shot --method fsf``).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import click

from .fairseq_runner import OptionValue

#: ``--method`` -> the task's ``--slow-fast-preset`` (None: no slow-fast option at all)
METHODS: Dict[str, Optional[str]] = {
    "df": None, "noisytune": None, "fsf": "fsf", "fs": "fs", "ff": "ff",
    "only-s1": "only_s1", "only-s2": "only_s2", "s2-to-s1": "s2_to_s1",
    "only-v1": "only_v1", "only-v2": "only_v2", "v2-to-v1": "v2_to_v1",
}
POLICY_IV_CHOICES = ("auto", "on", "off")
#: methods whose preset has no Policy IV (no probe, no reference needed)
WITHOUT_POLICY_IV = ("fs",)
DEFAULT_NOISYTUNE_LAMBDA = 0.15
NOISED_DIR = "noisytune"
#: state-dict entries that are not parameters (fairseq's dtype probes, version counters)
NOT_PARAMETERS = (r"(^|\.)_float_tensor$", r"(^|\.)version$")


@dataclass
class MethodOptions:
    """The ``--method`` and its ``--fsf-*`` / ``--noisytune-*`` options (None: the task's default)."""

    method: str = "df"
    c1: Optional[float] = None
    c2: Optional[float] = None
    r: Optional[float] = None
    window: Optional[int] = None
    threshold: Optional[float] = None
    s1: Optional[str] = None
    s2: Optional[str] = None
    v1: Optional[str] = None
    v2: Optional[str] = None
    policy_iv: Optional[str] = None
    cka_interval: Optional[int] = None
    noisytune_lambda: Optional[float] = None


_FSF_FIELDS = {"c1": "slow_fast_c1", "c2": "slow_fast_c2", "r": "slow_fast_power", "window": "slow_fast_window",
               "threshold": "slow_fast_threshold", "s1": "slow_fast_s1", "s2": "slow_fast_s2",
               "v1": "slow_fast_v1", "v2": "slow_fast_v2", "cka_interval": "slow_fast_cka_interval"}


def _hint(name: str) -> str:
    return "--fsf-" + name.replace("_", "-")


def method_options(options: MethodOptions, kind: Optional[str], pretrained: Path) -> Dict[str, OptionValue]:
    """The fairseq-train options of a method (``{}`` for df and noisytune: the plain command)."""
    if options.method not in METHODS:
        raise click.BadParameter(f"unknown method {options.method!r} (one of {', '.join(METHODS)})",
                                 param_hint="--method")
    preset = METHODS[options.method]
    given = [name for name in (*_FSF_FIELDS, "policy_iv") if getattr(options, name) is not None]
    if preset is None:
        if given:
            raise click.BadParameter(f"{options.method} is not a slow-fast method (fsf, fs, ff or a Table 8 "
                                     f"ablation)", param_hint=_hint(given[0]))
        if options.noisytune_lambda is not None and options.method != "noisytune":
            raise click.BadParameter("needs --method noisytune", param_hint="--noisytune-lambda")
        return {}
    if options.noisytune_lambda is not None:
        raise click.BadParameter("needs --method noisytune", param_hint="--noisytune-lambda")
    if options.window is not None and options.window < 1:
        raise click.BadParameter("the window must be at least 1 update", param_hint="--fsf-window")
    out: Dict[str, OptionValue] = {"slow_fast_preset": preset}
    for name, option in _FSF_FIELDS.items():
        value = getattr(options, name)
        if value is not None:
            out[option] = value
    if options.method in WITHOUT_POLICY_IV:
        if options.policy_iv is not None or options.cka_interval is not None:
            raise click.BadParameter(f"{options.method} has no Policy IV",
                                     param_hint="--fsf-policy-iv" if options.policy_iv else "--fsf-cka-interval")
        return out
    policy_iv = options.policy_iv or ("off" if kind == "ner" else "auto")
    if policy_iv not in POLICY_IV_CHOICES:
        raise click.BadParameter(f"one of {', '.join(POLICY_IV_CHOICES)}", param_hint="--fsf-policy-iv")
    out["slow_fast_policy_iv"] = policy_iv
    if policy_iv == "auto":
        out["slow_fast_reference"] = str(pretrained)
    return out


def unaliased(tensors: Dict[str, Any]) -> Iterator[Tuple[str, Any]]:
    """``(name, tensor)`` pairs, each memory once: a tensor that shares its storage, offset and shape
    with an earlier one (tied weights, e.g. the embeddings and the MLM output matrix, which
    ``torch.load`` keeps tied) is left out, so that it is not noised twice."""
    seen = set()
    for name, tensor in tensors.items():
        if not hasattr(tensor, "untyped_storage"):
            continue
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key in seen:
            continue
        seen.add(key)
        yield name, tensor


def noised_checkpoint_path(save_dir: Path, pretrained: Path, lam: float, seed: int) -> Path:
    """Where the noised copy of ``pretrained`` for (lambda, seed) lives: a key of the file's resolved
    path, size and modification time, lambda and the seed."""
    stat = pretrained.stat()
    key = json.dumps([str(pretrained.resolve()), stat.st_size, stat.st_mtime_ns, float(lam), int(seed)])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return save_dir / NOISED_DIR / f"{pretrained.stem}-lambda{lam:g}-seed{seed}-{digest}.pt"


def write_noised_checkpoint(pretrained: Path, destination: Path, lam: float, seed: int) -> bool:
    """Write ``pretrained`` with NoisyTune's noise on every floating-point model tensor to
    ``destination`` (atomically); False if it already exists (nothing is redone)."""
    if destination.is_file():
        return False
    import os

    import torch

    from ..user_dir import checkpoint_compat  # noqa: F401  (allow-lists fairseq's globals)
    from ..user_dir.analysis.noisytune import noisytune_

    try:
        state = torch.load(str(pretrained), map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - an unreadable checkpoint is reported, whatever the cause
        raise click.ClickException(f"{pretrained}: cannot load the checkpoint ({error})") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise click.ClickException(f"{pretrained}: no 'model' state dict to add NoisyTune's noise to")
    report = noisytune_(unaliased(state["model"]), lam=lam, seed=seed, exclude=list(NOT_PARAMETERS))
    if not report.perturbed:
        raise click.ClickException(f"{pretrained}: NoisyTune found no tensor to perturb")
    for key in ("last_optimizer_state",):  # fine-tuning resets the optimizer: do not copy its state
        state.pop(key, None)
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + f".partial-{os.getpid()}")
    try:
        torch.save(state, str(partial))
        os.replace(partial, destination)
    finally:
        if partial.exists():
            partial.unlink()
    return True

"""NoisyTune (Wu et al. 2022), a baseline of Guo et al. (2023): perturb the pretrained weights once.

Before fine-tuning, every parameter matrix ``W`` gets uniform noise scaled by its own spread:

    W <- W + U(-lambda/2, lambda/2) * std(W),        lambda = 0.15

``std`` is the sample standard deviation over all entries of ``W`` (``torch.std``, n - 1 in the
denominator, as NoisyTune's code).  Decisions:

* every floating-point parameter counts as a "matrix" (weights, biases, layer norms), as in
  NoisyTune's code; a parameter whose std is 0 (e.g. a freshly initialised bias) or undefined
  (a single entry) or not finite is skipped and reported;
* ``include`` / ``exclude``: regular expressions searched in the parameter name
  (``re.search``); a parameter is perturbed iff it matches some ``include`` (all, if none given)
  and no ``exclude`` (e.g. exclude the new task head: ``exclude=[r"^heads\\."]``);
* seeded per parameter: the noise of ``W`` is drawn from a generator seeded with
  ``sha256(seed, name)``, so it does not depend on which other parameters are perturbed or on
  their order; it is drawn in float64 on the CPU and added in the parameter's dtype and device.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Sequence, Tuple

import torch

DEFAULT_LAMBDA = 0.15


@dataclass
class NoisyTuneReport:
    """What :func:`noisytune_` did: perturbed names with their std, skipped names with the reason."""

    perturbed: List[Tuple[str, float]] = field(default_factory=list)
    skipped: List[Tuple[str, str]] = field(default_factory=list)


def parameter_seed(seed: int, name: str) -> int:
    """A 63-bit seed from ``(seed, name)`` (sha256, independent of Python's hash salt)."""
    digest = hashlib.sha256(f"noisytune:{int(seed)}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _selected(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    if include and not any(re.search(p, name) for p in include):
        return False
    return not any(re.search(p, name) for p in exclude)


def uniform_noise(shape: torch.Size, scale: float, seed: int) -> torch.Tensor:
    """``U(-scale/2, scale/2)`` of ``shape`` in float64 from a generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=generator, dtype=torch.float64) - 0.5) * scale


@torch.no_grad()
def noisytune_(named_parameters: Iterable[Tuple[str, torch.Tensor]], lam: float = DEFAULT_LAMBDA,
               seed: int = 1, include: Optional[Sequence[str]] = None,
               exclude: Optional[Sequence[str]] = None) -> NoisyTuneReport:
    """Add NoisyTune's noise to the parameters in place (see the module docstring)."""
    if not lam >= 0:
        raise ValueError(f"lambda must be non-negative, got {lam}")
    include, exclude = list(include or []), list(exclude or [])
    report = NoisyTuneReport()
    for name, param in named_parameters:
        if not _selected(name, include, exclude):
            continue
        if not param.is_floating_point():
            report.skipped.append((name, "not floating point"))
            continue
        if param.numel() < 2:
            report.skipped.append((name, "std undefined (fewer than 2 entries)"))
            continue
        std = float(param.detach().double().std())
        if not std > 0 or std != std or std == float("inf"):
            report.skipped.append((name, f"std {std}"))
            continue
        noise = uniform_noise(param.shape, lam * std, parameter_seed(seed, name))
        param.add_(noise.to(device=param.device, dtype=param.dtype))
        report.perturbed.append((name, std))
    return report

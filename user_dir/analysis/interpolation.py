"""Linear interpolation of fine-tuned models (Wu et al. 2022, Sec. 3.1, Eq. 1-3, App. B).

Three models fine-tuned from one pretrained initialisation: θ_src (source only), θ_tgt
(target only) and θ_{src,tgt} (source + target).  With A, B (and C) the checkpoints given
to ``xlint interpolate A B [--plane C]``, B always the bilingual model:

    1D (Eq. 1, A = θ_src; Eq. 2, A = θ_tgt):  θ(α) = α θ_B + (1 − α) θ_A
    2D (Eq. 3, A = θ_src, C = θ_tgt):         θ(α1, α2) = θ_B + α1 δ_src + α2 δ_tgt,
                                               δ_src = θ_A − θ_B,  δ_tgt = θ_C − θ_B.

Both are affine combinations Σ_i w_i θ_i of the anchors with Σ_i w_i = 1:
1D (A, B) weights (1 − α, α); 2D (B, A, C) weights (1 − α1 − α2, α1, α2).  Computed in that
form, the anchors are reproduced exactly (α = 0 gives θ_A bit for bit, α = 1 gives θ_B, and
(α1, α2) = (0, 0), (1, 0), (0, 1) give θ_B, θ_A, θ_C): 1·x + 0·y = x in floating point.

Only floating-point tensors are interpolated; any other tensor (integer buffers, step
counters) must be equal in every anchor and is copied.  Geometry (App. B, Fig. 4):
‖δ_src‖ / ‖δ_tgt‖ and the angle arccos(⟨δ_src, δ_tgt⟩ / (‖δ_src‖ ‖δ_tgt‖)) in degrees, over
the chosen tensors, accumulated in float64 over slices (bounded extra memory).

Pure torch: no fairseq, nothing else of xlint.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch

StateDict = Mapping[str, object]

#: the paper's grid (Sec. 4 and footnote 5): -0.5, -0.4, ..., 1.5 plus twelve points near 0 and 1
PAPER_EXTRA = (0.025, 0.05, 0.075, 0.125, 0.15, 0.175, 0.825, 0.85, 0.875, 0.925, 0.95, 0.975)
#: prefix of the task-head tensors (everything else is the encoder)
HEAD_PREFIX = "heads."
SCOPES = ("all", "encoder", "head")
#: the norms and the angle are accumulated over float64 slices of this many elements
CHUNK_ELEMENTS = 1 << 18


def coarse_grid(start: float = -0.5, stop: float = 1.5, step: float = 0.1) -> List[float]:
    """``start, start + step, ..., stop`` rounded to 10 decimals (so that 0.30000000000000004 is 0.3)."""
    count = int(round((stop - start) / step))
    return [round(start + i * step, 10) for i in range(count + 1)]


def paper_grid_1d() -> List[float]:
    """The 1D grid of Wu et al. (2022): {−0.5, −0.4, …, 1.5} ∪ footnote 5's twelve points (33 values)."""
    return sorted(set(coarse_grid()) | set(PAPER_EXTRA))


def paper_grid_2d() -> List[Tuple[float, float]]:
    """The 2D grid: α1 and α2 each over {−0.5, −0.4, …, 1.5} (21 × 21 points)."""
    axis = coarse_grid()
    return [(a1, a2) for a1 in axis for a2 in axis]


def weights_1d(alpha: float) -> Tuple[float, float]:
    """Weights of (θ_A, θ_B) in θ(α) = α θ_B + (1 − α) θ_A."""
    return (1.0 - alpha, alpha)


def weights_2d(alpha1: float, alpha2: float) -> Tuple[float, float, float]:
    """Weights of (θ_B, θ_A, θ_C) in θ_B + α1 (θ_A − θ_B) + α2 (θ_C − θ_B)."""
    return (1.0 - alpha1 - alpha2, alpha1, alpha2)


def in_scope(name: str, scope: str) -> bool:
    """Whether tensor ``name`` is interpolated under ``scope``: all, encoder (not ``heads.*``) or head."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r} (one of {', '.join(SCOPES)})")
    is_head = name.startswith(HEAD_PREFIX)
    return scope == "all" or (scope == "head") == is_head


def is_float_tensor(value: object) -> bool:
    return isinstance(value, torch.Tensor) and torch.is_floating_point(value)


def combinable(states: Sequence[StateDict]) -> Optional[str]:
    """Why the state dicts cannot be combined (the first mismatching tensor), or None.

    They must have the same tensor names, and each tensor the same shape and the same
    float-ness in every state; non-float tensors must be equal.
    """
    first = states[0]
    names = [name for name, value in first.items() if isinstance(value, torch.Tensor)]
    for index, other in enumerate(states[1:], start=1):
        other_names = [name for name, value in other.items() if isinstance(value, torch.Tensor)]
        missing = [name for name in names if name not in other]
        extra = [name for name in other_names if name not in first]
        if missing:
            return f"tensor {missing[0]} is missing from model {index + 1}"
        if extra:
            return f"tensor {extra[0]} of model {index + 1} is missing from model 1"
        for name in names:
            a, b = first[name], other[name]
            if not isinstance(b, torch.Tensor):
                return f"tensor {name} is not a tensor in model {index + 1}"
            if tuple(a.shape) != tuple(b.shape):
                return f"tensor {name} has shape {list(a.shape)} in model 1 and {list(b.shape)} in model {index + 1}"
            if is_float_tensor(a) != is_float_tensor(b):
                return f"tensor {name} is {a.dtype} in model 1 and {b.dtype} in model {index + 1}"
            if not is_float_tensor(a) and not torch.equal(a, b):
                return f"non-float tensor {name} differs between model 1 and model {index + 1}"
    return None


def combine(anchors: Sequence[StateDict], weights: Sequence[float], scope: str = "all") -> Dict[str, object]:
    """A new state dict Σ_i w_i θ_i (fp32 for float tensors in scope); other entries from ``anchors[0]``.

    The independent, allocating form of :func:`combine_into` (tests, small models).
    """
    out: Dict[str, object] = {}
    for name, value in anchors[0].items():
        if is_float_tensor(value) and in_scope(name, scope):
            total = anchors[0][name].float() * float(weights[0])
            for anchor, weight in zip(anchors[1:], weights[1:]):
                total = total + anchor[name].float() * float(weight)
            out[name] = total
        else:
            out[name] = value.clone() if isinstance(value, torch.Tensor) else value
    return out


@torch.no_grad()
def combine_into(targets: Mapping[str, torch.Tensor], anchors: Sequence[StateDict], weights: Sequence[float],
                 scope: str = "all") -> int:
    """Write Σ_i w_i θ_i into the tensors ``targets`` (a model's state dict with ``keep_vars``) in place.

    Float tensors in scope get the combination (computed in the target's dtype and device:
    ``t = θ_0; t *= w_0; t += w_i θ_i``); every other tensor gets ``anchors[0]``'s value.
    Tensors that share storage (tied weights) are written once.  Returns the number of
    tensors written.  The anchors are only read.
    """
    if len(anchors) != len(weights):
        raise ValueError("one weight per anchor")
    seen = set()
    written = 0
    for name, target in targets.items():
        if not isinstance(target, torch.Tensor):
            continue
        key = (target.device, target.data_ptr(), target.dtype, tuple(target.shape))
        if key in seen:
            continue
        seen.add(key)
        data = target.data if isinstance(target, torch.nn.Parameter) else target
        first = anchors[0][name]
        if is_float_tensor(target) and in_scope(name, scope):
            data.copy_(first)
            data.mul_(float(weights[0]))
            for anchor, weight in zip(anchors[1:], weights[1:]):
                data.add_(anchor[name].to(device=data.device, dtype=data.dtype), alpha=float(weight))
        else:
            data.copy_(first)
        written += 1
    return written


def unique_float_names(state: StateDict, scope: str = "all") -> List[str]:
    """Names of the float tensors in scope, one per storage (a tied weight counts once)."""
    seen = set()
    names = []
    for name, value in state.items():
        if not is_float_tensor(value) or not in_scope(name, scope):
            continue
        key = (value.data_ptr(), tuple(value.shape), value.dtype)
        if key in seen:
            continue
        seen.add(key)
        names.append(name)
    return names


@dataclass(frozen=True)
class PlaneGeometry:
    """‖δ_src‖, ‖δ_tgt‖, their ratio and the angle between them in degrees (App. B)."""

    norm_src: float
    norm_tgt: float
    ratio: float
    cosine: float
    angle_degrees: float


def delta_geometry(center: StateDict, src: StateDict, tgt: StateDict,
                   names: Optional[Iterable[str]] = None) -> PlaneGeometry:
    """Norms, norm ratio and angle of δ_src = θ_src − θ_c and δ_tgt = θ_tgt − θ_c, in float64.

    ``names`` defaults to :func:`unique_float_names` of ``center``.  A zero norm gives a
    NaN cosine and angle (and an infinite or NaN ratio).
    """
    chosen = list(names) if names is not None else unique_float_names(center)
    dot = sq_src = sq_tgt = 0.0
    for name in chosen:
        for c, s, t in zip(_chunks(center[name]), _chunks(src[name]), _chunks(tgt[name])):
            d_src, d_tgt = s - c, t - c
            dot += float(torch.dot(d_src, d_tgt))
            sq_src += float(torch.dot(d_src, d_src))
            sq_tgt += float(torch.dot(d_tgt, d_tgt))
    norm_src, norm_tgt = math.sqrt(sq_src), math.sqrt(sq_tgt)
    ratio = norm_src / norm_tgt if norm_tgt > 0 else (math.inf if norm_src > 0 else math.nan)
    if norm_src > 0 and norm_tgt > 0:
        cosine = max(-1.0, min(1.0, dot / (norm_src * norm_tgt)))
        angle = math.degrees(math.acos(cosine))
    else:
        cosine = angle = math.nan
    return PlaneGeometry(norm_src, norm_tgt, ratio, cosine, angle)


def distance(a: StateDict, b: StateDict, names: Optional[Iterable[str]] = None) -> float:
    """‖θ_b − θ_a‖ over ``names`` (default: :func:`unique_float_names` of ``a``), in float64."""
    chosen = list(names) if names is not None else unique_float_names(a)
    total = 0.0
    for name in chosen:
        for x, y in zip(_chunks(a[name]), _chunks(b[name])):
            diff = y - x
            total += float(torch.dot(diff, diff))
    return math.sqrt(total)


def _chunks(tensor: torch.Tensor) -> Iterable[torch.Tensor]:
    """Flat float64 slices of ``tensor`` of at most :data:`CHUNK_ELEMENTS` (bounds the float64 copies)."""
    flat = tensor.detach().reshape(-1)
    for start in range(0, flat.numel(), CHUNK_ELEMENTS):
        yield flat[start:start + CHUNK_ELEMENTS].to(torch.float64)

"""Statistics of learned L0 mask parameters (Wang et al. 2020, Sec. 3.3, Fig. 4).

Inputs are the gates' ``log α`` vectors (the paper's π) of two runs over the same groups, and
each gate's key (``layer3.attn``, ``layer3.ffn``, ...).

* cosine similarity of two vectors, per key (Fig. 4a: per layer, attention vs FFN)::

      cos(a, b) = a·b / (‖a‖ ‖b‖)

* centred cosine (Pearson correlation), ``cos(a − ā, b − b̄)`` per key: not in the paper; it removes
  the drift that the L0 penalty gives every gate alike, which alone makes raw cosines near 1;
* binarised gate: the deterministic hard-concrete gate ``clamp(sigmoid(log α)(ζ − γ) + γ, 0, 1)``
  above 1/2, i.e. ``log α > logit((1/2 − γ)/(ζ − γ))`` (``log α > 0`` for γ = −0.1, ζ = 1.1);
  density = fraction of binarised gates that are open;
* the ``k`` most negative and most positive entries of one vector (Fig. 4b).

torch / numpy only.
"""
from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

import numpy as np

GAMMA = -0.1
ZETA = 1.1


def _vector(values) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


def cosine(a, b) -> float:
    """``a·b / (‖a‖‖b‖)``; NaN when either vector is zero."""
    a, b = _vector(a), _vector(b)
    if a.shape != b.shape:
        raise ValueError(f"vectors of different sizes: {a.size} and {b.size}")
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norm) if norm > 0 else float("nan")


def split_by_key(values, keys: Sequence[str]) -> Dict[str, np.ndarray]:
    """The entries of ``values`` per key, keys in order of first appearance."""
    values = _vector(values)
    if values.size != len(keys):
        raise ValueError(f"{values.size} values and {len(keys)} keys")
    order: Dict[str, List[int]] = {}
    for i, key in enumerate(keys):
        order.setdefault(key, []).append(i)
    return {key: values[np.asarray(index)] for key, index in order.items()}


def cosine_by_key(a, b, keys: Sequence[str]) -> Dict[str, float]:
    """``{key: cos(a[key], b[key])}`` (Fig. 4a with keys ``layer<i>.attn`` / ``layer<i>.ffn``)."""
    parts_a, parts_b = split_by_key(a, keys), split_by_key(b, keys)
    return {key: cosine(parts_a[key], parts_b[key]) for key in parts_a}


def centered_cosine_by_key(a, b, keys: Sequence[str]) -> Dict[str, float]:
    """``{key: cos(a[key] − mean, b[key] − mean)}``, the Pearson correlation per key."""
    parts_a, parts_b = split_by_key(a, keys), split_by_key(b, keys)
    return {key: cosine(parts_a[key] - parts_a[key].mean(), parts_b[key] - parts_b[key].mean()) for key in parts_a}


def binarize_threshold(gamma: float = GAMMA, zeta: float = ZETA) -> float:
    """The ``log α`` above which the deterministic gate exceeds 1/2: ``logit((1/2 − γ)/(ζ − γ))``."""
    p = (0.5 - gamma) / (zeta - gamma)
    return math.log(p / (1 - p))


def binarize(log_alpha, gamma: float = GAMMA, zeta: float = ZETA) -> np.ndarray:
    """Open (True) where the deterministic gate is above 1/2."""
    return _vector(log_alpha) > binarize_threshold(gamma, zeta)


def density_by_key(log_alpha, keys: Sequence[str], gamma: float = GAMMA, zeta: float = ZETA) -> Dict[str, float]:
    """Fraction of open binarised gates per key."""
    return {key: float(part.mean()) for key, part in split_by_key(binarize(log_alpha, gamma, zeta), keys).items()}


def extremes(values, k: int = 10) -> Tuple[List[int], List[int]]:
    """Indices of the ``k`` most negative (ascending) and the ``k`` most positive (descending) entries.

    Ties keep index order (a stable sort).
    """
    values = _vector(values)
    k = min(k, values.size)
    ascending = np.argsort(values, kind="stable")
    descending = np.argsort(-values, kind="stable")
    return ascending[:k].tolist(), descending[:k].tolist()

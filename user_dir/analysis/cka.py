"""Linear centred kernel alignment (Kornblith et al. 2019), as Guo et al. (2023, Fig. 6) use it.

For representations ``X`` (n x p) and ``Y`` (n x q) of the same n tokens, centred column-wise
(``X_c = H X`` with ``H = I - 11^T / n``),

    CKA(X, Y) = ||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F  ||Y_c^T Y_c||_F)

which equals ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` with the linear kernels ``K = X X^T``,
``L = Y Y^T`` and ``HSIC(K, L) = tr(K H L H) / (n - 1)^2``.  It lies in [0, 1], is 1 for
``CKA(X, X)`` and is invariant to orthogonal transforms and isotropic scaling of either side.

Decisions: computed in float64 (the Gram matrices of d = 768 features square values that float32
represents poorly); on non-padding tokens only (``mask``: True for a real token), since padding
rows are identical across models and would inflate the similarity.  A side whose centred
representation is zero (all tokens equal) has no defined CKA: NaN is returned.
"""
from __future__ import annotations

from typing import Optional

import torch


def token_rows(features: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The ``n x p`` float64 rows of the real tokens of ``B x T x p`` (or already ``n x p``) features.

    ``mask`` (``B x T``, True for a real token) selects the rows; with 2-D features it is ``n``.
    """
    if mask is not None:
        if mask.shape != features.shape[:-1]:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match features {tuple(features.shape)}")
        features = features[mask.to(torch.bool)]
    return features.reshape(-1, features.size(-1)).to(torch.float64)


def linear_cka(x: torch.Tensor, y: torch.Tensor, mask: Optional[torch.Tensor] = None) -> float:
    """Linear CKA of two models' representations of the same tokens (see the module docstring).

    ``x``: ``B x T x p`` or ``n x p``; ``y``: the same leading shape, any width ``q``;
    ``mask``: ``B x T`` bool, True on non-padding tokens (None: every row counts).
    """
    xs, ys = token_rows(x, mask), token_rows(y, mask)
    if xs.size(0) != ys.size(0):
        raise ValueError(f"x has {xs.size(0)} token rows and y {ys.size(0)}")
    if xs.size(0) < 2:
        raise ValueError("linear CKA needs at least two tokens")
    xs = xs - xs.mean(0, keepdim=True)
    ys = ys - ys.mean(0, keepdim=True)
    cross = torch.linalg.matrix_norm(ys.T @ xs) ** 2
    norm_x = torch.linalg.matrix_norm(xs.T @ xs)
    norm_y = torch.linalg.matrix_norm(ys.T @ ys)
    denom = norm_x * norm_y
    if denom == 0:
        return float("nan")
    return float(cross / denom)

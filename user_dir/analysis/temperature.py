"""Temperature-scaled language sampling probabilities (XLM; Conneau & Lample 2019).

    q_i = n_i / sum_j n_j,        P_i = q_i^(1/T) / sum_j q_j^(1/T)

T = 1 samples languages in proportion to their data; T -> infinity samples them
uniformly.  XLM samples with alpha = 1/T = 0.7 (T ~= 1.43), the default in xlint.
This module is pure numpy so that preprocessing can use it without fairseq.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

#: XLM (Conneau & Lample 2019, Sec. 3.1) samples sentences with alpha = 0.7, i.e. T = 1/0.7.
DEFAULT_TEMPERATURE: float = 1.0 / 0.7


def temperature_probabilities(sizes: Sequence[float], temperature: float = DEFAULT_TEMPERATURE) -> np.ndarray:
    """Return P_i = q_i^(1/T) / sum_j q_j^(1/T) with q_i = n_i / sum_j n_j.

    ``sizes`` are the per-language amounts n_i (sentences or tokens); they must be
    non-negative with a positive sum, and ``temperature`` must be positive.
    """
    counts = np.asarray(sizes, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError("sizes must be a non-empty 1-D sequence")
    if np.any(counts < 0) or counts.sum() <= 0:
        raise ValueError(f"sizes must be non-negative with a positive sum, got {list(sizes)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    q = counts / counts.sum()
    # work in log space so that large T and tiny q_i neither underflow nor overflow
    with np.errstate(divide="ignore"):
        log_scaled = np.log(q) / temperature
    log_scaled -= log_scaled[np.isfinite(log_scaled)].max()
    scaled = np.exp(log_scaled)
    return scaled / scaled.sum()

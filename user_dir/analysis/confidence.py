"""Mean, sample variance and Student's t confidence interval of a few runs (Wu et al. 2022, Fig. 2, 5).

For n values x_1..x_n (one per seed, or pooled over seeds, language pairs and tasks):

    mean  x̄ = Σ x_i / n,      s² = Σ (x_i − x̄)² / (n − 1),
    CI    x̄ ± t_{(1 + level)/2, n − 1} · s / √n          (level 0.95: the 97.5% quantile of t_{n−1}).

With n = 1 the variance and the interval are NaN (undefined).  The normalisation of
Wu et al. divides each run's score by its matching bilingual model's score before these
statistics (:func:`normalised`).

numpy and scipy only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Interval:
    n: int
    mean: float
    variance: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def t_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean, sample variance (ddof 1) and the Student's t interval of ``values``."""
    from scipy import stats

    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0:
        raise ValueError("no values")
    if not 0 < level < 1:
        raise ValueError("level must lie in (0, 1)")
    mean = float(x.mean())
    if x.size < 2:
        return Interval(1, mean, math.nan, math.nan, math.nan)
    variance = float(x.var(ddof=1))
    half = float(stats.t.ppf((1 + level) / 2, x.size - 1)) * math.sqrt(variance / x.size)
    return Interval(int(x.size), mean, variance, mean - half, mean + half)


def normalised(score: float, reference: float) -> float:
    """``score / reference`` (the bilingual model's score); NaN when the reference is 0."""
    return score / reference if reference != 0 else math.nan

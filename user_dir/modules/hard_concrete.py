"""Hard-concrete gates (Louizos, Welling & Kingma 2017, "Learning sparse neural networks through L0
regularization"), as Wang et al. (2020, Sec. 3.3) use them to learn per-language masks over a frozen model.

Each gate ``j`` has a location parameter ``log α_j`` (the paper's π).  With the stretch interval
``(γ, ζ) = (−0.1, 1.1)`` and temperature ``β = 2/3``:

* training sample, ``u ~ Uniform(0, 1)``::

      s = sigmoid((log u − log(1 − u) + log α) / β)
      z = clamp(s (ζ − γ) + γ, 0, 1)

  (reparameterised: ``z`` is differentiable in ``log α``; it is exactly 0 or 1 with positive
  probability);
* probability that a gate is open (non-zero) and the expected L0 norm::

      P(z ≠ 0) = sigmoid(log α − β log(−γ / ζ))          E‖z‖₀ = Σ_j P(z_j ≠ 0)

* the closed forms used in the tests, with ``L = log u − log(1 − u)`` standard logistic:
  ``P(z = 0) = sigmoid(β log(−γ/ζ) − log α)`` and ``P(z = 1) = sigmoid(log α − β log((1 − γ)/(ζ − 1)))``;
* deterministic test-time gate (Louizos et al., Eq. 13)::

      ẑ = clamp(sigmoid(log α) (ζ − γ) + γ, 0, 1)

  and its binarisation ``ẑ > 1/2``, which holds exactly when ``log α > 0``.

Initialisation of ``log α``: ``normal(mean, std)`` (Louizos et al. use a mean that opens the
gates with probability ≈ 0.9, e.g. ``log α = 2.2``; a constant is ``std = 0``).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

GAMMA = -0.1
ZETA = 1.1
BETA = 2.0 / 3.0
#: u is drawn from [EPS, 1 − EPS] so that log u and log(1 − u) stay finite
EPS = 1e-6


class HardConcreteGate(nn.Module):
    """``num_gates`` independent hard-concrete gates with learnable ``log_alpha`` (see the module docstring).

    ``forward()`` returns a sample in training mode and the deterministic gate in eval mode.
    """

    def __init__(self, num_gates: int, init_mean: float = 2.2, init_std: float = 0.01,
                 gamma: float = GAMMA, zeta: float = ZETA, beta: float = BETA):
        super().__init__()
        if num_gates <= 0:
            raise ValueError(f"a hard-concrete gate needs at least one gate, got {num_gates}")
        if not (gamma < 0.0 and zeta > 1.0 and beta > 0.0):
            raise ValueError(f"need gamma < 0 < 1 < zeta and beta > 0 (got {gamma}, {zeta}, {beta})")
        self.gamma, self.zeta, self.beta = float(gamma), float(zeta), float(beta)
        self.init_mean, self.init_std = float(init_mean), float(init_std)
        self.log_alpha = nn.Parameter(torch.empty(num_gates))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            if self.init_std > 0:
                self.log_alpha.normal_(self.init_mean, self.init_std)
            else:
                self.log_alpha.fill_(self.init_mean)

    @property
    def num_gates(self) -> int:
        return self.log_alpha.numel()

    def sample(self, generator: torch.Generator = None) -> torch.Tensor:
        """A reparameterised sample ``z`` (differentiable in ``log_alpha``)."""
        u = torch.rand(self.log_alpha.shape, generator=generator, device=self.log_alpha.device,
                       dtype=self.log_alpha.dtype) * (1 - 2 * EPS) + EPS
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.log_alpha) / self.beta)
        return torch.clamp(s * (self.zeta - self.gamma) + self.gamma, 0.0, 1.0)

    def deterministic(self) -> torch.Tensor:
        """The test-time gate ``clamp(sigmoid(log α)(ζ − γ) + γ, 0, 1)``."""
        return torch.clamp(torch.sigmoid(self.log_alpha) * (self.zeta - self.gamma) + self.gamma, 0.0, 1.0)

    def prob_nonzero(self) -> torch.Tensor:
        """``P(z_j ≠ 0) = sigmoid(log α_j − β log(−γ/ζ))`` per gate."""
        return torch.sigmoid(self.log_alpha - self.beta * math.log(-self.gamma / self.zeta))

    def expected_l0(self) -> torch.Tensor:
        """``E‖z‖₀ = Σ_j P(z_j ≠ 0)``."""
        return self.prob_nonzero().sum()

    def binarized(self) -> torch.Tensor:
        """Where the deterministic gate exceeds 1/2, i.e. ``log α > logit((1/2 − γ)/(ζ − γ))`` (0 here)."""
        p = (0.5 - self.gamma) / (self.zeta - self.gamma)
        return self.log_alpha > math.log(p / (1 - p))

    def forward(self) -> torch.Tensor:
        return self.sample() if self.training else self.deterministic()

    def extra_repr(self) -> str:
        return f"num_gates={self.num_gates}, gamma={self.gamma}, zeta={self.zeta}, beta={self.beta:.4g}"

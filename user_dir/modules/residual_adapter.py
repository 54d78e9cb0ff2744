"""The bottleneck adapter of Houlsby et al. (2019), as Wang et al. (2020, Sec. 4) place it."""
from typing import Optional

import torch
import torch.nn as nn
from fairseq import utils


class ResidualAdapter(nn.Module):
    """Bottleneck adapter ``o = W_h g(W_z z) + z`` (Houlsby et al. 2019; Wang et al. 2020 Sec. 4).

    ``W_z`` projects ``embed_dim`` down to ``bottleneck``, ``W_h`` back up, ``g`` is the
    activation.  Initialised near the identity: both projections are drawn from N(0, std^2)
    with a small std and zero biases, so ``o ~= z`` at the start of training.
    """

    def __init__(self, embed_dim: int, bottleneck: int, activation_fn: str, init_std: float):
        super().__init__()
        self.down = nn.Linear(embed_dim, bottleneck)  # W_z
        self.up = nn.Linear(bottleneck, embed_dim)  # W_h
        self.activation_fn = utils.get_activation_fn(activation_fn)
        self.init_std = init_std
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for linear in (self.down, self.up):
            nn.init.normal_(linear.weight, std=self.init_std)
            nn.init.zeros_(linear.bias)

    def forward(self, z: torch.Tensor, padding_mask: Optional[torch.Tensor]) -> torch.Tensor:
        return self.up(self.activation_fn(self.down(z))) + z

"""The two sublayers of a post-norm Transformer layer, without their dropout, residual and norm.

Both take ``(x: T x B x C, padding_mask: B x T or None)`` and return ``T x B x C``, the
interface that :class:`~.language_routed.LanguageRouted` routes by language (``+attn`` and
``+ffn`` in Wang et al. 2020 are per-language copies of these).
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from fairseq import utils
from fairseq.modules import MultiheadAttention


class SelfAttentionSublayer(nn.Module):
    """Multi-head self-attention; returns the output projection before dropout/residual."""

    def __init__(self, embed_dim: int, num_heads: int, attention_dropout: float):
        super().__init__()
        self.attention = MultiheadAttention(embed_dim, num_heads, dropout=attention_dropout, self_attention=True)

    def forward(self, x: torch.Tensor, padding_mask: Optional[torch.Tensor]) -> torch.Tensor:
        out, _ = self.attention(x, x, x, key_padding_mask=padding_mask, need_weights=False)
        return out


class FeedForwardSublayer(nn.Module):
    """Position-wise ``fc2(dropout(g(fc1(x))))``."""

    def __init__(self, embed_dim: int, ffn_embed_dim: int, activation_fn: str, activation_dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(embed_dim, ffn_embed_dim)
        self.fc2 = nn.Linear(ffn_embed_dim, embed_dim)
        self.activation_fn = utils.get_activation_fn(activation_fn)
        self.activation_dropout = activation_dropout

    def forward(self, x: torch.Tensor, padding_mask: Optional[torch.Tensor]) -> torch.Tensor:
        x = self.activation_fn(self.fc1(x))
        x = F.dropout(x, p=self.activation_dropout, training=self.training)
        return self.fc2(x)

"""Fine-tuning heads that :meth:`XlmAdapterModel.register_head` adds on top of the encoder.

Every head reads the encoder's features ``B x T x C``; its kind fixes what it outputs.
Their parameters are tagged ``param.param_group = HEAD_PARAM_GROUP`` by the fine-tuning
tasks, which the ``xlint_adam`` optimizer reads to give heads their own learning rate.
"""
from typing import Dict, Optional, Type

import torch
import torch.nn as nn

#: value of ``param.param_group`` for task-head parameters (read by the ``xlint_adam`` optimizer)
HEAD_PARAM_GROUP = "head"


class TokenHead(nn.Module):
    """Per-token logits ``B x T x n`` (tagging: read at each word's first subword)."""

    def __init__(self, dim: int, num_outputs: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(dim, num_outputs)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.dropout(features))


class SentenceHead(nn.Module):
    """Sentence(-pair) logits ``B x n`` from the first (``<s>``) token, as RoBERTa's head."""

    def __init__(self, dim: int, num_outputs: int, dropout: float):
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(dim, num_outputs)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.dense(self.dropout(features[:, 0, :])))
        return self.out_proj(self.dropout(x))


class SpanHead(nn.Module):
    """Extractive QA: start and end logits ``B x T x 2`` (``num_outputs`` must be 2)."""

    def __init__(self, dim: int, num_outputs: int, dropout: float):
        super().__init__()
        if num_outputs != 2:
            raise ValueError("a span head has exactly two outputs (start, end)")
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(dim, 2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.dropout(features))


#: ``register_head``'s ``kind`` -> head class
HEAD_KINDS: Dict[str, Type[nn.Module]] = {"token": TokenHead, "sentence": SentenceHead, "span": SpanHead}


def new_head(heads: nn.ModuleDict, name: str, kind: str, num_outputs: int, embed_dim: int,
             dropout: float) -> Optional[nn.Module]:
    """A new, uninitialised head ``kind`` for ``register_head`` of both model families; None when
    ``heads`` already holds ``name`` with this kind and size (loading a checkpoint registers it again)."""
    if kind not in HEAD_KINDS:
        raise ValueError(f"unknown head kind {kind!r}; choose from {sorted(HEAD_KINDS)}")
    if name in heads:
        existing = heads[name].out_proj.out_features
        if not isinstance(heads[name], HEAD_KINDS[kind]) or existing != num_outputs:
            raise ValueError(f"head {name!r} already exists with another shape")
        return None
    return HEAD_KINDS[kind](embed_dim, num_outputs, dropout)

"""Gradient similarity between languages (Wang et al. 2020, Sec. 3.1 and Fig. 3).

For two probe batches a and b (one per language, or two independent batches of one
language: the paper's "En-En") and the gradients of the *shared* parameters theta,
restricted to a parameter group G,

    g_a^G = grad_{theta_G} L_a,        cos_G(a, b) = <g_a^G, g_b^G> / (||g_a^G|| ||g_b^G||).

Dots and squared norms are additive over disjoint groups, so the leaf groups of a model
(:func:`parameter_group`: embeddings, every layer's attention, FFN, adapters and layer
norms, the LM head) are computed once, as Gram matrices ``F_G F_G^T`` of the probes'
flattened gradients ``F_G`` (P probes x |G|, accumulated in float64), and every
aggregate group (:func:`aggregate_groups`: ``total``, ``layer<k>``, ``attention``,
``ffn``, ...) is a sum of leaf Gram matrices.  A cosine is NaN when a norm is zero or a
value is not finite; callers record it as such.

Pure torch: no fairseq, nothing else of xlint.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch

#: the aggregate over every shared parameter
TOTAL = "total"
#: parameter groups that belong to no layer
EMBEDDINGS, LM_HEAD, OTHER = "embeddings", "lm_head", "other"
#: kinds of a layer's sublayers (leaf groups are ``layer<k>.<kind>``)
LAYER_KINDS = ("attention", "ffn", "adapter", "layer_norm")

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.(.+)$")
_EMBEDDING_PARTS = ("embed_tokens", "embed_positions", "layernorm_embedding", "emb_layer_norm")
#: Gram entries are accumulated over slices of this many elements (bounds the float64 copy)
CHUNK_ELEMENTS = 1 << 22


def parameter_group(name: str) -> str:
    """The leaf group of a parameter name.

    ``...layers.<k>.self_attn...`` -> ``layer<k>.attention``; ``...layers.<k>.ffn...`` (or
    ``fc1``/``fc2``) -> ``layer<k>.ffn``; ``...layers.<k>.adapter...`` -> ``layer<k>.adapter``;
    a layer's ``*layer_norm*`` -> ``layer<k>.layer_norm``; token/position embeddings and
    their layer norm -> ``embeddings``; ``lm_head`` -> ``lm_head``; anything else -> ``other``.
    """
    match = _LAYER.search(name)
    if match:
        layer, rest = int(match.group(1)), match.group(2)
        first = rest.split(".", 1)[0]
        if first.startswith("self_attn") and "layer_norm" not in first:
            kind = "attention"
        elif first in ("ffn", "fc1", "fc2"):
            kind = "ffn"
        elif first.startswith("adapter"):
            kind = "adapter"
        elif "layer_norm" in first:
            kind = "layer_norm"
        else:
            kind = "other"
        return f"layer{layer}.{kind}"
    parts = name.split(".")
    if any(part in _EMBEDDING_PARTS for part in parts):
        return EMBEDDINGS
    if "lm_head" in parts:
        return LM_HEAD
    return OTHER


def aggregate_groups(leaf: str) -> List[str]:
    """Every group a leaf counts in: itself, ``total``, and for ``layer<k>.<kind>`` also
    ``layer<k>`` and ``<kind>`` (all layers)."""
    groups = [leaf, TOTAL]
    if leaf.startswith("layer") and "." in leaf:
        layer, kind = leaf.split(".", 1)
        groups += [layer, kind]
    return groups


def group_sort_key(group: str) -> Tuple[int, int, str]:
    """Display order: total, embeddings, layers bottom-up (whole layer first), kinds, lm_head, other."""
    if group == TOTAL:
        return (0, 0, "")
    if group == EMBEDDINGS:
        return (1, 0, "")
    match = re.fullmatch(r"layer(\d+)(?:\.(.+))?", group)
    if match:
        return (2, int(match.group(1)), match.group(2) or "")
    if group in LAYER_KINDS:
        return (3, LAYER_KINDS.index(group), "")
    if group == LM_HEAD:
        return (4, 0, "")
    return (5, 0, group)


@dataclass(frozen=True)
class GradientLayout:
    """Where each parameter's gradient lies in one flat vector; every leaf group is contiguous."""

    names: Tuple[str, ...]
    shapes: Tuple[Tuple[int, ...], ...]
    #: offset of every parameter (in ``names`` order) in the flat vector
    offsets: Tuple[int, ...]
    #: leaf group -> (start, end) in the flat vector
    groups: Dict[str, Tuple[int, int]]
    numel: int

    @classmethod
    def of(cls, named_shapes: Iterable[Tuple[str, Sequence[int]]]) -> "GradientLayout":
        items = [(name, tuple(int(s) for s in shape)) for name, shape in named_shapes]
        if not items:
            raise ValueError("no parameters to compare")
        order = sorted(range(len(items)), key=lambda i: (group_sort_key(parameter_group(items[i][0])), i))
        offsets = [0] * len(items)
        groups: Dict[str, Tuple[int, int]] = {}
        position = 0
        for i in order:
            name, shape = items[i]
            leaf = parameter_group(name)
            start = groups.get(leaf, (position, position))[0]
            offsets[i] = position
            position += math.prod(shape)
            groups[leaf] = (start, position)
        return cls(tuple(n for n, _ in items), tuple(s for _, s in items), tuple(offsets), groups, position)

    def zeros(self, device=None) -> torch.Tensor:
        """A flat float32 accumulator."""
        return torch.zeros(self.numel, dtype=torch.float32, device=device)

    def add_into(self, flat: torch.Tensor, grads: Sequence[Optional[torch.Tensor]], scale: float = 1.0) -> None:
        """``flat += scale * grads`` (one gradient per name, ``None`` for a parameter the loss did not reach)."""
        if len(grads) != len(self.names):
            raise ValueError(f"{len(grads)} gradients for {len(self.names)} parameters")
        for grad, offset, shape in zip(grads, self.offsets, self.shapes):
            if grad is None:
                continue
            n = math.prod(shape)
            flat[offset: offset + n].add_(grad.reshape(-1).to(flat.dtype), alpha=scale)


def leaf_gram_matrices(flats: Sequence[torch.Tensor], layout: GradientLayout,
                       chunk: int = CHUNK_ELEMENTS) -> Dict[str, torch.Tensor]:
    """Per leaf group G, the P x P float64 Gram matrix ``G[p, q] = <g_p^G, g_q^G>``."""
    grams: Dict[str, torch.Tensor] = {}
    for leaf, (start, end) in layout.groups.items():
        gram = torch.zeros(len(flats), len(flats), dtype=torch.float64, device=flats[0].device)
        for lo in range(start, end, chunk):
            hi = min(end, lo + chunk)
            block = torch.stack([f[lo:hi] for f in flats]).to(torch.float64)
            gram += block @ block.T
        grams[leaf] = gram
    return grams


def group_gram_matrices(flats: Sequence[torch.Tensor], layout: GradientLayout,
                        chunk: int = CHUNK_ELEMENTS) -> Dict[str, torch.Tensor]:
    """Leaf and aggregate groups' Gram matrices (aggregates are sums of their leaves'), on the CPU."""
    grams: Dict[str, torch.Tensor] = {}
    for leaf, gram in leaf_gram_matrices(flats, layout, chunk).items():
        gram = gram.cpu()
        for group in aggregate_groups(leaf):
            grams[group] = grams[group] + gram if group in grams else gram.clone()
    return dict(sorted(grams.items(), key=lambda item: group_sort_key(item[0])))


def cosine(dot: float, sq_norm_a: float, sq_norm_b: float) -> float:
    """<a, b> / (||a|| ||b||); NaN if a norm is zero or any input is not finite."""
    if not all(math.isfinite(v) for v in (dot, sq_norm_a, sq_norm_b)) or sq_norm_a <= 0 or sq_norm_b <= 0:
        return math.nan
    return dot / math.sqrt(sq_norm_a * sq_norm_b)


@dataclass(frozen=True)
class Similarity:
    """One pair of probes in one group: the cosine and what it is made of (re-aggregable)."""

    a: int
    b: int
    group: str
    dot: float
    sq_norm_a: float
    sq_norm_b: float

    @property
    def cos(self) -> float:
        return cosine(self.dot, self.sq_norm_a, self.sq_norm_b)

    @property
    def finite(self) -> bool:
        return all(math.isfinite(v) for v in (self.dot, self.sq_norm_a, self.sq_norm_b))


def pair_similarities(grams: Dict[str, torch.Tensor], pairs: Sequence[Tuple[int, int]]) -> List[Similarity]:
    """For every group and probe pair (a, b): dot, both squared norms (and hence the cosine)."""
    out = []
    for group, gram in grams.items():
        values = gram.tolist()
        for a, b in pairs:
            out.append(Similarity(a, b, group, values[a][b], values[a][a], values[b][b]))
    return out


def combine(parts: Iterable[Similarity], group: str) -> Similarity:
    """The similarity over the union of disjoint groups, from their dots and squared norms."""
    parts = list(parts)
    if not parts:
        raise ValueError("nothing to combine")
    return Similarity(parts[0].a, parts[0].b, group, sum(p.dot for p in parts),
                      sum(p.sq_norm_a for p in parts), sum(p.sq_norm_b for p in parts))

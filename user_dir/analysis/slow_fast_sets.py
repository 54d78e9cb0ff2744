"""The weight sets of "fine-tuning slow and fast" (Guo et al. 2023, Sec. 3) and their specs.

For a 12-layer encoder (layers numbered 1..12 from the bottom) the paper uses

    S^I  = all weights of layers 1-10        (Policy I: K = c1 in P1)
    S^II = FFN weights of layers 1-4         (Policy II: K = R in P2)
    V^I  = all weights of layers 11-12       (Policy III: K = 1 in P1)
    V^II = attention weights of layers 11-12 (Policy IV: K = c2 in P2)

A **set spec** is a comma-separated list of items:

* ``A-B:kind`` or ``A:kind``: layers A..B (1-based, inclusive), ``kind`` one of ``all``,
  ``attn`` (the self-attention sublayer and the layer norm after it), ``ffn`` (the feed-forward
  sublayer and the layer norm after it); ``all`` is every weight of the layer;
* ``embeddings``: token and position embeddings and the embedding layer norm;
* ``head``: the task head;
* ``none`` (or the empty string): the empty set.

E.g. ``"1-10:all"``, ``"1-4:ffn"``, ``"11-12:attn"``, ``"1-4:ffn,embeddings"``.

**Other depths** (:func:`default_specs`).  The paper says "twelve layers" (Fig. 3) but also that
its XLM-R "has 550 million parameters" (App. B), which is XLM-R large with 24 layers: it is not
clear which depth the layer numbers were chosen on.  xlint scales them with the depth ``L``:

``proportional`` (default)
    ``top = max(1, round(L/6))`` layers form V (2 of 12), ``bottom = max(1, round(L/3))`` layers
    form S^II (4 of 12), clipped to ``L - top``; S^I is layers ``1 .. L - top``.
    L = 12: 1-10 / 1-4 / 11-12 (the paper); L = 24 (XLM-R large): 1-20 / 1-8 / 21-24;
    L = 8 (``xlm_adapter_paper``): 1-7 / 1-3 / 8; L = 2 (``xlm_adapter_tiny``): 1 / 1 / 2.
``absolute``
    ``top = 2`` and ``bottom = 4`` whatever ``L`` (clipped the same way): the paper's numbers read
    as absolute layer counts.

Rounding is half up.  Parameters outside every set (embeddings, the embedding layer norm,
language-specific modules, the task head, unless a spec or option names them) keep K = 1.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Dict, FrozenSet, Optional, Tuple

#: sublayer kinds of a layer position
KINDS = ("attn", "ffn", "other")
#: kinds a spec item may name (``all`` = every kind)
SPEC_KINDS = ("all", "attn", "ffn")
#: the four sets and their policies
SET_NAMES = ("S1", "S2", "V1", "V2")
DEPTH_RULES = ("proportional", "absolute")
EXTRAS = ("embeddings", "head")

_ITEM = re.compile(r"^(\d+)(?:-(\d+))?:(\w+)$")


@dataclass(frozen=True)
class ParamLocation:
    """Where a parameter sits: ``layer`` (1-based) and ``kind``, or ``region`` for the rest.

    ``region`` is ``layer``, ``embeddings``, ``head`` or ``other`` (e.g. the MLM head);
    ``language_specific`` marks a parameter owned by one language's module.
    """

    region: str
    layer: Optional[int] = None
    kind: Optional[str] = None
    language_specific: bool = False


@dataclass(frozen=True)
class WeightSet:
    """A set of weights: ``(layer, kind)`` cells plus whole regions (``embeddings``, ``head``)."""

    cells: FrozenSet[Tuple[int, str]] = frozenset()
    regions: FrozenSet[str] = frozenset()

    def contains(self, loc: ParamLocation, include_language_specific: bool = False) -> bool:
        if loc.language_specific and not include_language_specific:
            return False
        if loc.region == "layer":
            return (loc.layer, loc.kind) in self.cells
        return loc.region in self.regions

    def layers(self) -> Tuple[int, ...]:
        return tuple(sorted({layer for layer, _ in self.cells}))

    def __bool__(self) -> bool:
        return bool(self.cells or self.regions)


def parse_set_spec(spec: str, num_layers: int) -> WeightSet:
    """The :class:`WeightSet` of a spec (see the module docstring) for a ``num_layers``-layer encoder."""
    cells, regions = set(), set()
    for raw in spec.split(","):
        item = raw.strip()
        if item in ("", "none"):
            continue
        if item in EXTRAS:
            regions.add(item)
            continue
        match = _ITEM.match(item)
        if not match:
            raise ValueError(f"set spec item {item!r}: expected A-B:KIND or A:KIND (KIND one of "
                             f"{', '.join(SPEC_KINDS)}), {', '.join(EXTRAS)} or none")
        first = int(match.group(1))
        last = int(match.group(2) or first)
        kind = match.group(3)
        if kind not in SPEC_KINDS:
            raise ValueError(f"set spec item {item!r}: kind must be one of {', '.join(SPEC_KINDS)}")
        if not 1 <= first <= last <= num_layers:
            raise ValueError(f"set spec item {item!r}: layers must satisfy 1 <= A <= B <= {num_layers} "
                             f"(the encoder has {num_layers} layers, numbered from 1 at the bottom)")
        kinds = KINDS if kind == "all" else (kind,)
        cells.update((layer, k) for layer in range(first, last + 1) for k in kinds)
    return WeightSet(frozenset(cells), frozenset(regions))


def _half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def default_layer_counts(num_layers: int, rule: str = "proportional") -> Tuple[int, int]:
    """``(bottom, top)``: how many bottom layers form S^II and top layers form V (see the docstring)."""
    if num_layers < 1:
        raise ValueError(f"the encoder needs at least one layer, got {num_layers}")
    if rule == "proportional":
        top, bottom = max(1, _half_up(num_layers / 6)), max(1, _half_up(num_layers / 3))
    elif rule == "absolute":
        top, bottom = 2, 4
    else:
        raise ValueError(f"unknown depth rule {rule!r}; choose from {', '.join(DEPTH_RULES)}")
    top = min(top, num_layers)
    return min(bottom, num_layers - top), top


def _range(first: int, last: int, kind: str) -> str:
    if last < first:
        return "none"
    return f"{first}:{kind}" if first == last else f"{first}-{last}:{kind}"


def default_specs(num_layers: int, rule: str = "proportional") -> Dict[str, str]:
    """The specs of S1, S2, V1, V2 for ``num_layers`` layers under a depth ``rule``."""
    bottom, top = default_layer_counts(num_layers, rule)
    below = num_layers - top
    return {"S1": _range(1, below, "all"), "S2": _range(1, bottom, "ffn"),
            "V1": _range(below + 1, num_layers, "all"), "V2": _range(below + 1, num_layers, "attn")}

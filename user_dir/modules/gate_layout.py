"""Which parameter groups of an ``xlm_adapter`` encoder the L0 masks gate, how they are named, and
how a gate vector ``z`` masks the frozen weights (θ̃ = θ ⊙ z, Wang et al. 2020 Sec. 3.3).

Groups exist for the self-attention matrices (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``
of fairseq's ``MultiheadAttention``) and the FFN matrices (``fc1``, ``fc2``) of every layer.
Embeddings, layer norms and the LM head are not gated.  Granularity, per sublayer type:

attention (``attention_gates``)
    ``row`` (default): one gate per output row of each matrix, with the row's bias entry:
    ``layer3.attn.q_proj.row[17]``.
    ``head``: one gate per head, masking the head's rows of ``q_proj``, ``k_proj``, ``v_proj``
    (and bias entries) and its input columns of ``out_proj``: ``layer3.attn.head[2]``.
    ``matrix``: one gate per matrix (weight and bias): ``layer3.attn.q_proj``.
FFN (``ffn_gates``)
    ``row`` (default): ``layer3.ffn.fc1.row[17]``, ``layer3.ffn.fc2.row[5]``.
    ``neuron``: one gate per hidden neuron, masking its ``fc1`` row (and bias entry) and its
    ``fc2`` column: ``layer3.ffn.neuron[17]``.
    ``matrix``: ``layer3.ffn.fc1``, ``layer3.ffn.fc2``.

Layers count from 0.  The gate vector is the concatenation of the blocks in layer order,
attention before FFN, matrices in the order above.  A layout is plain data (:meth:`GateLayout.spec`),
saved with the gates so that a checkpoint's gates can be named without building the model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

ATTENTION_GATES = ("row", "head", "matrix")
FFN_GATES = ("row", "neuron", "matrix")
ATTENTION_MATRICES = ("q_proj", "k_proj", "v_proj", "out_proj")
FFN_MATRICES = ("fc1", "fc2")


@dataclass(frozen=True)
class Target:
    """One matrix that a block of gates masks: gate ``g`` covers ``repeat`` consecutive rows
    (``axis="row"``, with the bias entries) or input columns (``axis="column"``) of ``weight``;
    ``axis="matrix"``: the block's single gate masks the whole weight and bias."""

    weight: str
    bias: Optional[str]
    axis: str
    repeat: int
    shape: Tuple[int, int]

    def params_per_gate(self) -> int:
        rows, cols = self.shape
        bias = self.bias is not None
        if self.axis == "row":
            return self.repeat * (cols + bias)
        if self.axis == "column":
            return self.repeat * rows
        return rows * cols + (rows if bias else 0)


@dataclass(frozen=True)
class Block:
    """Consecutive gates of one layer and sublayer: ``name`` + ``.unit[i]`` (or ``name`` alone for a matrix)."""

    name: str
    layer: int
    sublayer: str  # "attn" or "ffn"
    unit: str  # "row", "head", "neuron" or "matrix"
    count: int
    targets: Tuple[Target, ...]

    def gate_names(self) -> List[str]:
        if self.unit == "matrix":
            return [self.name]
        return [f"{self.name}.{self.unit}[{i}]" for i in range(self.count)]


class GateLayout:
    """The gated groups of a model (see the module docstring)."""

    def __init__(self, blocks: Sequence[Block]):
        self.blocks = list(blocks)
        self.offsets: List[int] = []
        total = 0
        for block in self.blocks:
            self.offsets.append(total)
            total += block.count
        self.num_gates = total

    # ------------------------------------------------------------------ naming

    def gate_names(self) -> List[str]:
        return [name for block in self.blocks for name in block.gate_names()]

    def gate_keys(self) -> List[str]:
        """Per gate, its layer and sublayer, ``layer3.attn`` / ``layer3.ffn`` (the unit of Fig. 4a)."""
        return [f"layer{block.layer}.{block.sublayer}" for block in self.blocks for _ in range(block.count)]

    def params_per_gate(self) -> torch.Tensor:
        """Number of frozen parameters each gate masks (for the parameter-weighted L0 norm)."""
        sizes = [sum(t.params_per_gate() for t in block.targets) for block in self.blocks]
        return torch.tensor([s for s, block in zip(sizes, self.blocks) for _ in range(block.count)],
                            dtype=torch.float64)

    def spec(self) -> List[dict]:
        """Plain data (lists, dicts, strings, ints) that :meth:`from_spec` turns back into the layout."""
        return [{"name": b.name, "layer": b.layer, "sublayer": b.sublayer, "unit": b.unit, "count": b.count,
                 "targets": [{"weight": t.weight, "bias": t.bias, "axis": t.axis, "repeat": t.repeat,
                              "shape": list(t.shape)} for t in b.targets]} for b in self.blocks]

    @classmethod
    def from_spec(cls, spec: Sequence[dict]) -> "GateLayout":
        return cls([Block(b["name"], int(b["layer"]), b["sublayer"], b["unit"], int(b["count"]),
                          tuple(Target(t["weight"], t["bias"], t["axis"], int(t["repeat"]), tuple(t["shape"]))
                                for t in b["targets"])) for b in spec])

    # ------------------------------------------------------------------ masking

    def masked_parameters(self, params: Dict[str, torch.Tensor], z: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``{name: θ ⊙ z}`` for every gated weight and bias, from the frozen ``params`` and gates ``z``."""
        if z.numel() != self.num_gates:
            raise ValueError(f"{z.numel()} gate values for a layout of {self.num_gates} gates")
        out: Dict[str, torch.Tensor] = {}
        for block, offset in zip(self.blocks, self.offsets):
            gates = z[offset:offset + block.count]
            for target in block.targets:
                weight = params[target.weight]
                if target.axis == "matrix":
                    out[target.weight] = weight * gates.to(weight.dtype)
                    if target.bias is not None:
                        out[target.bias] = params[target.bias] * gates.to(weight.dtype)
                    continue
                scale = gates.to(weight.dtype).repeat_interleave(target.repeat) if target.repeat > 1 \
                    else gates.to(weight.dtype)
                if target.axis == "row":
                    out[target.weight] = weight * scale.unsqueeze(1)
                    if target.bias is not None:
                        out[target.bias] = params[target.bias] * scale
                else:
                    out[target.weight] = weight * scale.unsqueeze(0)
        return out


def _linear_target(prefix: str, linear: nn.Linear, axis: str, repeat: int) -> Target:
    bias = f"{prefix}.bias" if linear.bias is not None and axis != "column" else None
    return Target(f"{prefix}.weight", bias, axis, repeat, tuple(linear.weight.shape))


def _attention_blocks(layer: int, prefix: str, attention: nn.Module, granularity: str) -> List[Block]:
    name = f"layer{layer}.attn"
    projections = {m: getattr(attention, m) for m in ATTENTION_MATRICES}
    if granularity == "head":
        heads, head_dim = int(attention.num_heads), int(attention.head_dim)
        targets = [_linear_target(f"{prefix}.{m}", projections[m], "row", head_dim) for m in ATTENTION_MATRICES[:3]]
        targets.append(_linear_target(f"{prefix}.out_proj", projections["out_proj"], "column", head_dim))
        return [Block(name, layer, "attn", "head", heads, tuple(targets))]
    blocks = []
    for m in ATTENTION_MATRICES:
        linear = projections[m]
        if granularity == "row":
            target = _linear_target(f"{prefix}.{m}", linear, "row", 1)
            blocks.append(Block(f"{name}.{m}", layer, "attn", "row", linear.out_features, (target,)))
        else:
            target = _linear_target(f"{prefix}.{m}", linear, "matrix", 1)
            blocks.append(Block(f"{name}.{m}", layer, "attn", "matrix", 1, (target,)))
    return blocks


def _ffn_blocks(layer: int, prefix: str, ffn: nn.Module, granularity: str) -> List[Block]:
    name = f"layer{layer}.ffn"
    if granularity == "neuron":
        targets = (_linear_target(f"{prefix}.fc1", ffn.fc1, "row", 1),
                   _linear_target(f"{prefix}.fc2", ffn.fc2, "column", 1))
        return [Block(name, layer, "ffn", "neuron", ffn.fc1.out_features, targets)]
    blocks = []
    for m in FFN_MATRICES:
        linear = getattr(ffn, m)
        if granularity == "row":
            blocks.append(Block(f"{name}.{m}", layer, "ffn", "row", linear.out_features,
                                (_linear_target(f"{prefix}.{m}", linear, "row", 1),)))
        else:
            blocks.append(Block(f"{name}.{m}", layer, "ffn", "matrix", 1,
                                (_linear_target(f"{prefix}.{m}", linear, "matrix", 1),)))
    return blocks


def build_gate_layout(model: nn.Module, attention_gates: str = "row", ffn_gates: str = "row") -> GateLayout:
    """The layout of an ``xlm_adapter`` model (``model.encoder.layers[i].self_attn`` / ``.ffn``).

    Parameter names are relative to ``model``.  Language-specific sublayers (the ``+attn`` and
    ``+ffn`` variants) are refused: the masks analyse what the languages share.
    """
    if attention_gates not in ATTENTION_GATES:
        raise ValueError(f"attention gates {attention_gates!r}: choose from {ATTENTION_GATES}")
    if ffn_gates not in FFN_GATES:
        raise ValueError(f"FFN gates {ffn_gates!r}: choose from {FFN_GATES}")
    layers = getattr(getattr(model, "encoder", None), "layers", None)
    if layers is None:
        raise ValueError("the L0 masks need an xlm_adapter model (model.encoder.layers)")
    blocks: List[Block] = []
    for i, layer in enumerate(layers):
        attention = getattr(layer.self_attn, "attention", None)
        ffn = layer.ffn
        if attention is None or not hasattr(ffn, "fc1"):
            raise ValueError(f"layer {i} has language-specific sublayers: the L0 masks analyse a model whose "
                             "attention and FFN are shared (the joint variant, optionally with adapters)")
        blocks += _attention_blocks(i, f"encoder.layers.{i}.self_attn.attention", attention, attention_gates)
        blocks += _ffn_blocks(i, f"encoder.layers.{i}.ffn", ffn, ffn_gates)
    return GateLayout(blocks)

"""One way to address encoder layers and sublayers in both model families.

Freeze / re-initialise, CKA, phase-aware learning-rate multipliers and interpolation
all name parts of an encoder as *layer k, sublayer s*; this module maps such an
address to the family's modules and parameters, for

* ``xlm_adapter`` (:mod:`.xlm_adapter`): layers ``encoder.layers.<k>``;
* fairseq's ``roberta`` family (``RobertaModel`` and its subclasses: XLM-R, and
  :mod:`.xlint_roberta`): layers ``encoder.sentence_encoder.layers.<k>``.

Addresses.  ``k`` counts the Transformer layers from the embeddings up, ``0 .. L-1``
(negative ``k`` counts from the top, as Python indices: ``-1`` is the last layer).
A sublayer is one of :data:`SUBLAYERS`:

``"attn"``
    the self-attention block: the attention sublayer and its residual-path layer norm
    (``self_attn.*``, ``self_attn_layer_norm.*``), plus in ``xlm_adapter`` the adapter
    after it (``adapter_after_attn.*``); language-specific copies
    (``...per_language.<lang>...``) included;
``"ffn"``
    the feed-forward block: ``fc1``/``fc2`` (roberta) or ``ffn.*`` (xlm_adapter), its
    layer norm ``final_layer_norm.*``, plus ``adapter_after_ffn.*`` in xlm_adapter;
``"all"``
    every parameter of layer k (the two blocks above are a partition of it).

The embeddings (token, position, their layer norm) and the LM / task heads belong to no
layer: :func:`embedding_parameters` names the first.  Parameter names are always the
model's own ``named_parameters()`` names, i.e. its ``state_dict`` keys, so a group can
index a checkpoint directly.

Representations.  :func:`layer_outputs` captures, with forward hooks, the output of each
asked layer as ``B x T x C`` (both families run their layers time-first; the hook
transposes).  For a post-norm model (XLM-R base/large, every ``xlm_adapter``) the output of
layer ``L-1`` is the encoder's output; a pre-norm roberta (XL/XXL) applies one more final
layer norm after it.  ``forward(..., return_all_hiddens=True)`` gives the same tensors as
``inner_states[k + 1]`` (``inner_states[0]``: the embeddings), time-first.
"""
from __future__ import annotations

import contextlib
from typing import Dict, Iterator, List, Literal, Optional, Sequence, Tuple

import torch
import torch.nn as nn

Sublayer = Literal["attn", "ffn", "all"]
SUBLAYERS: Tuple[str, ...] = ("attn", "ffn", "all")
FAMILIES: Tuple[str, ...] = ("xlm_adapter", "roberta")

#: per family: the child modules of one layer that make up each block
_BLOCKS: Dict[str, Dict[str, Tuple[str, ...]]] = {
    "xlm_adapter": {"attn": ("self_attn", "adapter_after_attn", "self_attn_layer_norm"),
                    "ffn": ("ffn", "adapter_after_ffn", "final_layer_norm")},
    "roberta": {"attn": ("self_attn", "self_attn_layer_norm"), "ffn": ("fc1", "fc2", "final_layer_norm")},
}
_LAYER_PREFIX = {"xlm_adapter": "encoder.layers", "roberta": "encoder.sentence_encoder.layers"}
_EMBEDDINGS = {"xlm_adapter": ("encoder.embed_tokens", "encoder.embed_positions", "encoder.layernorm_embedding"),
               "roberta": ("encoder.sentence_encoder.embed_tokens", "encoder.sentence_encoder.embed_positions",
                           "encoder.sentence_encoder.layernorm_embedding")}


def model_family(model: nn.Module) -> str:
    """``"xlm_adapter"`` or ``"roberta"``; any other model is a ``TypeError``."""
    from fairseq.models.roberta import RobertaModel

    from .xlm_adapter import XlmAdapterModel

    if isinstance(model, XlmAdapterModel):
        return "xlm_adapter"
    if isinstance(model, RobertaModel):
        return "roberta"
    raise TypeError(f"{type(model).__name__} is neither an xlm_adapter nor a roberta-family model")


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The Transformer layers of the encoder, bottom (next to the embeddings) first."""
    family = model_family(model)
    return model.encoder.layers if family == "xlm_adapter" else model.encoder.sentence_encoder.layers


def num_layers(model: nn.Module) -> int:
    return len(encoder_layers(model))


def layer_index(model: nn.Module, layer: int) -> int:
    """``layer`` as an index ``0 .. L-1`` (negative counts from the top); out of range is an IndexError."""
    count = num_layers(model)
    if not -count <= int(layer) < count:
        raise IndexError(f"layer {layer} out of range: the encoder has {count} layers (0..{count - 1})")
    return int(layer) % count


def _check_sublayer(sublayer: str) -> None:
    if sublayer not in SUBLAYERS:
        raise ValueError(f"unknown sublayer {sublayer!r}; choose from {', '.join(SUBLAYERS)}")


def sublayer_modules(model: nn.Module, layer: int, sublayer: Sublayer = "all") -> Dict[str, nn.Module]:
    """Full module name -> module of one block of layer ``layer`` (absent optional parts left out)."""
    _check_sublayer(sublayer)
    family = model_family(model)
    k = layer_index(model, layer)
    module = encoder_layers(model)[k]
    blocks = _BLOCKS[family]
    names = blocks["attn"] + blocks["ffn"] if sublayer == "all" else blocks[sublayer]
    return {f"{_LAYER_PREFIX[family]}.{k}.{name}": getattr(module, name) for name in names
            if getattr(module, name, None) is not None}


def parameter_groups(model: nn.Module, layers: Optional[Sequence[int]] = None,
                     sublayer: Sublayer = "all") -> Dict[str, nn.Parameter]:
    """``named_parameters()`` name -> parameter of ``sublayer`` in each of ``layers`` (default: all
    layers), in the model's own parameter order."""
    _check_sublayer(sublayer)
    indices = range(num_layers(model)) if layers is None else [layer_index(model, k) for k in layers]
    prefixes = tuple(name + "." for k in indices for name in sublayer_modules(model, k, sublayer))
    return {name: param for name, param in model.named_parameters() if name.startswith(prefixes)}


def embedding_parameters(model: nn.Module) -> Dict[str, nn.Parameter]:
    """The token and position embeddings and their layer norm (below layer 0)."""
    prefixes = tuple(name + "." for name in _EMBEDDINGS[model_family(model)])
    return {name: param for name, param in model.named_parameters() if name.startswith(prefixes)}


def address_of_parameter(model: nn.Module, name: str) -> Optional[Tuple[int, str]]:
    """``(k, "attn" | "ffn")`` of a parameter name, or None for the embeddings and heads."""
    family = model_family(model)
    prefix = _LAYER_PREFIX[family] + "."
    if not name.startswith(prefix):
        return None
    index, _, rest = name[len(prefix):].partition(".")
    child = rest.split(".", 1)[0]
    for block in ("attn", "ffn"):
        if child in _BLOCKS[family][block]:
            return int(index), block
    raise ValueError(f"{name}: part of layer {index} but of no known block")


@contextlib.contextmanager
def layer_outputs(model: nn.Module, layers: Optional[Sequence[int]] = None,
                  detach: bool = True) -> Iterator[Dict[int, torch.Tensor]]:
    """Capture the output ``B x T x C`` of each of ``layers`` (default: all) during the forward
    passes run inside the block; the dict maps ``k`` (``0 .. L-1``) to the latest output.

    >>> with layer_outputs(model, layers=[0, -1]) as outputs:
    ...     model(src_tokens, features_only=True)
    >>> outputs[0].shape  # B x T x C
    """
    modules: List[nn.Module] = list(encoder_layers(model))
    indices = range(len(modules)) if layers is None else [layer_index(model, k) for k in layers]
    captured: Dict[int, torch.Tensor] = {}
    handles = []

    def hook(k: int):
        def save(_module, _inputs, output):
            tensor = output[0] if isinstance(output, tuple) else output
            tensor = tensor.transpose(0, 1)
            captured[k] = tensor.detach() if detach else tensor
        return save

    try:
        for k in dict.fromkeys(indices):
            handles.append(modules[k].register_forward_hook(hook(k)))
        yield captured
    finally:
        for handle in handles:
            handle.remove()

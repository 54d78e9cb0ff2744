"""Make fairseq checkpoints loadable under torch >= 2.6's ``weights_only=True`` default.

fairseq 0.12 pickles a few non-tensor objects into its checkpoints.  Rather than
switching the safety check off, importing this module allow-lists exactly those
globals with :func:`torch.serialization.add_safe_globals`:

* single-process resume: ``argparse.Namespace`` (the legacy ``args`` entry);
* distributed resume (fairseq gathers optimizer state across ranks, which stores
  omegaconf containers and placeholders): omegaconf's ``DictConfig``/``ListConfig``,
  their metadata and node types, ``typing.Any``, ``collections.defaultdict``,
  builtins ``dict``/``list``/``int`` and ``fairseq.distributed.utils._TensorPlaceholder``.

It also silences warnings that fairseq emits on every run and that users cannot act on.
"""
from __future__ import annotations

import argparse
import collections
import typing
import warnings
from typing import List

import torch

# Known noise from fairseq 0.12 on recent torch/numpy; each pattern is a message prefix.
_FAIRSEQ_NOISE = (
    r"torch\.cuda\.amp\.",  # deprecated autocast/GradScaler spelling used by fairseq
    r"`torch\.cuda\.amp\.",
    r"pkg_resources is deprecated",
    r"The PyTorch API of nested tensors",
    r"Please use the new API settings to control TF32",
    r"An output with one or more elements was resized",
    r"hydra\.experimental\.(initialize|compose)\(\) is no longer experimental",
    r"\nThe version_base parameter is not specified",
    r"In 'config': Usage of deprecated keyword in package header",
    r"\n'config' is validated against ConfigStore schema",
    r"\nThe strict flag in the compose API is deprecated",
    r"'pin_memory' argument is set as true but no accelerator is found",
)


def fairseq_checkpoint_globals() -> List[object]:
    """The non-tensor globals fairseq stores in checkpoints (see the module docstring)."""
    from omegaconf import DictConfig, ListConfig
    from omegaconf.base import ContainerMetadata, Metadata
    from omegaconf.nodes import AnyNode, BooleanNode, EnumNode, FloatNode, IntegerNode, StringNode

    allowed: List[object] = [
        argparse.Namespace,
        DictConfig,
        ListConfig,
        ContainerMetadata,
        Metadata,
        AnyNode,
        BooleanNode,
        EnumNode,
        FloatNode,
        IntegerNode,
        StringNode,
        typing.Any,
        collections.defaultdict,
        dict,
        list,
        int,
    ]
    try:
        from fairseq.distributed.utils import _TensorPlaceholder

        allowed.append(_TensorPlaceholder)
    except ImportError:  # pragma: no cover - older fairseq without the placeholder
        pass
    return allowed


def install() -> None:
    """Allow-list fairseq's checkpoint globals and filter fairseq's known warnings."""
    if hasattr(torch.serialization, "add_safe_globals"):
        torch.serialization.add_safe_globals(fairseq_checkpoint_globals())
    for pattern in _FAIRSEQ_NOISE:
        warnings.filterwarnings("ignore", message=pattern)


install()

"""Each variant's model built in-process from its run's arguments, its parameters broken down by group."""
from __future__ import annotations

import argparse
from typing import Dict, List

from .commands import cpu_only, fairseq_argv
from .data import BenchData

#: (substring of a parameter name, group), first match wins
PARAMETER_GROUPS = (
    ("embed_tokens", "token embeddings (tied with LM head)"),
    ("embed_positions", "position embeddings"),
    ("layernorm_embedding", "embedding layer norm"),
    ("lm_head", "LM head (dense, LN, bias)"),
    ("classification_heads", "classification heads / pooler"),
    ("pooler", "classification heads / pooler"),
    ("adapter", "adapters"),
    ("self_attn_layer_norm", "layer norms"),
    ("final_layer_norm", "layer norms"),
    ("self_attn", "self-attention"),
    ("attention", "self-attention"),
    ("fc1", "feed-forward"),
    ("fc2", "feed-forward"),
)


def group_of(name: str) -> str:
    return next((group for part, group in PARAMETER_GROUPS if part in name), "other")


def quiet_fairseq() -> None:
    """Only warnings from fairseq, hydra and the plugin while models are built in-process."""
    import logging
    import warnings

    warnings.simplefilter("ignore")  # hydra's deprecation chatter
    for name in ("fairseq", "hydra", "xlint", "user_dir"):
        logging.getLogger(name).setLevel(logging.WARNING)


def build_model(argv: List[str]):
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))
    return tasks.setup_task(cfg.task).build_model(cfg.model)


def parameter_report(variant: str, data: BenchData, args: argparse.Namespace) -> Dict[str, object]:
    """Total, per-group and language-specific parameter counts; LM-head tying; vocabulary and position rows."""
    quiet_fairseq()
    model = build_model(cpu_only(fairseq_argv(variant, data, args)))  # on the CPU whatever the device
    groups: Dict[str, int] = {}
    tensors = 0
    for name, param in model.named_parameters():
        groups[group_of(name)] = groups.get(group_of(name), 0) + param.numel()
        tensors += 1
    encoder = model.encoder
    layers = encoder.sentence_encoder if hasattr(encoder, "sentence_encoder") else encoder
    per_language = 0
    if hasattr(model, "parameter_counts"):
        per_language = sum(v for k, v in model.parameter_counts().items() if k != "shared")
    return {
        "total": sum(p.numel() for p in model.parameters()),
        "tensors": tensors,
        "groups": groups,
        "language_specific": per_language,
        "lm_head_tied": encoder.lm_head.weight is layers.embed_tokens.weight,
        "vocab": layers.embed_tokens.num_embeddings,
        "positions": layers.embed_positions.num_embeddings,
    }

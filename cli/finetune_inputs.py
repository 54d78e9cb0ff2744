"""The inputs of ``xlint finetune``: the converted data's meta and the pretrained checkpoint.

:func:`read_pretrained` reads the architecture, model options and languages from a
checkpoint's saved cfg without building the model; :func:`check_compatibility`
refuses data encoded with another dictionary than the checkpoint's.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import click

from .fairseq_runner import OptionValue


def read_ft_meta(data: Path) -> Dict[str, Any]:
    from ..user_dir.data.finetune_data import FinetuneDataError, read_meta

    try:
        return read_meta(str(data))
    except FinetuneDataError as error:
        raise click.BadParameter(str(error), param_hint="DATA") from None


@dataclass
class Pretrained:
    path: Path
    arch: str
    model_options: Dict[str, OptionValue]
    model_languages: List[str]
    corpus: Optional[str]
    embedding_rows: int
    language_specific: str


def read_pretrained(path: Path) -> Pretrained:
    """Architecture, model options and languages from a pretrained checkpoint's saved cfg."""
    import dataclasses

    import torch

    from ..user_dir import checkpoint_compat  # noqa: F401  (allow-lists fairseq's globals)
    from ..user_dir.models.xlm_adapter import XlmAdapterConfig

    if not path.is_file():
        raise click.BadParameter(f"{path} is not a file", param_hint="--pretrained")
    try:
        state = torch.load(str(path), map_location="cpu", mmap=True, weights_only=False)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise click.BadParameter(f"{path}: cannot load the checkpoint ({error})", param_hint="--pretrained") from None
    cfg = state.get("cfg") or {}
    model_cfg = dict(cfg.get("model") or {})
    from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY

    arch = model_cfg.get("_name")
    if arch not in ARCH_MODEL_REGISTRY or ARCH_MODEL_REGISTRY[arch] is not MODEL_REGISTRY["xlm_adapter"]:
        raise click.BadParameter(f"{path}: its model {arch!r} is not an xlm_adapter architecture",
                                 param_hint="--pretrained")
    options: Dict[str, OptionValue] = {}
    for item in dataclasses.fields(XlmAdapterConfig):
        value = model_cfg.get(item.name)
        if item.name.startswith("_") or value is None or value == "":
            continue
        options[item.name] = str(value) if not isinstance(value, (int, float, bool)) else value
    languages = [lang for lang in str(model_cfg.get("model_languages", "")).split(",") if lang]
    if not languages:
        raise click.BadParameter(f"{path}: its cfg names no model languages", param_hint="--pretrained")
    weights = state["model"].get("encoder.embed_tokens.weight")
    task_cfg = cfg.get("task") or {}
    return Pretrained(path=path.resolve(), arch=arch, model_options=options, model_languages=languages,
                      corpus=task_cfg.get("data"), embedding_rows=int(weights.shape[0]) if weights is not None else -1,
                      language_specific=str(model_cfg.get("language_specific", "joint")))


def check_compatibility(data: Path, meta: Dict[str, Any], pretrained: Pretrained, corpus: Optional[Path]) -> None:
    """The fine-tuning data must be encoded with the pretraining corpus' dictionary."""
    from ..preprocess.textio import sha256_file

    rows = sum(1 for line in (data / "dict.txt").read_text(encoding="utf-8").splitlines() if line.strip()) + 5
    if pretrained.embedding_rows not in (-1, rows):
        raise click.BadParameter(
            f"{data}/dict.txt gives {rows} embeddings (with <s> <pad> </s> <unk> <mask>) but "
            f"{pretrained.path} has {pretrained.embedding_rows}: convert the data with the checkpoint's corpus",
            param_hint="DATA")
    if corpus is not None:
        dictionary = corpus / "dict.txt"
        if not dictionary.is_file():
            raise click.BadParameter(f"{dictionary} not found", param_hint="--corpus")
        if sha256_file(dictionary) != meta.get("dictionary_sha256"):
            raise click.BadParameter(f"{data} was converted with another dictionary than {dictionary} "
                                     f"(converted from {meta.get('corpus')})", param_hint="--corpus")

"""The inputs of ``xlint finetune``: the converted data's meta and the pretrained checkpoint.

:func:`read_pretrained` reads the architecture, model options and languages from a
checkpoint's saved cfg without building the model, for both model families:

* ``xlm_adapter`` (``xlint pretrain``): the architecture and its options as saved;
* ``roberta`` (an official XLM-R release, a folder with ``model.pt``, ``dict.txt`` and
  ``sentencepiece.bpe.model``, or its ``model.pt``; any fairseq ``roberta``-family
  checkpoint laid out so): fine-tuned as ``--arch xlint_roberta`` with every model option
  of the checkpoint's cfg (or the old ``args`` of the 2019 releases).  Its state must load
  strictly: the model is built on the ``meta`` device (no memory), the checkpoint's keys
  go through fairseq's own upgrade, and a missing or unexpected key is a one-line error.

:func:`check_compatibility` refuses data encoded with another dictionary (or, for a
release, another sentencepiece model) than the checkpoint's.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import click

from .fairseq_runner import OptionValue

FAMILIES = ("xlm_adapter", "roberta")
#: roberta options that are not the model's shape or regularisation (never copied)
_ROBERTA_SKIP = {"load_checkpoint_heads", "min_params_to_wrap"}


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
    #: ``xlm_adapter`` or ``roberta`` (see the module docstring)
    family: str = "xlm_adapter"
    #: a roberta release's folder (dict.txt, sentencepiece.bpe.model); None for xlm_adapter
    release: Optional[Path] = None
    #: the architecture named in the checkpoint (``roberta_large``, ...)
    saved_arch: Optional[str] = None


def _bad(message: str) -> click.BadParameter:
    return click.BadParameter(message, param_hint="--pretrained")


def read_pretrained(path: Path) -> Pretrained:
    """Architecture, model options and languages from a pretrained checkpoint's saved cfg
    (``path``: a checkpoint file, or an XLM-R release folder)."""
    from ..preprocess.encoders import EncoderError, find_release, load_checkpoint_state

    if path.is_dir():
        try:
            release = find_release(path, "--pretrained")
        except EncoderError as error:
            raise _bad(str(error)) from None
        path = release.model
    if not path.is_file():
        raise _bad(f"{path} is not a file")
    try:
        state = load_checkpoint_state(path)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise _bad(f"{path}: cannot load the checkpoint ({error})") from None
    cfg = state.get("cfg")
    if cfg is None and state.get("args") is not None:  # the 2019 releases: an argparse Namespace
        model_cfg = dict(vars(state["args"]))
        model_cfg["_name"] = model_cfg.get("arch")
        task_cfg: Dict[str, Any] = {}
    else:
        cfg = cfg or {}
        model_cfg = _as_dict(cfg.get("model"))
        task_cfg = _as_dict(cfg.get("task"))
    from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY
    from fairseq.models.roberta import RobertaModel

    arch = model_cfg.get("_name")
    model_class = ARCH_MODEL_REGISTRY.get(arch) or MODEL_REGISTRY.get(arch)
    if model_class is not None and model_class is MODEL_REGISTRY["xlm_adapter"]:
        return _xlm_adapter(path, state, model_cfg, task_cfg, arch)
    if model_class is not None and issubclass(model_class, RobertaModel):
        return _roberta(path, state, model_cfg, arch)
    raise _bad(f"{path}: its model {arch!r} is neither an xlm_adapter nor a roberta-family (XLM-R) architecture")


def _as_dict(node: Any) -> Dict[str, Any]:
    if node is None:
        return {}
    if hasattr(node, "items"):
        return dict(node.items())
    return dict(vars(node))


def _xlm_adapter(path: Path, state, model_cfg, task_cfg, arch: str) -> Pretrained:
    import dataclasses

    from ..user_dir.models.xlm_adapter import XlmAdapterConfig

    options: Dict[str, OptionValue] = {}
    for item in dataclasses.fields(XlmAdapterConfig):
        value = model_cfg.get(item.name)
        if item.name.startswith("_") or value is None or value == "":
            continue
        options[item.name] = str(value) if not isinstance(value, (int, float, bool)) else value
    languages = [lang for lang in str(model_cfg.get("model_languages", "")).split(",") if lang]
    if not languages:
        raise _bad(f"{path}: its cfg names no model languages")
    weights = state["model"].get("encoder.embed_tokens.weight")
    return Pretrained(path=path.resolve(), arch=arch, model_options=options, model_languages=languages,
                      corpus=task_cfg.get("data"), embedding_rows=int(weights.shape[0]) if weights is not None else -1,
                      language_specific=str(model_cfg.get("language_specific", "joint")), family="xlm_adapter",
                      saved_arch=arch)


def roberta_options(model_cfg: Dict[str, Any]) -> Dict[str, OptionValue]:
    """The ``xlint_roberta`` options that rebuild a roberta-family model from its saved cfg:
    every option of fairseq's ``RobertaModel.add_args`` that is set and not its default."""
    import argparse

    from ..user_dir.models.xlint_roberta import XlintRobertaModel

    parser = argparse.ArgumentParser(add_help=False)
    XlintRobertaModel.add_args(parser)
    options: Dict[str, OptionValue] = {}
    for action in parser._actions:
        name = action.dest
        if name in _ROBERTA_SKIP or name not in model_cfg:
            continue
        value = model_cfg[name]
        if value is None or value == "" or (value == action.default and not isinstance(action.default, type(None))):
            continue
        if isinstance(action, argparse._StoreTrueAction):
            if bool(value):
                options[name] = True
            continue
        options[name] = value if isinstance(value, (int, float, bool, str)) else str(value)
    if "max_positions" not in options and model_cfg.get("tokens_per_sample"):
        options["max_positions"] = int(model_cfg["tokens_per_sample"])
    return options


class _DictionaryStub:
    """What RobertaEncoder reads of a dictionary: its length and padding index."""

    def __init__(self, rows: int):
        self.rows = rows

    def __len__(self) -> int:
        return self.rows

    def pad(self) -> int:
        return 1


def roberta_state_problem(options: Dict[str, OptionValue], state_model: Dict[str, Any], rows: int) -> Optional[str]:
    """Why ``state_model`` would not load strictly into ``--arch xlint_roberta`` with ``options``
    (checked on the meta device, after fairseq's upgrade of old key names), or None."""
    import argparse

    import torch

    from ..user_dir.models.xlint_roberta import XlintRobertaModel, state_mismatch, xlint_roberta

    args = argparse.Namespace(**options)
    xlint_roberta(args)

    class Task:
        source_dictionary = _DictionaryStub(rows)

    from unittest import mock

    from fairseq.models.roberta import model as roberta_module

    # on the meta device nothing is allocated; fairseq's BERT init copies through the CPU, so it is
    # skipped (initial values are irrelevant to which keys and shapes the model has)
    with torch.device("meta"), mock.patch.object(roberta_module, "init_bert_params", lambda module: None):
        model = XlintRobertaModel.build_model(args, Task())
    upgraded = dict(state_model)
    try:
        model.upgrade_state_dict_named(upgraded, "")
    except ValueError as error:
        return str(error)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    saved = {k: v.shape for k, v in upgraded.items() if hasattr(v, "shape")}
    version_keys = [k for k in expected if k.endswith(".version")]  # fairseq adds them to old states
    for key in version_keys:
        saved.setdefault(key, expected[key])
    return state_mismatch(expected, saved)


def _roberta(path: Path, state, model_cfg, arch: str) -> Pretrained:
    from ..preprocess.encoders import EncoderError, check_release, embedding_rows, find_release

    try:
        release = find_release(path, "--pretrained")
        check_release(release, state, "--pretrained")
    except EncoderError as error:
        raise _bad(str(error)) from None
    options = roberta_options(model_cfg)
    rows = embedding_rows(state)
    problem = roberta_state_problem(options, state["model"], rows)
    if problem:
        raise _bad(f"{path}: does not load strictly into xlint_roberta: {problem}")
    return Pretrained(path=path.resolve(), arch="xlint_roberta", model_options=options, model_languages=[],
                      corpus=None, embedding_rows=rows, language_specific="none", family="roberta",
                      release=release.directory, saved_arch=arch)


def check_compatibility(data: Path, meta: Dict[str, Any], pretrained: Pretrained, corpus: Optional[Path]) -> None:
    """The fine-tuning data must be encoded with the pretraining corpus' dictionary
    (a release's: its dictionary and sentencepiece model)."""
    from ..preprocess.textio import sha256_file

    rows = sum(1 for line in (data / "dict.txt").read_text(encoding="utf-8").splitlines() if line.strip()) + 5
    if pretrained.embedding_rows not in (-1, rows):
        source = "the checkpoint's release (--encoder)" if pretrained.family == "roberta" else "the checkpoint's corpus"
        raise click.BadParameter(
            f"{data}/dict.txt gives {rows} embeddings (with <s> <pad> </s> <unk> <mask>) but "
            f"{pretrained.path} has {pretrained.embedding_rows}: convert the data with {source}",
            param_hint="DATA")
    encoded_by = (meta.get("encoder") or {}).get("family", "xlm_adapter")
    if pretrained.family == "roberta":
        if corpus is not None:
            raise click.BadParameter("a roberta-family checkpoint has no xlint pretraining corpus; its release "
                                     "folder holds the dictionary", param_hint="--corpus")
        if encoded_by != "roberta":
            raise click.BadParameter(f"{data} was converted with an xlint corpus ({meta.get('corpus')}); convert "
                                     f"it with --encoder {pretrained.release}", param_hint="DATA")
        from ..preprocess.encoders import find_release

        release = find_release(pretrained.release, "--pretrained")
        if sha256_file(release.dictionary) != meta.get("dictionary_sha256"):
            raise click.BadParameter(f"{data} was converted with another dictionary than {release.dictionary} "
                                     f"(converted with {meta.get('corpus')})", param_hint="DATA")
        if sha256_file(release.sentencepiece) != meta["encoder"].get("sentencepiece_sha256"):
            raise click.BadParameter(f"{data} was converted with another sentencepiece model than "
                                     f"{release.sentencepiece}", param_hint="DATA")
        return
    if encoded_by == "roberta":
        raise click.BadParameter(f"{data} was encoded for an XLM-R release ({meta.get('corpus')}), not for "
                                 f"{pretrained.path}'s corpus", param_hint="DATA")
    if corpus is not None:
        dictionary = corpus / "dict.txt"
        if not dictionary.is_file():
            raise click.BadParameter(f"{dictionary} not found", param_hint="--corpus")
        if sha256_file(dictionary) != meta.get("dictionary_sha256"):
            raise click.BadParameter(f"{data} was converted with another dictionary than {dictionary} "
                                     f"(converted from {meta.get('corpus')})", param_hint="--corpus")

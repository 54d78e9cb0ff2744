"""The common base of xlint's fine-tuning tasks (not registered itself).

A fine-tuning task reads a folder written by ``xlint data convert`` (see
:mod:`..data.finetune_data`) and adds a task head to a pretrained ``xlm_adapter`` model, or
to an XLM-R / RoBERTa encoder (``xlint_roberta``, :mod:`..models.xlint_roberta`: no
language-specific modules, so no routing and nothing to freeze; its head is drawn from a
generator seeded with ``stable_seed("head", HEAD_NAME, --seed)``):

* the model's architecture and ``--model-languages`` come from the pretrained
  checkpoint (``xlint finetune`` copies them from its saved cfg); every example is
  routed through the language-specific modules of *its own* language, so at
  zero-shot test time a target-language sentence uses the target's modules;
  ``--route-languages xx=yy`` sends a language the model has no modules for
  through yy's (a ``joint`` model needs no routing);
* ``--freeze-language-specific`` keeps every ``...per_language.<lang>...``
  parameter at its pretrained value (default: fine-tune everything, as Wang et
  al. 2020 do);
* head parameters are tagged ``param_group = "head"`` so that the ``xlint_adam``
  optimizer can give them their own learning rate (``--head-lr``);
* fine-tuning slow and fast (Guo et al. 2023, :mod:`..optim.slow_fast`): every
  ``--slow-fast-*`` option of :class:`~..optim.slow_fast.SlowFastConfig`; the default
  ``--slow-fast-preset df`` is plain fine-tuning (no tag, no multiplier, nothing logged).
  The sets are tagged at the end of ``build_model`` (after the head and the freezing), the
  multipliers set before each step, the loss fed after each update.  Policy IV ``auto``'s CKA
  probe compares the model with a frozen copy of the pretrained weights
  (``--slow-fast-reference CKPT``, normally the ``--finetune-from-model`` file; without it, the
  model as it is at update 0 of a fresh run), loaded only when the first probe is due, on the
  first batch of that update; the probe's outcome travels in the optimizer state (resumes);
* Guo et al.'s analyses: ``--freeze-weights SPEC`` keeps a set of weights (the slow-fast set
  spec, e.g. ``1-4:attn``) at its pretrained values; ``--reinit-weights SPEC`` re-initialises
  one (BERT's init, seeded) before the first update of a fresh run, never on resume.

Splits: ``train`` = the ``train`` files of ``--train-languages`` (plus, with
``--few-shot M``, M examples taken out of the dev file of every
``--few-shot-languages`` language); ``valid`` = the ``dev`` files of
``--valid-languages`` (minus those few-shot examples); ``test`` = the ``test``
files of ``--test-languages``.

Validation metrics are computed on the whole validation set and logged per
language as ``<metric>_<lang>`` (e.g. ``f1_tr``), averaged over all validation
languages as ``<metric>_avg`` and over the languages that are not training
languages as ``<metric>_tgt_avg``; any of them can be fairseq's
``--best-checkpoint-metric`` (with ``--maximize-best-checkpoint-metric``).
Criteria (:mod:`..criterions`) put their predictions into the logging output, so
their outputs are gathered (never summed) across data-parallel workers: the CLI
raises ``--all-gather-list-size`` for that.
"""
import copy
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from fairseq import utils
from fairseq.data import Dictionary
from fairseq.logging import metrics
from fairseq.tasks import FairseqTask
from omegaconf import II, MISSING

from ..data.finetune_data import (
    DICT_FILE,
    FinetuneDataError,
    FinetuneDataset,
    PREDICTIONS_KEY,
    PredictionsMeter,
    available_languages,
    few_shot_indices,
    parse_languages,
    parse_mapping,
    read_meta,
    read_records,
    subsample_indices,
)
from ..analysis.seeding import stable_seed
from ..models.task_heads import HEAD_PARAM_GROUP
from ..optim.slow_fast import SlowFastConfig, SlowFastTaskMixin, layer_cka, top_layers_cka
from .training_curves import CurvesConfig, TrainingCurves, curve_point

logger = logging.getLogger(__name__)

#: reserved names of the averaged metrics (``f1_avg``, ``f1_tgt_avg``)
AVERAGE = "avg"
TARGET_AVERAGE = "tgt_avg"


@dataclass
class FinetuneConfig(CurvesConfig, SlowFastConfig):
    data: str = field(default=MISSING, metadata={"help": "folder written by `xlint data convert`"})
    train_languages: str = field(
        default="", metadata={"help": "comma-separated languages whose train split is trained on "
                                      "(default: every language with a train split)"})
    valid_languages: str = field(
        default="", metadata={"help": "comma-separated languages whose dev split is validated on, each "
                                      "scored separately (default: the training languages)"})
    test_languages: str = field(
        default="", metadata={"help": "comma-separated languages of the test split "
                                      "(default: every language with a test split)"})
    few_shot: int = field(
        default=0, metadata={"help": "few-shot setting: move this many examples of each "
                                     "--few-shot-languages dev set into training (0: none)"})
    few_shot_languages: str = field(
        default="", metadata={"help": "languages that give few-shot examples (default: the validation "
                                      "languages that are not training languages)"})
    few_shot_seed: int = field(
        default=1, metadata={"help": "seed of the choice of few-shot examples (independent of --seed, "
                                     "so that all training seeds see the same shots)"})
    max_length: int = field(
        default=128, metadata={"help": "maximum input length in subwords, <s> and </s> included "
                                       "(capped at the model's --max-positions)"})
    route_languages: str = field(
        default="", metadata={"help": "comma-separated LANG=MODEL_LANG items: route a language the model "
                                      "has no language-specific modules for through another's"})
    freeze_language_specific: bool = field(
        default=False, metadata={"help": "keep the language-specific parameters at their pretrained "
                                         "values (default: fine-tune everything)"})
    max_train_examples: int = field(
        default=0, metadata={"help": "use at most this many training examples per training language, "
                                     "a fixed random subset (0: all)"})
    freeze_weights: str = field(
        default="", metadata={"help": "keep these weights at their pretrained values: a set spec as "
                                      "--slow-fast-s1's (e.g. 1-4:all, 1-4:attn, 1-4:ffn, embeddings), the "
                                      "layers' language-specific modules included (default: none)"})
    lr_scale_weights: str = field(
        default="", metadata={"help": "SPEC=FACTOR: multiply the learning rate of a set of weights by FACTOR "
                                      "(a set spec as --freeze-weights'; Guo et al. 2023 Table 1: 11-12:all=10, "
                                      "11-12:attn=10, 11-12:ffn=10; composes with --head-lr and the slow-fast "
                                      "multipliers; needs --optimizer xlint_adam; default: none)"})
    reinit_weights: str = field(
        default="", metadata={"help": "re-initialise these pretrained weights before the first update of a "
                                      "fresh run (a set spec, e.g. 1-4:attn; BERT's init, seeded by --seed and "
                                      "the name; language-specific modules excluded; default: none)"})
    slow_fast_reference: str = field(
        default="", metadata={"help": "pretrained checkpoint whose weights the Policy IV CKA probes compare "
                                      "with (--slow-fast-policy-iv auto; normally the --finetune-from-model "
                                      "file; default: the model at update 0 of a fresh run)"})
    seed: int = II("common.seed")


class FinetuneTask(SlowFastTaskMixin, FairseqTask):
    """Shared data, routing, head and metric logic; subclasses define examples and scores.

    Fine-tuning slow and fast comes from :class:`SlowFastTaskMixin` (its ``optimizer_step`` and
    ``reduce_metrics``); the sets are tagged here, once the head exists and frozen parameters are
    frozen, so :meth:`build_model` skips the mixin's own.
    """

    #: value of ``task`` in FT/meta.json that the subclass reads
    TASK = ""
    #: head kind for ``model.register_head`` and the head's name
    HEAD_KIND = ""
    HEAD_NAME = ""

    def __init__(self, cfg: FinetuneConfig, dictionary: Dictionary, meta: Dict[str, Any], data_dir: str):
        super().__init__(cfg)
        self.dictionary = dictionary
        self.meta = meta
        self.data_dir = data_dir
        self.train_languages = parse_languages(cfg.train_languages) or available_languages(meta, "train")
        self.valid_languages = parse_languages(cfg.valid_languages) or list(self.train_languages)
        self.test_languages = parse_languages(cfg.test_languages) or available_languages(meta, "test")
        if cfg.few_shot > 0:
            self.few_shot_languages = parse_languages(cfg.few_shot_languages) or [
                lang for lang in self.valid_languages if lang not in self.train_languages]
        else:
            self.few_shot_languages = []
        self.route_map = parse_mapping(cfg.route_languages, "--route-languages")
        for lang in set(self.train_languages + self.valid_languages + self.test_languages + self.few_shot_languages):
            if lang in (AVERAGE, TARGET_AVERAGE):
                raise FinetuneDataError(f"language code {lang!r} is reserved for averaged metrics")
        self.model_languages: Optional[List[str]] = None
        self.has_language_modules = True
        self.effective_max_length = cfg.max_length
        self._model_cfg = None
        self._cka_reference: Optional[torch.nn.Module] = None
        self._last_probe_update = -1
        self._reinit_done = False
        self._lr_scale_checked = False
        self.curves = TrainingCurves(cfg)
        self._curve_dataset: Optional[FinetuneDataset] = None

    @classmethod
    def setup_task(cls, cfg: FinetuneConfig, **kwargs):
        data_dir = utils.split_paths(cfg.data)[0]
        meta = read_meta(data_dir)
        if meta["task"] != cls.TASK:
            raise FinetuneDataError(f"{data_dir} holds {meta['task']} data; the task "
                                    f"{cls.__name__} reads {cls.TASK} data")
        dictionary = Dictionary.load(os.path.join(data_dir, DICT_FILE))
        dictionary.add_symbol("<mask>")  # as the pretraining (masked LM) task did: same embedding size
        return cls(cfg, dictionary, meta, data_dir)

    @property
    def source_dictionary(self) -> Dictionary:
        return self.dictionary

    @property
    def target_dictionary(self) -> Dictionary:
        return self.dictionary

    def max_positions(self) -> int:
        return self.effective_max_length

    # ------------------------------------------------------------------ model

    def num_outputs(self) -> int:
        raise NotImplementedError

    def build_model(self, cfg, from_checkpoint: bool = False):
        model = FairseqTask.build_model(self, cfg, from_checkpoint)  # the sets are tagged below
        if not hasattr(model, "register_head"):
            raise ValueError("xlint's fine-tuning tasks need an xlm_adapter (--arch xlm_adapter*) or "
                             "xlint_roberta (XLM-R, --arch xlint_roberta) model")
        if getattr(model, "FAMILY", None) == "roberta":
            # a fresh head drawn from its own seeded generator (see models.xlint_roberta)
            model.register_head(self.HEAD_NAME, self.HEAD_KIND, self.num_outputs(),
                                seed=stable_seed("head", self.HEAD_NAME, self.cfg.seed))
        else:
            model.register_head(self.HEAD_NAME, self.HEAD_KIND, self.num_outputs())
        for param in model.heads[self.HEAD_NAME].parameters():
            param.param_group = HEAD_PARAM_GROUP
        names = [name for name, _ in model.named_parameters()]
        self.has_language_modules = any(model.language_of_parameter(name) for name in names)
        if getattr(model, "FAMILY", None) == "roberta" and (self.cfg.freeze_language_specific or self.route_map):
            option = "--freeze-language-specific" if self.cfg.freeze_language_specific else "--route-languages"
            raise ValueError(f"{option}: a roberta-family model (XLM-R) has no language-specific modules")
        if self.cfg.freeze_language_specific:
            frozen = 0
            for name, param in model.named_parameters():
                if model.language_of_parameter(name) is not None:
                    param.requires_grad_(False)
                    frozen += param.numel()
            logger.info("froze %d language-specific parameters", frozen)
        if self.cfg.freeze_weights:
            self.freeze_weights(model, self.cfg.freeze_weights)
        self.model_languages = list(model.languages)
        self.effective_max_length = min(self.cfg.max_length, model.max_positions())
        self._model_cfg = cfg
        if self.cfg.lr_scale_weights:
            self.scale_learning_rates(model, self.cfg.lr_scale_weights)
        self.slow_fast.tag_parameters(model)
        return model

    @staticmethod
    def scale_learning_rates(model, option: str) -> List[str]:
        """Tag the parameters of ``SPEC`` in ``SPEC=FACTOR`` with the static factor ``lrx<FACTOR>``
        (:mod:`..optim.adam_with_head_lr`), so that ``xlint_adam`` gives them ``FACTOR`` × the rate;
        return their names."""
        from ..analysis.slow_fast_sets import parse_set_spec
        from ..optim.adam_with_head_lr import join_tag, lr_scale_token, parameter_tag, tag_tokens
        from ..optim.slow_fast import locate_parameters

        spec, sep, factor_text = option.rpartition("=")
        try:
            token = lr_scale_token(float(factor_text)) if sep and spec else None
        except ValueError:
            token = None
        if token is None:
            raise ValueError(f"--lr-scale-weights {option}: expected SPEC=FACTOR with a positive FACTOR, "
                             "e.g. 11-12:attn=10")
        num_layers, locations = locate_parameters(model)
        try:
            weights = parse_set_spec(spec, num_layers)
        except ValueError as error:
            raise ValueError(f"--lr-scale-weights {option}: {error}") from None
        scaled = [name for name, _ in model.named_parameters()
                  if weights.contains(locations[name], include_language_specific=True)]
        if not scaled:
            raise ValueError(f"--lr-scale-weights {option}: no parameter of the model is in this set")
        params = dict(model.named_parameters())
        for name in scaled:
            params[name].param_group = join_tag(tag_tokens(parameter_tag(params[name])) + [token])
        logger.info("--lr-scale-weights %s: %d tensors at x%s the rate", option, len(scaled), factor_text)
        return scaled

    @staticmethod
    def freeze_weights(model, spec: str) -> List[str]:
        """Freeze (``requires_grad = False``) the parameters of the set ``spec`` (Guo et al. 2023's
        Table 1 analyses: ``1-4:all``, ``1-4:attn``, ``1-4:ffn``); return their names."""
        from ..analysis.slow_fast_sets import parse_set_spec
        from ..optim.slow_fast import locate_parameters

        num_layers, locations = locate_parameters(model)
        try:
            weights = parse_set_spec(spec, num_layers)
        except ValueError as error:
            raise ValueError(f"--freeze-weights {spec}: {error}") from None
        frozen = [name for name, param in model.named_parameters()
                  if weights.contains(locations[name], include_language_specific=True)]
        if not frozen:
            raise ValueError(f"--freeze-weights {spec}: no parameter of the model is in this set")
        params = dict(model.named_parameters())
        for name in frozen:
            params[name].requires_grad_(False)
        logger.info("--freeze-weights %s: froze %d parameters in %d tensors", spec,
                    sum(params[name].numel() for name in frozen), len(frozen))
        return frozen

    @staticmethod
    @torch.no_grad()
    def reinit_weights(model, spec: str, seed: int) -> List[str]:
        """Re-initialise the parameters of the set ``spec`` (Guo et al. 2023's Table 6:
        ``1-4:all``, ``1-4:attn``, ``1-4:ffn``) as BERT's init (fairseq's ``init_bert_params``, the
        init of both model families): matrices ``N(0, 0.02)`` (an embedding's padding row 0),
        biases 0, layer-norm weights 1; each from a generator seeded with ``(seed, name)``.
        Language-specific modules keep their weights.  Returns the names."""
        from ..analysis.slow_fast_sets import parse_set_spec
        from ..optim.slow_fast import locate_parameters

        num_layers, locations = locate_parameters(model)
        try:
            weights = parse_set_spec(spec, num_layers)
        except ValueError as error:
            raise ValueError(f"--reinit-weights {spec}: {error}") from None
        names = [name for name, _ in model.named_parameters() if weights.contains(locations[name])]
        if not names:
            raise ValueError(f"--reinit-weights {spec}: no parameter of the model is in this set")
        params = dict(model.named_parameters())
        padding = {f"{name}.weight": module.padding_idx for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Embedding) and module.padding_idx is not None}
        for name in names:
            param = params[name]
            if param.dim() >= 2:
                generator = torch.Generator().manual_seed(stable_seed("reinit", name, seed) & ((1 << 63) - 1))
                value = torch.randn(param.shape, generator=generator, dtype=torch.float32) * 0.02
                if name in padding:
                    value[padding[name]] = 0
                param.copy_(value.to(param.dtype))
            elif name.endswith("bias"):
                param.zero_()
            else:  # a layer norm's weight
                param.fill_(1.0)
        logger.info("--reinit-weights %s: re-initialised %d tensors (%d parameters)", spec, len(names),
                    sum(params[name].numel() for name in names))
        return names

    # ------------------------------------------------------------------ Policy IV probes

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        if self.slow_fast.enabled and "IV" in self.slow_fast.preset:
            self.slow_fast.attach(optimizer)  # a resumed run's Policy IV state decides the probes
        if (not ignore_grad and update_num != self._last_probe_update
                and self.slow_fast.wants_cka_probe(update_num)):
            self._last_probe_update = update_num  # once per update (the first of its micro-batches)
            self.cka_probe(model, sample)
        elif update_num == 0 and self._cka_reference is None and not self.cfg.slow_fast_reference \
                and self.needs_pretrained_reference():
            self._cka_reference = _frozen_copy(_unwrap(model))  # the pretrained weights (fresh run)
        if self.curves.enabled and not ignore_grad:
            self.curves.start(optimizer, update_num, _is_first_rank())
            if self.curves.due(update_num):
                self.record_curve_point(model, criterion, sample, update_num)
        if self.cfg.lr_scale_weights and not self._lr_scale_checked:
            self._lr_scale_checked = True
            from ..optim.adam_with_head_lr import LR_SCALE_TOKEN_PREFIX, find_xlint_adam, tag_tokens

            adam = find_xlint_adam(optimizer)
            if adam is None or not any(token.startswith(LR_SCALE_TOKEN_PREFIX)
                                       for tag in adam.group_tags for token in tag_tokens(tag)):
                raise RuntimeError("--lr-scale-weights needs --optimizer xlint_adam with its parameter groups "
                                   "(plain --fp16 flattens them: use --memory-efficient-fp16, "
                                   "--fp16-no-flatten-grads, --bf16 or --amp)")
        if self.cfg.reinit_weights and update_num == 0 and not self._reinit_done:
            if getattr(optimizer, "fp32_params", None) is not None:
                raise RuntimeError("--reinit-weights: fairseq's --fp16 keeps fp32 master copies made before "
                                   "the re-initialisation; use --memory-efficient-fp16, --bf16 or --amp")
            self.reinit_weights(_unwrap(model), self.cfg.reinit_weights, int(self.cfg.seed))
        self._reinit_done = True  # only before the first update of a fresh run, never on resume
        return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)

    def needs_pretrained_reference(self) -> bool:
        """Whether CKA probes compare with the pretrained weights (Policy IV ``auto``, ``--curve-cka``)."""
        policy_iv = (self.slow_fast.enabled and "IV" in self.slow_fast.preset
                     and str(self.cfg.slow_fast_policy_iv) == "auto" and self.cfg.slow_fast_cka_interval > 0)
        return policy_iv or (self.curves.enabled and self.curves.with_cka)

    def cka_reference(self, model) -> torch.nn.Module:
        """The frozen pretrained copy of ``model`` the probes compare with (loaded once)."""
        if self._cka_reference is not None:
            return self._cka_reference
        path = self.cfg.slow_fast_reference
        if not path:
            raise RuntimeError("a resumed run with CKA probes (--slow-fast-policy-iv auto, --curve-cka) needs "
                               "--slow-fast-reference (the pretrained checkpoint)")
        from fairseq import checkpoint_utils

        state = checkpoint_utils.load_checkpoint_to_cpu(path)
        reference = _frozen_copy(model)
        reference.load_state_dict(state["model"], strict=True, model_cfg=self._model_cfg)
        reference.to(next(model.parameters()).device)
        self._cka_reference = reference
        return reference

    def cka_probe(self, model, sample) -> float:
        """One Policy IV probe on ``sample``: the top two layers' CKA to the pretrained copy, given to
        the controller (averaged over data-parallel workers so that every rank decides alike)."""
        inner = _unwrap(model)
        net_input = dict(sample["net_input"])
        tokens = net_input.pop("src_tokens")
        value = top_layers_cka(inner, self.cka_reference(inner), tokens, self.dictionary.pad(), **net_input)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            total = torch.tensor([value], dtype=torch.float64, device=tokens.device)
            torch.distributed.all_reduce(total)
            value = float(total.item()) / torch.distributed.get_world_size()
        active = self.slow_fast.observe_cka(value)
        metrics.log_scalar("fsf_cka", value, priority=2007)
        logger.info("Policy IV probe at update %d: top-layer CKA %.6f, Policy IV %s", self._last_probe_update,
                    value, "on" if active else "off")
        return value

    # ------------------------------------------------------------------ training curves

    def curve_dataset(self) -> FinetuneDataset:
        """The fixed dev subset of the curves: ``--curve-examples`` examples of each validation language."""
        if self._curve_dataset is None:
            from ..data.finetune_data import subsample_indices

            valid = self.split_examples("valid")  # the dev files once, minus any few-shot examples
            examples = []
            for lang in self.valid_languages:
                records = [record for record_lang, record in valid if record_lang == lang]
                keep = subsample_indices(len(records), int(self.cfg.curve_examples), self.cfg.few_shot_seed, lang)
                examples.extend((lang, records[i]) for i in keep)
            self._curve_dataset = self.build_dataset(examples, "valid", "curve")
        return self._curve_dataset

    def record_curve_point(self, model, criterion, sample, update_num: int) -> Dict[str, Any]:
        """Measure and write the curve point of ``update_num`` (see :mod:`.training_curves`)."""
        started = time.perf_counter()
        inner = _unwrap(model)
        was_training = inner.training
        try:
            items = collect_predictions(self, inner, criterion, self.curve_dataset(), int(self.cfg.curve_batch_size),
                                        use_cuda=next(inner.parameters()).is_cuda)
        finally:
            inner.train(was_training)
        cka = None
        if self.curves.with_cka:
            net_input = dict(sample["net_input"])
            tokens = net_input.pop("src_tokens")
            cka = layer_cka(inner, self.cka_reference(inner), tokens, self.dictionary.pad(), None, **net_input)
        by_lang: Dict[str, List[Any]] = {}
        for item in items:
            by_lang.setdefault(item[1], []).append(item)
        metric = self.metric_names()[0]
        scores = {lang: {metric: self.curve_score(lang, by_lang[lang])} for lang in self.valid_languages
                  if lang in by_lang}
        row = curve_point(update_num, self.curves.mean_loss(), metric, scores, self.train_languages, cka)
        row["seconds"] = round(time.perf_counter() - started, 4)  # what the point cost (not part of the curve)
        self.curves.record(row, _is_first_rank())
        if row["gap"] is not None:
            logger.info("curve at update %d: %s gap %.2f (source %.2f, target %.2f)", update_num, row["metric"],
                        row["gap"], row["source"], row["target"])
        return row

    def get_batch_iterator(self, dataset, *args, **kwargs):
        # no --data-buffer-size thread: it makes fairseq-train abort at exit (status 134) about one
        # run in three with torch 2.13 (see xlm_mlm.get_batch_iterator); the data is in memory
        kwargs["data_buffer_size"] = 0
        return super().get_batch_iterator(dataset, *args, **kwargs)

    def lang_id(self, lang: str) -> int:
        """The model language index that routes ``lang``'s examples."""
        if self.model_languages is None:
            raise RuntimeError("build the model before loading data: its languages route the examples")
        target = self.route_map.get(lang, lang)
        if target in self.model_languages:
            return self.model_languages.index(target)
        if not self.has_language_modules:
            return 0  # no language-specific modules: any index routes the same way
        if lang in self.route_map:
            raise FinetuneDataError(f"--route-languages {lang}={target}: the model has no language {target!r} "
                                    f"(it has {', '.join(self.model_languages)})")
        raise FinetuneDataError(
            f"language {lang!r} has no language-specific modules in the model (it has "
            f"{', '.join(self.model_languages)}); pass --route-languages {lang}=<one of them>")

    # ------------------------------------------------------------------ data

    def split_examples(self, split: str) -> List[Tuple[str, Dict[str, Any]]]:
        """``(lang, record)`` pairs of a fairseq split (see the module docstring)."""
        wanted = {"train": self.train_languages + self.few_shot_languages, "valid": self.valid_languages,
                  "test": self.test_languages}.get(split, [])
        missing = [lang for lang in wanted if lang not in self.meta["splits"]]
        if missing:
            raise FinetuneDataError(f"language(s) {', '.join(missing)} not in {self.data_dir} "
                                    f"(it has {', '.join(self.meta['splits'])})")
        examples: List[Tuple[str, Dict[str, Any]]] = []
        if split == "train":
            for lang in self.train_languages:
                records = read_records(self.data_dir, lang, "train")
                keep = subsample_indices(len(records), self.cfg.max_train_examples, self.cfg.few_shot_seed, lang)
                examples.extend((lang, records[i]) for i in keep)
            for lang in self.few_shot_languages:
                records = read_records(self.data_dir, lang, "dev")
                shots = few_shot_indices(len(records), self.cfg.few_shot, self.cfg.few_shot_seed, lang)
                examples.extend((lang, records[i]) for i in shots)
        elif split == "valid":
            for lang in self.valid_languages:
                records = read_records(self.data_dir, lang, "dev")
                if lang in self.few_shot_languages:
                    taken = set(few_shot_indices(len(records), self.cfg.few_shot, self.cfg.few_shot_seed,
                                                 lang).tolist())
                    records = [record for i, record in enumerate(records) if i not in taken]
                examples.extend((lang, record) for record in records)
        elif split == "test":
            for lang in self.test_languages:
                examples.extend((lang, record) for record in read_records(self.data_dir, lang, "test"))
        else:
            raise KeyError(f"unknown split {split!r}: xlint fine-tuning tasks have train, valid (the dev "
                           "files) and test")
        if not examples:
            raise FinetuneDataError(f"split {split!r} of {self.data_dir} is empty for the chosen languages")
        return examples

    def make_items(self, example: int, lang: str, lang_id: int, record: Dict[str, Any],
                   split: str) -> List[Dict[str, Any]]:
        """The model inputs (windows) of one example."""
        raise NotImplementedError

    def collate_extra(self, items: List[Dict[str, Any]], batch: Dict[str, Any]) -> None:
        raise NotImplementedError

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs) -> FinetuneDataset:
        dataset = self.build_dataset(self.split_examples(split), split, split)
        self.datasets[split] = dataset
        return dataset

    def build_dataset(self, examples: List[Tuple[str, Dict[str, Any]]], split: str, name: str) -> FinetuneDataset:
        """The model inputs of ``examples`` as ``split`` builds them (``name``: for the log)."""
        ids = {lang: self.lang_id(lang) for lang in dict.fromkeys(lang for lang, _ in examples)}
        items: List[Dict[str, Any]] = []
        for index, (lang, record) in enumerate(examples):
            items.extend(self.make_items(index, lang, ids[lang], record, split))
        if not items:
            raise FinetuneDataError(f"split {split!r}: no usable example")
        languages = list(ids)
        dataset = FinetuneDataset(items, self.dictionary.pad(), self.collate_extra, shuffle=split == "train",
                                  languages=languages, num_examples=len(examples),
                                  order_seed=int(self.cfg.seed) + 1)  # the batches of epoch 1, also on resume
        dataset.examples = examples
        counts = {lang: sum(1 for example_lang, _ in examples if example_lang == lang) for lang in languages}
        logger.info("%s: %s examples, %d model inputs (max length %d)", name,
                    ", ".join(f"{lang} {n}" for lang, n in counts.items()), len(items), self.effective_max_length)
        return dataset

    # ------------------------------------------------------------------ metrics

    def metric_names(self) -> Tuple[str, ...]:
        raise NotImplementedError

    def score_language(self, lang: str, predictions: List[Any]) -> Dict[str, float]:
        """Scores (percentages) of one language's collected predictions."""
        raise NotImplementedError

    def curve_score(self, lang: str, predictions: List[Any]) -> float:
        """The primary metric (``metric_names()[0]``) of one language's predictions, for the curves."""
        return self.score_language(lang, predictions)[self.metric_names()[0]]

    def score_items(self, items: Sequence[Any]) -> Dict[str, Dict[str, float]]:
        """Per-language scores of collected prediction items (``item[1]`` is the language),
        plus their unweighted averages over all languages (``avg``) and over the
        languages that are not training languages (``tgt_avg``)."""
        by_lang: Dict[str, List[Any]] = {}
        for item in items:
            by_lang.setdefault(item[1], []).append(item)
        order = [lang for lang in self.valid_languages + self.test_languages if lang in by_lang]
        order += [lang for lang in by_lang if lang not in order]
        scores = {lang: self.score_language(lang, by_lang[lang]) for lang in order}
        if scores:
            scores[AVERAGE] = _average(scores.values())
            targets = [scores[lang] for lang in order if lang not in self.train_languages]
            if targets:
                scores[TARGET_AVERAGE] = _average(targets)
        return scores

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        if getattr(criterion, "training", False):
            self.curves.observe(logging_outputs)
        if not any(PREDICTIONS_KEY in log for log in logging_outputs):
            return
        items = [item for log in logging_outputs for item in log.get(PREDICTIONS_KEY, ())]
        metrics.log_custom(PredictionsMeter, PREDICTIONS_KEY, items)
        languages = list(dict.fromkeys(item[1] for item in items))
        has_targets = any(lang not in self.train_languages for lang in languages)
        keys = languages + [AVERAGE] + ([TARGET_AVERAGE] if has_targets else [])
        for key in keys:
            for metric in self.metric_names():
                metrics.log_derived(f"{metric}_{key}", self._derived(key, metric))

    def _derived(self, key: str, metric: str):
        def value(meters) -> float:
            scores = meters[PREDICTIONS_KEY].scores(self.score_items)
            return float(scores.get(key, {}).get(metric, 0.0))
        return value

    def prediction_records(self, items: Sequence[Any], dataset: FinetuneDataset) -> List[Dict[str, Any]]:
        """One JSON-able record per example with its prediction (for ``xlint evaluate --predictions``)."""
        raise NotImplementedError


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside fairseq's data-parallel wrappers."""
    while hasattr(model, "module") and isinstance(getattr(model, "module"), torch.nn.Module):
        model = model.module
    return model


def _is_first_rank() -> bool:
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or \
        torch.distributed.get_rank() == 0


def _frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    reference = copy.deepcopy(model).eval()
    for param in reference.parameters():
        param.requires_grad_(False)
    return reference


def _average(score_dicts) -> Dict[str, float]:
    score_dicts = list(score_dicts)
    keys = score_dicts[0].keys()
    return {key: sum(s[key] for s in score_dicts) / len(score_dicts) for key in keys}


# --------------------------------------------------------------------------- evaluation outside fairseq-train


def collect_predictions(task: FinetuneTask, model, criterion, dataset: FinetuneDataset, batch_size: int,
                        use_cuda: bool = False, progress=None) -> List[Any]:
    """Run ``model`` in eval mode over ``dataset`` exactly as validation does; return the items.

    ``progress`` (optional) is called with the number of batches done and the total.
    """
    iterator = task.get_batch_iterator(
        dataset=dataset, max_sentences=batch_size, max_positions=task.max_positions(),
        ignore_invalid_inputs=False, seed=1, num_workers=0, disable_iterator_cache=True,
    ).next_epoch_itr(shuffle=False)
    model.eval()
    items: List[Any] = []
    total = len(iterator)
    with torch.no_grad():
        for done, sample in enumerate(iterator, start=1):
            if use_cuda:
                sample = utils.move_to_cuda(sample)
            _, _, logging_output = criterion(model, sample)
            items.extend(logging_output[PREDICTIONS_KEY])
            if progress is not None:
                progress(done, total)
    return items


class CheckpointMismatchError(ValueError):
    """A fine-tuned checkpoint whose weights do not fit the model its task builds (one line)."""


def head_mismatch(expected: Dict[str, torch.Size], saved: Dict[str, torch.Size]) -> Optional[str]:
    """What is wrong with the saved task-head tensors (``heads.*`` name -> shape), or None."""
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    if missing:
        return f"missing task-head key(s) {', '.join(missing)}"
    if unexpected:
        return f"unexpected task-head key(s) {', '.join(unexpected)}"
    reshaped = [f"{key} {list(saved[key])} (the task builds {list(expected[key])})" for key in sorted(expected)
                if tuple(expected[key]) != tuple(saved[key])]
    if reshaped:
        return f"task-head shape(s) {', '.join(reshaped)}: other labels in the data?"
    return None


def load_finetuned_model(state: Dict[str, Any], checkpoint: str) -> Tuple[torch.nn.Module, Any, FinetuneTask]:
    """(model, cfg, task) of a fine-tuned checkpoint's ``state``, loaded strictly.

    As fairseq's ``load_model_ensemble_and_task``, except that the task head must be
    exactly the saved one: the model's ``upgrade_state_dict_named`` gives a model a
    new, randomly initialised head where a checkpoint has none (which is right when
    fine-tuning starts from a pretrained model, and wrong for evaluation).  A
    missing, unexpected or differently shaped ``heads.*`` tensor is a
    :class:`CheckpointMismatchError` naming the key, as is any other key that
    torch's strict loading refuses.
    """
    from fairseq import tasks

    cfg = state["cfg"]
    task = tasks.setup_task(cfg.task, from_checkpoint=True)
    if "task_state" in state:
        task.load_state_dict(state["task_state"])
    model = task.build_model(cfg.model, from_checkpoint=True)
    saved_heads = {key: value.shape for key, value in state["model"].items() if key.startswith("heads.")}
    built_heads = {key: value.shape for key, value in model.state_dict().items() if key.startswith("heads.")}
    problem = head_mismatch(built_heads, saved_heads)
    if problem:
        raise CheckpointMismatchError(f"{checkpoint}: {problem}")
    history = state.get("optimizer_history") or [{}]
    if "num_updates" in history[-1]:
        model.set_num_updates(history[-1]["num_updates"])
    try:
        model.load_state_dict(state["model"], strict=True, model_cfg=cfg.model)
    except RuntimeError as error:
        raise CheckpointMismatchError(f"{checkpoint}: " + " ".join(str(error).split())) from None
    return model, cfg, task


# --------------------------------------------------------------------------- the length of a fine-tuning run


class TrainArgumentsError(ValueError):
    """Arguments that ``fairseq-train`` would refuse (one line, argparse's message)."""


def parse_train_args(argv: Sequence[str]):
    """The configuration ``fairseq-train`` builds from ``argv`` (its arguments, without the program);
    arguments it would refuse raise :class:`TrainArgumentsError` instead of printing its usage."""
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    def refuse(message: str):
        raise TrainArgumentsError(f"fairseq-train would refuse its arguments: {message}")

    parser = options.get_training_parser()
    parser.error = refuse  # argparse reports every bad argument through the parser's error()
    return convert_namespace_to_omegaconf(options.parse_args_and_arch(parser, list(argv)))


def build_model_for_counting(task: FinetuneTask, model_cfg):
    """The task's model, built only for what counting needs (its languages and length).

    An ``xlint_roberta`` model (XLM-R large: 560M parameters, XXL: 10.7B) is built on the
    ``meta`` device, which allocates nothing, with fairseq's BERT initialisation skipped
    (it copies through the CPU); the weights play no part in the count.
    """
    if str(getattr(model_cfg, "_name", "")) != "xlint_roberta" and str(getattr(model_cfg, "arch", "")) != \
            "xlint_roberta":
        return task.build_model(model_cfg)
    from unittest import mock

    from fairseq.models.roberta import model as roberta_module

    with torch.device("meta"), mock.patch.object(roberta_module, "init_bert_params", lambda module: None):
        return task.build_model(model_cfg)


def count_train_updates(cfg) -> int:
    """How many optimizer updates ``fairseq-train`` makes with ``cfg`` (see :func:`parse_train_args`).

    The task builds its model (whose languages route the examples and whose length
    caps the windows) and its training set exactly as in training; fairseq's own
    iterators then batch it (``--batch-size``, ``--max-tokens``,
    ``--required-batch-size-multiple``), shard it over ``--distributed-world-size``
    workers and group it into updates (``--update-freq``, per epoch, and
    ``--skip-remainder-batch``), for every epoch up to ``--max-epoch``, capped at
    ``--max-update``.  Updates that fairseq skips at run time (fp16 overflow, OOM)
    cannot be foreseen.
    """
    from fairseq import tasks, utils as fairseq_utils
    from fairseq.data import iterators

    max_epoch, max_update = cfg.optimization.max_epoch, cfg.optimization.max_update
    if max_epoch <= 0:
        if max_update <= 0:
            raise ValueError("neither --max-epoch nor --max-update ends the training")
        return int(max_update)
    task = tasks.setup_task(cfg.task)
    model = build_model_for_counting(task, cfg.model)
    dataset = task.load_dataset(cfg.dataset.train_subset)
    batches = task.get_batch_iterator(
        dataset=dataset, max_tokens=cfg.dataset.max_tokens, max_sentences=cfg.dataset.batch_size,
        max_positions=fairseq_utils.resolve_max_positions(task.max_positions(), model.max_positions(),
                                                          cfg.dataset.max_tokens),
        ignore_invalid_inputs=True, required_batch_size_multiple=cfg.dataset.required_batch_size_multiple,
        seed=cfg.common.seed, num_shards=cfg.distributed_training.distributed_world_size, shard_id=0,
        num_workers=0, epoch=1, disable_iterator_cache=True,
        skip_remainder_batch=cfg.optimization.skip_remainder_batch,
        grouped_shuffling=cfg.dataset.grouped_shuffling,
    ).next_epoch_itr(shuffle=False)
    update_freqs = list(cfg.optimization.update_freq)
    updates_by_freq: Dict[int, int] = {}
    total = 0
    for epoch in range(1, max_epoch + 1):
        freq = int(update_freqs[min(epoch, len(update_freqs)) - 1])
        if freq not in updates_by_freq:
            updates_by_freq[freq] = len(iterators.GroupedIterator(
                batches, freq, skip_remainder_batch=cfg.optimization.skip_remainder_batch))
        total += updates_by_freq[freq]
    return min(total, max_update) if max_update > 0 else total

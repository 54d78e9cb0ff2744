"""``xlm_mlm``: multilingual masked LM with one language per update.

Reads the layout written by ``xlint preprocess``::

    DATA/dict.txt                              one dictionary shared by all languages
    DATA/<lang>/{train,valid,test,metadev}.{bin,idx}
    DATA/metadata.json                         languages and counts

Training batches hold a single language; the language of each update is drawn by a
registered language sampler (``--language-sampler temperature`` by default, with
P_i proportional to q_i^(1/T)).  The draw depends only on (seed, epoch, update), and
all ``--update-freq`` micro-batches of all data-parallel ranks of one update share
the language.  Validation reports loss and perplexity per language
(``valid_loss_<lang>``, ``valid_ppl_<lang>``) next to fairseq's overall numbers; under
data parallelism they equal those of one process on the same data (every rank logs the
same keys with the same types, whichever language it holds, see
:meth:`XlmMlmTask.add_language_statistics`).

Language-specific modules under data parallelism and mixed precision: a module of a
language absent from an update gets no gradient in one fp32 process, so Adam leaves it
(and its moments) alone.  ``legacy_ddp`` and fp16's fp32 master copies give it a zero
gradient instead, on which Adam would move it with stale momentum.  The task therefore
clears, right before the optimizer steps, the gradients of the absent languages'
parameters in the tensors that the optimizer steps (:meth:`XlmMlmTask.optimizer_step`),
so that training gives the same parameters whatever the backend and the world size.  It
refuses at start the set-ups that cannot give that: pytorch DDP (``c10d``) without
``--find-unused-parameters`` (it fails on unused parameters) and ``--fp16`` with flattened
gradients (one flat tensor and one Adam step count for all parameters).

Gradient conflict (Wang et al. 2020, Fig. 3): with ``--grad-sim-interval N`` the first
micro-batch of every N-th update (counting from update 0, the initial parameters) first
measures the cosine similarity of the shared parameters' gradients between languages and
within each language (:mod:`.grad_sim_probe`, numeric core
:mod:`xlint.analysis.gradient_similarity`), logged as ``grad_cos_<a>_<b>`` and written to
``SAVE_DIR/grad_sim.jsonl``; training is bit-identical with and without it.
"""

import json
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set

import numpy as np
import torch
import torch.nn as nn
from fairseq import utils
from fairseq.data import (
    IdDataset,
    MaskTokensDataset,
    NestedDictionaryDataset,
    NumelDataset,
    NumSamplesDataset,
    PrependTokenDataset,
    RawLabelDataset,
    RightPadDataset,
    TokenBlockDataset,
    data_utils,
)
from fairseq.data.shorten_dataset import maybe_shorten_dataset
from fairseq.logging import metrics
from fairseq.optim import FP16Optimizer
from fairseq.optim.amp_optimizer import AMPOptimizer
from fairseq.tasks import register_task
from fairseq.tasks.masked_lm import MaskedLMConfig, MaskedLMTask
from omegaconf import II

from ..analysis.temperature import DEFAULT_TEMPERATURE
from ..data.language_sampling import build_language_sampler, sampler_accepts
from ..data.multilingual_split import LanguageBlockEpochIterator, MultilingualSplit
from ..data.update_rows import UpdateRowsLog
from .grad_sim_probe import (
    GRAD_SIM_FILE,
    GradientSimilarityProbe,
    ProbeSettings,
    loss_scale_of,
    rank_and_world_size,
    similarity_rows,
)

logger = logging.getLogger(__name__)

METADATA_FILE = "metadata.json"


@dataclass
class XlmMlmConfig(MaskedLMConfig):
    languages: str = field(
        default="",
        metadata={"help": "comma-separated languages to train on, in routing order; "
                          "empty reads all languages from DATA/metadata.json"},
    )
    language_sampler: str = field(
        default="temperature",
        metadata={"help": "how each update's language is drawn (registered language samplers)"},
    )
    sampling_temperature: float = field(
        default=DEFAULT_TEMPERATURE,
        metadata={"help": "T in P_i ~ q_i^(1/T); default 1/0.7 as XLM's alpha=0.7 "
                          "(1 = proportional to data, large = uniform)"},
    )
    grad_sim_interval: int = field(
        default=0,
        metadata={"help": "every N updates, measure the cosine similarity of the shared parameters' gradients "
                          "between languages and within each language (Wang et al. 2020, Fig. 3; paper: 10); "
                          "0: off"},
    )
    grad_sim_sentences: int = field(
        default=4096,
        metadata={"help": "sentences per gradient-similarity probe batch (accumulated over micro-batches of "
                          "--grad-sim-max-tokens / --grad-sim-batch-size; paper: 4096)"},
    )
    grad_sim_no_dropout: bool = field(
        default=False,
        metadata={"help": "run the probes in eval mode (dropout off); default: training mode, the gradients a "
                          "training step sees (the paper's setting)"},
    )
    grad_sim_subset: str = field(default="train", metadata={"help": "split the probe batches are drawn from"})
    grad_sim_file: str = field(
        default="", metadata={"help": f"JSONL file of the probe rows (default: SAVE_DIR/{GRAD_SIM_FILE})"})
    grad_sim_max_tokens: Optional[int] = field(
        default=None, metadata={"help": "tokens per probe micro-batch (default: --max-tokens)"})
    grad_sim_batch_size: Optional[int] = field(
        default=None, metadata={"help": "sentences per probe micro-batch (default: --batch-size)"})
    update_freq: Any = II("optimization.update_freq")
    # read from other config groups (not options of the task): the probes' defaults
    max_tokens: Optional[int] = II("dataset.max_tokens")
    batch_size: Optional[int] = II("dataset.batch_size")
    checkpoint_save_dir: Any = II("checkpoint.save_dir")
    # read from other config groups (not options of the task): the start-up check of
    # data-parallel and half-precision set-ups (see data_parallel_setup_problem)
    distributed_world_size: Any = II("distributed_training.distributed_world_size")
    ddp_backend: Any = II("distributed_training.ddp_backend")
    find_unused_parameters: Any = II("distributed_training.find_unused_parameters")
    fp16: Any = II("common.fp16")
    bf16: Any = II("common.bf16")
    memory_efficient_fp16: Any = II("common.memory_efficient_fp16")
    fp16_no_flatten_grads: Any = II("common.fp16_no_flatten_grads")


@register_task("xlm_mlm", dataclass=XlmMlmConfig)
class XlmMlmTask(MaskedLMTask):
    """Multilingual MLM over ``xlint preprocess`` data; see the module docstring."""

    cfg: XlmMlmConfig

    def __init__(self, cfg: XlmMlmConfig, dictionary=None):
        super().__init__(cfg, dictionary)
        self.data_dir = utils.split_paths(cfg.data)[0]
        self.languages = resolve_languages(cfg.languages, self.data_dir)
        self.language_sampler = None
        #: languages of this rank's real (non-dummy) batches in the current update; -1: a mixed batch
        self._update_languages: Set[int] = set()
        self._language_groups: Optional[LanguageParameterGroups] = None
        self._gradient_mask: Optional[AbsentLanguageGradients] = None
        self._warned_no_update_language = False
        self._epoch: Optional[int] = None
        self._grad_sim: Optional[GradientSimilarityProbe] = None
        #: the update last measured, and whether this process has trained (dropped redone rows) yet
        self._grad_sim_last: Optional[int] = None
        self._grad_sim_started = False
        #: read once: the step's only cost when the analysis is off is comparing this int
        self._grad_sim_interval = int(cfg.grad_sim_interval or 0)
        self._grad_sim_logging: Dict[str, float] = {}

    # ------------------------------------------------------------------ data

    def language_split_path(self, lang: str, split: str) -> str:
        return os.path.join(self.data_dir, lang, split)

    def _load_language_split(self, lang_index: int, split: str, epoch: int, combine: bool):
        lang = self.languages[lang_index]
        path = self.language_split_path(lang, split)
        tokens = data_utils.load_indexed_dataset(path, self.source_dictionary, combine=combine)
        if tokens is None:
            raise FileNotFoundError(f"dataset not found: {path}.{{bin,idx}} (language {lang}, split {split})")
        tokens = maybe_shorten_dataset(tokens, split, self.cfg.shorten_data_split_list,
                                       self.cfg.shorten_method, self.cfg.tokens_per_sample, self.cfg.seed)
        tokens = TokenBlockDataset(
            tokens, tokens.sizes, self.cfg.tokens_per_sample - 1,  # one less for <s>
            pad=self.source_dictionary.pad(), eos=self.source_dictionary.eos(),
            break_mode=self.cfg.sample_break_mode,
        )
        tokens = PrependTokenDataset(tokens, self.source_dictionary.bos())
        src, tgt = MaskTokensDataset.apply_mask(
            tokens, self.source_dictionary,
            pad_idx=self.source_dictionary.pad(), mask_idx=self.mask_idx,
            seed=self.cfg.seed + 7919 * lang_index,  # distinct masks per language
            mask_prob=self.cfg.mask_prob, leave_unmasked_prob=self.cfg.leave_unmasked_prob,
            random_token_prob=self.cfg.random_token_prob,
            freq_weighted_replacement=self.cfg.freq_weighted_replacement,
            mask_multiple_length=self.cfg.mask_multiple_length, mask_stdev=self.cfg.mask_stdev,
        )
        pad = self.source_dictionary.pad()
        return NestedDictionaryDataset(
            {
                "id": IdDataset(),
                "net_input": {
                    "src_tokens": RightPadDataset(src, pad_idx=pad),
                    "src_lengths": NumelDataset(src, reduce=False),
                    "src_lang_id": RawLabelDataset(np.full(len(src), lang_index, dtype=np.int64)),
                },
                "target": RightPadDataset(tgt, pad_idx=pad),
                "nsentences": NumSamplesDataset(),
                "ntokens": NumelDataset(src, reduce=True),
            },
            sizes=[src.sizes],
        )

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs):
        per_language = [self._load_language_split(i, split, epoch, combine) for i in range(len(self.languages))]
        dataset = MultilingualSplit(per_language, self.languages, split)
        self.datasets[split] = dataset
        if split == "train":
            sentences = [self._sentence_count(i, split) for i in range(len(self.languages))]
            self.language_sampler = build_language_sampler(
                self.cfg.language_sampler, self.languages, sentences,
                seed=self.cfg.seed, temperature=self.cfg.sampling_temperature,
            )
            if (not sampler_accepts(self.cfg.language_sampler, "temperature")
                    and self.cfg.sampling_temperature != DEFAULT_TEMPERATURE):
                logger.warning("--language-sampler %s has no temperature: --sampling-temperature %g is ignored",
                               self.cfg.language_sampler, self.cfg.sampling_temperature)
            logger.info("language sampling probabilities (%s)", self.language_sampler.describe())
        return dataset

    def _sentence_count(self, lang_index: int, split: str) -> int:
        return len(data_utils.load_indexed_dataset(
            self.language_split_path(self.languages[lang_index], split), self.source_dictionary))

    # ------------------------------------------------------------------ batching

    def _language_batches(self, dataset: MultilingualSplit, lang_index: int, rng: np.random.Generator,
                          max_tokens, max_sentences, max_positions, ignore_invalid_inputs,
                          required_batch_size_multiple) -> List[np.ndarray]:
        rows = dataset.language_rows(lang_index)
        rows = rows[rng.permutation(len(rows))]
        rows = rows[np.argsort(dataset.sizes[rows], kind="stable")]  # similar lengths together
        if max_positions is not None:
            rows = self.filter_indices_by_size(rows, dataset, max_positions, ignore_invalid_inputs)
        batches = data_utils.batch_by_size(
            rows, dataset.num_tokens, num_tokens_vec=dataset.sizes[rows], max_tokens=max_tokens,
            max_sentences=max_sentences, required_batch_size_multiple=required_batch_size_multiple,
        )
        rng.shuffle(batches)
        return list(batches)

    def update_freq_for_epoch(self, epoch: int) -> int:
        freq = self.cfg.update_freq
        if freq is None or isinstance(freq, str):
            return 1
        if isinstance(freq, int):
            return freq
        freq = list(freq)
        return int(freq[min(epoch, len(freq)) - 1]) if freq else 1

    def plan_training_batches(self, dataset: MultilingualSplit, epoch: int, seed: int, num_shards: int,
                              **batching) -> List[np.ndarray]:
        """The epoch's batches: each update's ``num_shards * update_freq`` batches share one language.

        An epoch has as many updates as it takes to cover the summed per-language
        batch counts once; a language whose batches run out starts them again in
        a fresh order (the sampler, not the corpus size, decides how often a
        language is seen).
        """
        per_update = num_shards * self.update_freq_for_epoch(epoch)
        streams, total = [], 0
        for lang_index in range(len(self.languages)):
            rng = np.random.default_rng([seed, epoch, lang_index])
            batches = self._language_batches(dataset, lang_index, rng, **batching)
            streams.append({"batches": batches, "position": 0, "rng": rng})
            total += len(batches)
        num_updates = max(1, math.ceil(total / per_update))
        plan: List[np.ndarray] = []
        for lang_index in self.language_sampler.draw(epoch, num_updates):
            stream = streams[lang_index]
            if not stream["batches"]:
                raise ValueError(f"language {self.languages[lang_index]} has no training batch")
            for _ in range(per_update):
                if stream["position"] == len(stream["batches"]):
                    stream["rng"].shuffle(stream["batches"])
                    stream["position"] = 0
                plan.append(stream["batches"][stream["position"]])
                stream["position"] += 1
        return plan

    def get_batch_iterator(self, dataset, max_tokens=None, max_sentences=None, max_positions=None,
                           ignore_invalid_inputs=False, required_batch_size_multiple=1, seed=1,
                           num_shards=1, shard_id=0, num_workers=0, epoch=1, data_buffer_size=0,
                           disable_iterator_cache=False, skip_remainder_batch=False,
                           grouped_shuffling=False, update_epoch_batch_itr=False):
        if not isinstance(dataset, MultilingualSplit):
            return super().get_batch_iterator(
                dataset, max_tokens, max_sentences, max_positions, ignore_invalid_inputs,
                required_batch_size_multiple, seed, num_shards, shard_id, num_workers, epoch,
                data_buffer_size, disable_iterator_cache, skip_remainder_batch, grouped_shuffling,
                update_epoch_batch_itr)
        # buffer_size=0: fairseq's --data-buffer-size thread makes fairseq-train abort at exit
        # ("terminate called without an active exception", status 134) about one run in three
        # with torch 2.13; batches come from memory-mapped data, so the thread buys nothing here
        # (--num-workers still prefetches in worker processes).
        batching = dict(max_tokens=max_tokens, max_sentences=max_sentences, max_positions=max_positions,
                        ignore_invalid_inputs=ignore_invalid_inputs,
                        required_batch_size_multiple=required_batch_size_multiple)
        dataset.set_epoch(epoch)
        is_train = dataset is self.datasets.get("train") and self.language_sampler is not None

        def make_batches(dataset: MultilingualSplit, epoch: int):
            if is_train:
                return self.plan_training_batches(dataset, epoch, seed, num_shards, **batching)
            batches = []
            for lang_index in range(len(self.languages)):  # evaluation: every batch, in order
                rng = np.random.default_rng([seed, 0, lang_index])
                batches.extend(self._language_batches(dataset, lang_index, rng, **batching))
            return batches

        return LanguageBlockEpochIterator(
            dataset=dataset, collate_fn=dataset.collater,
            batch_sampler=make_batches if is_train else make_batches(dataset, epoch),
            seed=seed, num_shards=num_shards, shard_id=shard_id, num_workers=num_workers,
            epoch=epoch, buffer_size=0, disable_shuffling=True,
        )

    # ------------------------------------------------------------------ per-language statistics

    def add_language_statistics(self, sample, loss, sample_size, logging_output: Dict[str, Any]) -> None:
        """Add ``loss:<lang>``/``sample_size:<lang>`` for every language (zeros for absent ones).

        fairseq's fast all-reduce of logging outputs sums tensors and Python numbers in two
        separate buffers, each in key order, so every rank must log the same keys with the
        same types whichever language it holds: an absent language gets a zero of the type
        of the criterion's own value (a tensor on the same device; no device sync).  A rank
        without a batch runs fairseq's dummy batch, whose values fairseq zeroes keeping
        their types, so it matches too.
        """
        batch_lang = sample.get("language", -1) if sample else -1
        loss_value = logging_output.get("loss", 0.0)
        loss_zero, size_zero = _zero_like(loss_value), _zero_like(sample_size)
        for lang_index, lang in enumerate(self.languages):
            present = lang_index == batch_lang
            logging_output[f"loss:{lang}"] = loss_value if present else loss_zero
            logging_output[f"sample_size:{lang}"] = sample_size if present else size_zero

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        if self._grad_sim_interval > 0:
            self.measure_gradient_similarity(model, criterion, optimizer, update_num)
        self._record_update_language(model, sample, ignore_grad)
        loss, sample_size, logging_output = super().train_step(
            sample, model, criterion, optimizer, update_num, ignore_grad)
        self.add_language_statistics(sample, loss, sample_size, logging_output)
        if self._grad_sim_logging:
            logging_output.update(self._grad_sim_logging)
            self._grad_sim_logging = {}
        return loss, sample_size, logging_output

    def valid_step(self, sample, model, criterion):
        loss, sample_size, logging_output = super().valid_step(sample, model, criterion)
        self.add_language_statistics(sample, loss, sample_size, logging_output)
        return loss, sample_size, logging_output

    # ------------------------------------------------------------------ gradient similarity (Fig. 3)

    def grad_sim_path(self) -> str:
        return self.cfg.grad_sim_file or os.path.join(str(self.cfg.checkpoint_save_dir), GRAD_SIM_FILE)

    def gradient_similarity_probe(self, **overrides: Any) -> GradientSimilarityProbe:
        """The probe over ``--grad-sim-subset`` (its own copy of the split); ``overrides`` replace
        :class:`ProbeSettings` fields (the offline ``xlint grad-sim``)."""
        cfg = self.cfg
        settings = dict(sentences=cfg.grad_sim_sentences, seed=cfg.seed, dropout=not cfg.grad_sim_no_dropout,
                        max_tokens=_first_set(cfg.grad_sim_max_tokens, _interpolated(cfg, "max_tokens")),
                        max_sentences=_first_set(cfg.grad_sim_batch_size, _interpolated(cfg, "batch_size")),
                        max_positions=cfg.tokens_per_sample)
        settings.update(overrides)
        if settings["max_tokens"] is None and settings["max_sentences"] is None:
            settings["max_sentences"] = 32
        per_language = [self._load_language_split(i, cfg.grad_sim_subset, 1, False)
                        for i in range(len(self.languages))]
        dataset = MultilingualSplit(per_language, self.languages, cfg.grad_sim_subset)
        return GradientSimilarityProbe(dataset, self.languages, ProbeSettings(**settings))

    def measure_gradient_similarity(self, model, criterion, optimizer, update_num: int) -> None:
        """At the first micro-batch of every ``--grad-sim-interval``-th update: probe, log, append rows.

        Runs on every rank (the probe's micro-batches are split over ranks); changes no
        parameter, gradient, generator state or module mode (see :mod:`.grad_sim_probe`).
        """
        if self._grad_sim_last == update_num:
            return  # a later micro-batch of a measured update (or meta_mlm's second call)
        if not self._grad_sim_started:
            self._grad_sim_started = True
            if rank_and_world_size()[0] == 0:
                dropped = UpdateRowsLog(self.grad_sim_path()).keep_before(update_num)
                if dropped:
                    logger.info("gradient similarity: dropped %d rows of updates >= %d (redone after the resume)",
                                dropped, update_num)
        if update_num % self._grad_sim_interval:
            return
        self._grad_sim_last = update_num
        if self._grad_sim is None:
            self._grad_sim = self.gradient_similarity_probe()
        self._grad_sim.dataset.set_epoch(update_num + 1)  # the probe's masks: per update, not per epoch
        probes, similarities = self._grad_sim.measure(unwrap_model(model), criterion, update_num,
                                                      loss_scale_of(optimizer), amp=isinstance(optimizer, AMPOptimizer))
        rows = similarity_rows(probes, similarities, update_num, self._epoch)
        if rank_and_world_size()[0] == 0:
            UpdateRowsLog(self.grad_sim_path()).append(rows)
        self._grad_sim_logging = grad_sim_logging_output(rows)
        if any(not row["finite"] for row in rows):
            logger.warning("gradient similarity at update %d: non-finite gradients (recorded as such)", update_num)

    # ------------------------------------------------------------------ language-specific modules

    def language_parameter_groups(self, model: nn.Module) -> "LanguageParameterGroups":
        """The trainable parameters of each language's own modules (computed once per model)."""
        inner = unwrap_model(model)
        if self._language_groups is None or self._language_groups.model is not inner:
            self._language_groups = LanguageParameterGroups.of(inner, len(self.languages))
        return self._language_groups

    def _record_update_language(self, model: nn.Module, sample, ignore_grad: bool) -> None:
        """Note the language of this micro-batch; the first micro-batch of an update starts afresh.

        fairseq's trainer clears all gradients before an update (and after a skipped one),
        so the first micro-batch of an update is the one that finds the sentinel parameter
        (a shared one that every forward pass uses) without a gradient.
        """
        groups = self.language_parameter_groups(model)
        if not groups.any_trainable:
            return
        if groups.sentinel is None or groups.sentinel.grad is None:
            self._update_languages.clear()
        if not ignore_grad:  # a dummy batch (a rank without data) trains no language
            self._update_languages.add(sample.get("language", -1) if sample else -1)

    def optimizer_step(self, optimizer, model, update_num):
        """Clear the absent languages' gradients, then step (the trainer calls this after the
        gradients' all-reduce and clipping).  Subclasses override it and chain with super()."""
        self.clear_absent_language_gradients(optimizer, model, update_num)
        super().optimizer_step(optimizer, model, update_num)

    def clear_absent_language_gradients(self, optimizer, model: nn.Module, update_num: int) -> None:
        """Set ``.grad = None`` on the stepped copies of the parameters of languages absent from
        this update, so that Adam skips them (values and moments) as in one fp32 process."""
        groups = self.language_parameter_groups(model)
        if not groups.any_trainable:
            return
        present, self._update_languages = self._update_languages, set()
        if not present:
            if not self._warned_no_update_language:
                logger.warning("update %d had no training batch on this rank: the modules of absent "
                               "languages are not protected from zero-gradient steps", update_num + 1)
                self._warned_no_update_language = True
            return
        if -1 in present:  # a batch mixing languages: which modules it used is unknown without a sync
            return
        if self._gradient_mask is None or self._gradient_mask.optimizer is not optimizer \
                or self._gradient_mask.groups is not groups:
            self._gradient_mask = AbsentLanguageGradients(optimizer, groups)
        self._gradient_mask.clear_all_but(present)

    def begin_epoch(self, epoch, model):
        super().begin_epoch(epoch, model)
        self._epoch = int(epoch)
        problem = data_parallel_setup_problem(self.cfg, self.language_parameter_groups(model).any_trainable)
        if problem is not None:
            raise ValueError(problem)

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        for lang in self.languages:
            sample_size = _sum(logging_outputs, f"sample_size:{lang}")
            if sample_size > 0:
                loss = _sum(logging_outputs, f"loss:{lang}")
                metrics.log_scalar(f"loss_{lang}", loss / sample_size / math.log(2), sample_size, round=3)
                metrics.log_derived(f"ppl_{lang}", _perplexity_of(f"loss_{lang}"))
        reduce_grad_sim_metrics(logging_outputs)


GRAD_SIM_COUNT_PREFIX = "_grad_sim_n:"


def grad_sim_logging_output(rows: List[Dict[str, Any]]) -> Dict[str, float]:
    """``grad_cos_<a>_<b>`` (the total group's finite cosines) and their counts, for fairseq's log.

    Every rank adds the same keys (the cosines are computed from all-reduced gradients), as
    fairseq's fast all-reduce of logging outputs requires; summed over ranks and averaged
    by the counts in :func:`reduce_grad_sim_metrics`."""
    out: Dict[str, float] = {}
    for row in rows:
        if row["group"] == "total" and row["cos"] is not None:
            key = f"grad_cos_{row['lang_a']}_{row['lang_b']}"
            out[key] = float(row["cos"])
            out[GRAD_SIM_COUNT_PREFIX + key] = 1.0
    return out


def reduce_grad_sim_metrics(logging_outputs) -> None:
    keys = sorted({k[len(GRAD_SIM_COUNT_PREFIX):] for log in logging_outputs for k in log
                   if k.startswith(GRAD_SIM_COUNT_PREFIX)})
    for key in keys:
        count = _sum(logging_outputs, GRAD_SIM_COUNT_PREFIX + key)
        if count > 0:
            metrics.log_scalar(key, _sum(logging_outputs, key) / count, count, priority=950, round=4)


class LanguageParameterGroups:
    """Per language, the parameters of its own modules that fairseq's optimizer trains."""

    def __init__(self, model: nn.Module, groups: List[List[nn.Parameter]], sentinel: Optional[nn.Parameter]):
        self.model = model
        self.groups = groups
        #: a trainable shared parameter used by every forward pass (the first one: the token embedding)
        self.sentinel = sentinel
        self.any_trainable = any(groups)

    @classmethod
    def of(cls, model: nn.Module, num_languages: int) -> "LanguageParameterGroups":
        if not hasattr(model, "language_parameters"):  # a model without language-specific modules
            return cls(model, [[] for _ in range(num_languages)], None)
        languages = list(model.languages)
        groups = [[p for _, p in model.language_parameters(lang) if p.requires_grad] for lang in languages]
        sentinel = next((p for _, p in model.shared_parameters() if p.requires_grad), None)
        return cls(model, groups, sentinel)


class AbsentLanguageGradients:
    """Clears the gradients of chosen languages in the tensors that an optimizer steps.

    fairseq's ``FP16Optimizer`` steps fp32 copies of the parameters (their gradients are
    synced from the model's beforehand); every other optimizer (fp32, AMP,
    ``MemoryEfficientFP16Optimizer``) steps the model's parameters themselves.
    """

    def __init__(self, optimizer, groups: LanguageParameterGroups):
        self.optimizer = optimizer
        self.groups = groups
        copies = fp32_copies_of(optimizer)
        self.stepped = [[copies.get(id(p), p) for p in group] for group in groups.groups]

    def clear_all_but(self, present: Set[int]) -> None:
        if isinstance(self.optimizer, FP16Optimizer):
            # grads reach the fp32 copies before clipping; sync now if not, so none comes back later
            self.optimizer._sync_fp16_grads_to_fp32()
        for lang_index, (params, stepped) in enumerate(zip(self.groups.groups, self.stepped)):
            if lang_index in present:
                continue
            for p in params:
                p.grad = None
            for p in stepped:
                p.grad = None


FLAT_FP16_FIX = ("--fp16 flattens all gradients into one tensor, so Adam would move the modules of "
                 "languages absent from an update: add --fp16-no-flatten-grads (or use --memory-efficient-fp16)")


def fp32_copies_of(optimizer) -> Dict[int, nn.Parameter]:
    """``id(model parameter) -> the fp32 copy that FP16Optimizer steps``; empty for other optimizers."""
    if not isinstance(optimizer, FP16Optimizer):
        return {}
    if optimizer.has_flat_params:
        raise ValueError(FLAT_FP16_FIX)
    return {id(p): p32 for p, p32 in zip(optimizer.fp16_params, optimizer.fp32_params)}


def data_parallel_setup_problem(cfg: XlmMlmConfig, trains_language_modules: bool) -> Optional[str]:
    """Why this run could not keep absent languages' modules untouched (one line), or None."""
    if not trains_language_modules:
        return None
    backend = str(cfg.ddp_backend)
    if int(cfg.distributed_world_size) > 1:
        if backend in ("c10d", "pytorch_ddp") and not cfg.find_unused_parameters:
            return (f"--ddp-backend {backend} fails on the modules of languages absent from an update "
                    "(unused parameters): add --find-unused-parameters or use --ddp-backend legacy_ddp")
        if backend not in ("c10d", "pytorch_ddp", "legacy_ddp", "no_c10d"):
            return (f"--ddp-backend {backend} is not supported with language-specific modules: "
                    "use --ddp-backend legacy_ddp")
    if cfg.fp16 and not (cfg.bf16 or cfg.memory_efficient_fp16 or cfg.fp16_no_flatten_grads):
        return FLAT_FP16_FIX
    return None


def unwrap_model(model: nn.Module) -> nn.Module:
    """The fairseq model inside data-parallel wrappers."""
    while hasattr(model, "module"):
        model = model.module
    return model


def _first_set(*values):
    return next((v for v in values if v is not None), None)


def _interpolated(cfg, key: str):
    """A config value read from another group, or None where it cannot be resolved (a bare config)."""
    try:
        return getattr(cfg, key, None)
    except Exception:  # noqa: BLE001 - omegaconf raises its own errors for missing interpolation targets
        return None


def _zero_like(value):
    """A zero of the same kind: a tensor on the same device and of the same dtype, or a Python number."""
    return torch.zeros_like(value) if torch.is_tensor(value) else type(value)(0)


def _sum(logging_outputs, key: str) -> float:
    total = sum(log.get(key, 0) for log in logging_outputs)
    return float(total.item() if torch.is_tensor(total) else total)


def _perplexity_of(meter_name: str):
    return lambda meters: utils.get_perplexity(meters[meter_name].avg)


def resolve_languages(languages: str, data_dir: str) -> List[str]:
    """The task's languages: ``--languages`` if given, else those in DATA/metadata.json."""
    if languages:
        chosen = [lang.strip() for lang in languages.split(",") if lang.strip()]
    else:
        path = os.path.join(data_dir, METADATA_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} not found: give --languages or preprocess with `xlint preprocess`")
        with open(path, encoding="utf-8") as f:
            chosen = list(json.load(f)["languages"])
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"--languages lists a language twice: {chosen}")
    missing = [lang for lang in chosen if not os.path.isdir(os.path.join(data_dir, lang))]
    if missing:
        raise FileNotFoundError(f"no data folder for language(s) {missing} under {data_dir}")
    return chosen

"""Gradient-similarity probes during pretraining (Wang et al. 2020, Fig. 3): drawing and bookkeeping.

At a measured update the probe draws, for every language, two independent probe
batches of ``--grad-sim-sentences`` sentences (the paper: 4096 by accumulation) from the
probe split, takes the gradient of the *shared* parameters (the model's
``shared_parameters()``: no ``.per_language.`` module) of the mean masked-LM loss of each
probe, accumulated over micro-batches of the run's batch size, and reports
:mod:`xlint.analysis.gradient_similarity` for every language pair (probe 0 of each) and
within every language (probe 0 against probe 1: the paper's "En-En"), per parameter
group and in total.

It does not change training:

* gradients come from ``torch.autograd.grad`` (no ``.grad`` is touched);
* everything runs inside ``torch.random.fork_rng``, so the training stream's generators
  (CPU and the current CUDA device) are as before; every micro-batch re-seeds the fork
  from (``--seed``, update, language, probe, micro-batch), so its dropout masks depend on
  neither the rank nor the world size;
* the probe rows are drawn from the probe's own generator (seeded from ``--seed``, the
  update, the language and the probe) out of its own copy of the split, whose masking
  epoch is the update (the training dataset's state is left alone);
* every module's train/eval flag is restored.  Probes run in training mode (dropout on,
  the paper's setting: the gradients are those a training step would see) unless
  ``--grad-sim-no-dropout``.

Data parallel: micro-batch ``j`` of a probe runs on rank ``j mod world_size``; the summed
gradients and token counts are all-reduced before the division and the cosines, so any
world size gives the numbers of one process (to float32 summation order).

Output: :class:`..data.update_rows.UpdateRowsLog` appends one JSON row per (pair, group) to
``SAVE_DIR/grad_sim.jsonl`` (rank 0; one ``write`` per line, flushed and fsynced); a
process that starts training at update U first drops the rows of updates >= U (rows an
interrupted run measured after its last checkpoint, and the row of U itself, which the
resumed run measures again), so no update appears twice.  Non-finite gradients give
rows with ``"finite": false`` and null values; training goes on.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from fairseq import utils
from fairseq.data import data_utils
from fairseq.distributed import utils as distributed_utils
from fairseq.optim.amp_optimizer import AMPOptimizer

from ..analysis.gradient_similarity import TOTAL, GradientLayout, Similarity, group_gram_matrices, pair_similarities

logger = logging.getLogger(__name__)

GRAD_SIM_FILE = "grad_sim.jsonl"
#: constants mixed into the probe seeds (keep them apart from every other stream of the run)
_ROW_STREAM, _DROPOUT_STREAM = 52361, 91711


@dataclass(frozen=True)
class ProbeSettings:
    """What a probe draws and how it runs."""

    sentences: int = 4096
    seed: int = 1
    dropout: bool = True
    max_tokens: Optional[int] = None
    max_sentences: Optional[int] = None
    #: rows longer than this (in tokens) are never drawn, as training skips them
    max_positions: Optional[int] = None


@dataclass(frozen=True)
class ProbeGradient:
    """The gradient of one probe's mean loss, flattened in the layout's order."""

    lang: str
    probe: int
    flat: torch.Tensor
    sample_size: float
    sentences: int


def probe_rows(language_rows: np.ndarray, sentences: int, seed: int, update: int, lang_index: int,
               probe: int) -> np.ndarray:
    """The rows of one probe: ``sentences`` distinct rows of the language (all of them if fewer),
    drawn by the probe's own generator ``default_rng([seed, 52361, update, lang, probe])``."""
    rng = np.random.default_rng([int(seed), _ROW_STREAM, int(update), int(lang_index), int(probe)])
    count = min(int(sentences), len(language_rows))
    return np.sort(language_rows[rng.choice(len(language_rows), size=count, replace=False)])


def micro_batch_seed(seed: int, update: int, lang_index: int, probe: int, micro_batch: int) -> int:
    """The dropout seed of one micro-batch of one probe (independent of rank and world size)."""
    sequence = np.random.SeedSequence([int(seed), _DROPOUT_STREAM, int(update), int(lang_index), int(probe),
                                       int(micro_batch)])
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def shared_named_parameters(model: nn.Module) -> List[Tuple[str, nn.Parameter]]:
    """theta: the trainable parameters that no single language owns."""
    named = model.shared_parameters() if hasattr(model, "shared_parameters") else model.named_parameters()
    return [(name, p) for name, p in named if p.requires_grad]


def rank_and_world_size() -> Tuple[int, int]:
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return 0, 1
    return distributed_utils.get_data_parallel_rank(), distributed_utils.get_data_parallel_world_size()


def loss_scale_of(optimizer) -> float:
    """The scale fairseq's optimizer multiplies the loss by before backward (1 in fp32)."""
    if isinstance(optimizer, AMPOptimizer):
        return float(optimizer.scaler.get_scale())
    scaler = getattr(optimizer, "scaler", None)
    return float(getattr(scaler, "loss_scale", 1.0) or 1.0)


class training_mode:
    """Context: put ``model`` in train (or eval) mode, then restore every module's own flag."""

    def __init__(self, model: nn.Module, train: bool):
        self.model, self.train = model, train

    def __enter__(self):
        self.flags = [(m, m.training) for m in self.model.modules()]
        self.model.train(self.train)
        return self.model

    def __exit__(self, *exc):
        for module, flag in self.flags:
            module.training = flag
        return False


class GradientSimilarityProbe:
    """Computes the probe gradients of a model on a split and their similarities."""

    def __init__(self, dataset, languages: Sequence[str], settings: ProbeSettings,
                 collate: Optional[Callable[[List[int]], Dict[str, Any]]] = None):
        self.dataset = dataset
        self.languages = list(languages)
        self.settings = settings
        self.collate = collate or (lambda rows: dataset.collater([dataset[int(i)] for i in rows]))
        self._layout: Optional[Tuple[int, GradientLayout]] = None

    def layout(self, named: Sequence[Tuple[str, nn.Parameter]]) -> GradientLayout:
        key = hash(tuple((name, id(p)) for name, p in named))
        if self._layout is None or self._layout[0] != key:
            self._layout = (key, GradientLayout.of((name, p.shape) for name, p in named))
        return self._layout[1]

    def candidate_rows(self, lang_index: int) -> np.ndarray:
        """The language's rows that a probe may draw (those training does not skip for their length)."""
        rows = self.dataset.language_rows(lang_index)
        if self.settings.max_positions is not None:
            rows = rows[self.dataset.sizes[rows] <= self.settings.max_positions]
        return rows

    def micro_batches(self, rows: np.ndarray) -> List[np.ndarray]:
        """The probe's rows in micro-batches of the run's size (similar lengths together, fixed order)."""
        sizes = self.dataset.sizes[rows]
        ordered = rows[np.argsort(sizes, kind="stable")]
        return list(data_utils.batch_by_size(
            ordered, self.dataset.num_tokens, num_tokens_vec=self.dataset.sizes[ordered],
            max_tokens=self.settings.max_tokens, max_sentences=self.settings.max_sentences))

    def probe_gradient(self, model: nn.Module, criterion, named: Sequence[Tuple[str, nn.Parameter]],
                       layout: GradientLayout, update: int, lang_index: int, probe: int,
                       loss_scale: float = 1.0, amp: bool = False) -> ProbeGradient:
        """grad_theta of the probe's mean masked-token loss, summed over this rank's micro-batches
        and all-reduced (call on every rank, inside a forked RNG)."""
        rank, world = rank_and_world_size()
        params = [p for _, p in named]
        device = params[0].device
        rows = probe_rows(self.candidate_rows(lang_index), self.settings.sentences, self.settings.seed,
                          update, lang_index, probe)
        flat = layout.zeros(device)
        sample_size = torch.zeros(1, dtype=torch.float64)
        for j, batch in enumerate(self.micro_batches(rows)):
            if j % world != rank:
                continue
            sample = self.collate(batch)
            if device.type == "cuda":
                sample = utils.move_to_cuda(sample, device=device)
            seed = micro_batch_seed(self.settings.seed, update, lang_index, probe, j)
            torch.manual_seed(seed)
            if device.type == "cuda":
                torch.cuda.manual_seed(seed)
            with torch.autocast(device_type=device.type, enabled=amp):
                loss, size, _ = criterion(model, sample)
            grads = torch.autograd.grad(loss * loss_scale, params, allow_unused=True)
            layout.add_into(flat, grads, 1.0 / loss_scale)
            sample_size += float(size)
        if world > 1:
            packed = torch.cat([flat, sample_size.to(device=device, dtype=flat.dtype)])
            packed = distributed_utils.all_reduce(packed, group=distributed_utils.get_data_parallel_group())
            flat, total = packed[:-1], float(packed[-1])
        else:
            total = float(sample_size)
        if total > 0:
            flat = flat / total
        return ProbeGradient(self.languages[lang_index], probe, flat, total, len(rows))

    def measure(self, model: nn.Module, criterion, update: int, loss_scale: float = 1.0,
                amp: bool = False) -> Tuple[List[ProbeGradient], List[Similarity]]:
        """Two probes per language; similarities of every language pair and within every language."""
        named = shared_named_parameters(model)
        if not named:
            raise ValueError("the model has no trainable shared parameter to compare")
        layout = self.layout(named)
        device = named[0][1].device
        forked = [device] if device.type == "cuda" else []
        probes: List[ProbeGradient] = []
        with torch.random.fork_rng(devices=forked), training_mode(model, self.settings.dropout):
            for lang_index in range(len(self.languages)):
                for probe in (0, 1):
                    probes.append(self.probe_gradient(model, criterion, named, layout, update, lang_index, probe,
                                                      loss_scale, amp))
        grams = group_gram_matrices([p.flat for p in probes], layout)
        return probes, pair_similarities(grams, probe_pairs(len(self.languages)))


def probe_pairs(num_languages: int) -> List[Tuple[int, int]]:
    """Probe index pairs (probe ``2 i + k`` is probe k of language i): every language pair on
    probe 0, then every language's probe 0 against its probe 1."""
    cross = [(2 * i, 2 * j) for i in range(num_languages) for j in range(i + 1, num_languages)]
    within = [(2 * i, 2 * i + 1) for i in range(num_languages)]
    return cross + within


def _finite_or_none(value: float) -> Optional[float]:
    return value if math.isfinite(value) else None


def similarity_rows(probes: Sequence[ProbeGradient], similarities: Sequence[Similarity], update: int,
                    epoch: Optional[int]) -> List[Dict[str, Any]]:
    """One JSON-ready row per (pair, group)."""
    rows = []
    for s in similarities:
        a, b = probes[s.a], probes[s.b]
        rows.append({
            "update": int(update), "epoch": None if epoch is None else int(epoch),
            "pair": f"{a.lang}-{b.lang}", "lang_a": a.lang, "lang_b": b.lang,
            "probe_a": a.probe, "probe_b": b.probe, "group": s.group,
            "cos": _finite_or_none(s.cos), "dot": _finite_or_none(s.dot),
            "sq_norm_a": _finite_or_none(s.sq_norm_a), "sq_norm_b": _finite_or_none(s.sq_norm_b),
            "finite": s.finite, "sentences_a": a.sentences, "sentences_b": b.sentences,
            "tokens_a": a.sample_size, "tokens_b": b.sample_size,
        })
    return rows


def log_key(lang_a: str, lang_b: str) -> str:
    return f"grad_cos_{lang_a}_{lang_b}"


def total_cosines(rows: Sequence[Dict[str, Any]]) -> Dict[str, Optional[float]]:
    """``grad_cos_<a>_<b>`` -> the total group's cosine (None where not finite)."""
    return {log_key(r["lang_a"], r["lang_b"]): r["cos"] for r in rows if r["group"] == TOTAL}


@dataclass
class CheckpointMeasurement:
    """The probe rows of one saved checkpoint."""

    path: str
    update: int
    epoch: Optional[int]
    rows: List[Dict[str, Any]]


def checkpoint_position(state: Dict[str, Any]) -> Tuple[int, Optional[int]]:
    """(updates done, epoch) of a loaded fairseq checkpoint."""
    history = state.get("optimizer_history") or [{}]
    update = int(history[-1].get("num_updates", 0))
    iterator = (state.get("extra_state") or {}).get("train_iterator") or {}
    epoch = iterator.get("epoch")
    return update, None if epoch is None else int(epoch)


def measure_checkpoint(path: str, data: Optional[str] = None, use_cuda: bool = False,
                       **overrides: Any) -> CheckpointMeasurement:
    """The probe rows of a pretraining checkpoint (``xlm_mlm``/``meta_mlm``), measured as the run
    would have at the update it was saved at (same seeds, same probe rows); ``overrides``
    replace :class:`ProbeSettings` fields (``sentences``, ``seed``, ``dropout``, ...)."""
    from fairseq import checkpoint_utils, tasks

    from .. import checkpoint_compat  # noqa: F401  (fairseq checkpoints under torch's weights_only default)

    state = checkpoint_utils.load_checkpoint_to_cpu(path, arg_overrides={"data": data} if data else None)
    cfg = state["cfg"]
    task = tasks.setup_task(cfg.task)
    if not hasattr(task, "gradient_similarity_probe"):
        raise ValueError(f"{path}: task {cfg.task._name} is not a pretraining task (xlm_mlm, meta_mlm)")
    model = task.build_model(cfg.model)
    model.load_state_dict(state["model"], strict=True, model_cfg=cfg.model)
    if use_cuda:
        model = model.cuda()
    criterion = task.build_criterion(cfg.criterion)
    update, epoch = checkpoint_position(state)
    probe = task.gradient_similarity_probe(**overrides)
    probe.dataset.set_epoch(update + 1)
    probes, similarities = probe.measure(model, criterion, update)
    rows = similarity_rows(probes, similarities, update, epoch)
    for row in rows:
        row["checkpoint"] = os.path.basename(path)
    return CheckpointMeasurement(path, update, epoch, rows)

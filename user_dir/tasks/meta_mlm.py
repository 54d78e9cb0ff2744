"""``meta_mlm``: meta-learned language-specific parameters (Wang et al. 2020, Algorithm 1).

Every update of language i (the same i on all data-parallel ranks) runs, once, on the
update's first micro-batch (with ``--update-freq F`` the other F-1 micro-batches only
accumulate theta's gradient):

1. a virtual step theta' = theta - beta grad_theta L_train^i(theta, phi_i) (mean loss);
2. the meta loss V = (1/L) sum_j L_val^j(theta', phi_j), one *meta-dev* batch per
   language, each through its own modules;
3. grad_phi_i V with the second-order term by finite differences (the paper's Eq. 8,
   the default), a Hessian-vector product, exactly (double backprop) or dropped
   (``--meta-second-order``), see :mod:`xlint.analysis.hypergradient`;
4. a step on phi_i with its own optimizer (Adam by default, following theta's
   learning-rate schedule), after averaging grad_phi_i V over data-parallel ranks;
   a non-finite meta-gradient skips the step and is counted;
5. fairseq's usual step on theta with grad_theta L_train(theta, phi^{t+1}) on all the
   update's micro-batches (the parent task's ``train_step``; fairseq's optimizer never
   sees phi).

Stochasticity: the meta step runs on a forked random generator, so the training stream
(the dropout masks of step 5) is the same as without it, and it re-seeds that fork
before every evaluation of L_train^i, so the virtual step, the theta +- eps v passes
and the Hessian-vector pass all see the same dropout masks.

Precision: the meta step always computes in fp32 (autocast off; a half-precision
model is evaluated on fp32 copies of its weights and on phi's fp32 masters), because
a virtual step of size beta ~ 1e-4 or an eps-step rounds back to theta in fp16/bf16.
Step 5 keeps the run's precision.  The fraction of theta's elements that each
perturbation changed is logged (``meta_virtual_changed``, ``meta_fd_changed``).

A theta step that fairseq skips (fp16 gradient overflow, AMP retry) rolls back the
phi step taken for it, so that phi and theta stay in step.

Meta-dev batches come from the ``metadev`` split written by ``xlint preprocess``, held
out from both training and the validation set whose perplexity is reported.  The phi
optimizer's state, phi's fp32 masters (half-precision runs) and the meta-dev stream
positions live in a parameter-free module attached to the model (``model.meta_state``),
so every checkpoint carries them and ``fairseq-train`` resumes exactly.
"""
import ast
import copy
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from fairseq import utils
from fairseq.distributed import utils as distributed_utils
from fairseq.logging import metrics
from fairseq.optim.amp_optimizer import AMPOptimizer
from fairseq.tasks import register_task
from omegaconf import II

from ..analysis.hypergradient import FD_SCHEMES, SECOND_ORDER_MODES, compute_meta_gradient
from ..data.multilingual_split import MultilingualSplit
from .xlm_mlm import XlmMlmConfig, XlmMlmTask, unwrap_model

logger = logging.getLogger(__name__)

META_LOG_KEYS = ("meta_loss", "meta_direct_norm", "meta_second_order_norm", "meta_update_norm",
                 "meta_virtual_changed", "meta_fd_changed",
                 "meta_seconds_virtual_step", "meta_seconds_meta_loss", "meta_seconds_second_order",
                 "meta_seconds_phi_step")
FULL_PRECISION = (torch.float32, torch.float64)


@dataclass
class MetaMlmConfig(XlmMlmConfig):
    meta_second_order: str = field(
        default="finite-difference",
        metadata={"help": "second-order term of grad_phi V: finite-difference (paper, Eq. 8), hvp (exact "
                          "Hessian-vector product by double backward through the virtual step's graph; no "
                          "epsilon; faster, about 1.6x the memory), exact (double backprop through the virtual "
                          "step; small models), first-order (dropped; ablation)"},
    )
    meta_fd_epsilon: float = field(
        default=0.01, metadata={"help": "finite-difference step eps = this / ||grad_theta' V|| (DARTS)"})
    meta_fd_scheme: str = field(
        default="central",
        metadata={"help": "finite difference: central (paper, Eq. 8; two extra passes) or forward "
                          "(one extra pass, reusing the virtual step's backward; less accurate)"})
    meta_beta: float = field(
        default=-1.0, metadata={"help": "virtual-step size beta; <0 follows theta's scheduled lr (paper)"})
    meta_phi_optimizer: str = field(
        default="adam", metadata={"help": "optimizer of the language-specific parameters: adam or sgd"})
    meta_phi_lr: float = field(
        default=-1.0, metadata={"help": "phi learning rate; <0 follows theta's scheduled lr (paper)"})
    meta_phi_adam_betas: str = field(
        default="(0.9, 0.98)", metadata={"help": "Adam betas of the phi optimizer"})
    meta_phi_adam_eps: float = field(default=1e-6, metadata={"help": "Adam epsilon of the phi optimizer"})
    meta_phi_clip_norm: float = field(
        default=0.0, metadata={"help": "clip grad_phi V to this norm before the phi step (0: no clipping)"})
    meta_dev_subset: str = field(
        default="metadev", metadata={"help": "split that provides meta-dev batches (never the validation set)"})
    meta_dev_max_tokens: Optional[int] = field(
        default=None, metadata={"help": "tokens per meta-dev batch (default: --max-tokens); smaller is cheaper"})
    meta_dev_batch_size: Optional[int] = field(
        default=None, metadata={"help": "sentences per meta-dev batch (default: --batch-size)"})
    max_tokens: Optional[int] = II("dataset.max_tokens")
    batch_size: Optional[int] = II("dataset.batch_size")


class MetaLearningState(nn.Module):
    """Parameter-free module whose extra state (phi optimizer and masters, meta-dev streams) is checkpointed."""

    def __init__(self) -> None:
        super().__init__()
        self.phi_optimizer: Optional[torch.optim.Optimizer] = None
        #: fp32 masters of every language's phi, in the task's order (the phi optimizer's parameters)
        self.phi_masters: List[torch.Tensor] = []
        #: whether the masters differ from the model's phi (a half-precision model) and must be saved
        self.save_masters = False
        self.pending_optimizer_state: Optional[Dict[str, Any]] = None
        self.pending_masters: Optional[List[torch.Tensor]] = None
        self.streams: Dict[str, List[int]] = {}  # lang -> [stream epoch, position]

    def get_extra_state(self) -> Dict[str, Any]:
        optimizer_state = (self.phi_optimizer.state_dict() if self.phi_optimizer is not None
                           else self.pending_optimizer_state)
        masters = ([m.detach().clone() for m in self.phi_masters] if self.save_masters and self.phi_masters
                   else self.pending_masters)
        return {"phi_optimizer": optimizer_state, "phi_masters": masters,
                "streams": {k: list(v) for k, v in self.streams.items()}}

    def set_extra_state(self, state: Dict[str, Any]) -> None:
        self.streams = {k: [int(e), int(p)] for k, (e, p) in state.get("streams", {}).items()}
        self.pending_optimizer_state = state.get("phi_optimizer")
        self.pending_masters = state.get("phi_masters")
        if self.phi_optimizer is not None:  # loaded into a running task: apply now
            if self.pending_masters is not None:
                with torch.no_grad():
                    for master, saved in zip(self.phi_masters, self.pending_masters):
                        master.copy_(saved)
                self.pending_masters = None
            if self.pending_optimizer_state is not None:
                self.phi_optimizer.load_state_dict(self.pending_optimizer_state)
                self.pending_optimizer_state = None


@dataclass
class PendingMetaStep:
    """What one phi step changed, kept until fairseq has taken the theta step of that update."""

    update_num: int
    lang: str
    masters: List[torch.Tensor]
    optimizer_state: List[Optional[Dict[str, Any]]]
    streams: Dict[str, List[int]]
    committed: bool = False


@dataclass
class MetaEvaluation:
    """The tensors a meta step differentiates, and how the model is evaluated on them.

    ``substitute`` is None when the model is evaluated on its own parameters (fp32
    models); for half-precision models it maps every parameter name to an fp32
    tensor (copies of theta, phi's masters) that ``torch.func.functional_call`` uses.
    """

    theta: Dict[str, torch.Tensor]
    phi: Dict[str, torch.Tensor]
    substitute: Optional[Dict[str, torch.Tensor]] = None


def data_parallel_rank_and_size() -> Tuple[int, int]:
    """(rank, world size) of the data-parallel group; (0, 1) outside distributed training."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return 0, 1
    return distributed_utils.get_data_parallel_rank(), distributed_utils.get_data_parallel_world_size()


def masked_lm_mean_loss(model: nn.Module, sample: Dict[str, Any], padding_idx: int,
                        params: Optional[Dict[str, torch.Tensor]] = None) -> torch.Tensor:
    """Mean cross-entropy over the masked tokens (fairseq's criterion returns the sum)."""
    masked = sample["target"].ne(padding_idx)
    kwargs = dict(sample["net_input"], masked_tokens=masked)
    if params is None:
        logits = model(**kwargs)[0]
    else:
        logits = torch.func.functional_call(model, params, args=(), kwargs=kwargs)[0]
    targets = sample["target"][masked]
    if targets.numel() == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), targets, reduction="mean")


def seeded(seed: int, loss: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Evaluate ``loss`` with the (forked) generators seeded: the same dropout masks every time."""
    torch.manual_seed(seed)
    return loss()


@register_task("meta_mlm", dataclass=MetaMlmConfig)
class MetaMlmTask(XlmMlmTask):
    """Multilingual MLM whose language-specific parameters are meta-learned (Algorithm 1)."""

    cfg: MetaMlmConfig

    def __init__(self, cfg: MetaMlmConfig, dictionary=None):
        super().__init__(cfg, dictionary)
        if cfg.meta_second_order not in SECOND_ORDER_MODES:
            raise ValueError(f"--meta-second-order must be one of {SECOND_ORDER_MODES}")
        if cfg.meta_fd_scheme not in FD_SCHEMES:
            raise ValueError(f"--meta-fd-scheme must be one of {FD_SCHEMES}")
        if cfg.meta_phi_optimizer not in ("adam", "sgd"):
            raise ValueError("--meta-phi-optimizer must be adam or sgd")
        self._metadev_batches: Dict[int, List[np.ndarray]] = {}
        self._pending: Optional[PendingMetaStep] = None
        self._model: Optional[nn.Module] = None

    # ------------------------------------------------------------------ model

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        phi = [p for lang in self.languages for _, p in model.language_parameters(lang)]
        if not phi:
            raise ValueError("meta_mlm needs language-specific parameters: use --language-specific "
                             "adapter (the paper's +meta adapt), ffn or attn")
        for p in phi:  # fairseq's optimizer only updates requires_grad parameters: theta
            p.requires_grad_(False)
        model.meta_state = MetaLearningState()
        # a checkpoint saved between an abandoned theta step and the next update holds phi as it was
        model.register_state_dict_pre_hook(lambda *args, **kwargs: self._roll_back_uncommitted())
        self._model = model
        logger.info("meta_mlm: %d shared parameters (theta), %s language-specific (phi); second order: %s",
                    sum(p.numel() for _, p in model.shared_parameters()),
                    {lang: sum(p.numel() for _, p in model.language_parameters(lang)) for lang in self.languages},
                    second_order_description(self.cfg))
        return model

    def _all_phi(self, model) -> List[nn.Parameter]:
        return [p for lang in self.languages for _, p in model.language_parameters(lang)]

    def _phi_optimizer(self, model) -> torch.optim.Optimizer:
        """Optimizer over fp32 master copies of every language's phi (created once)."""
        state: MetaLearningState = model.meta_state
        if state.phi_optimizer is None:
            phi = self._all_phi(model)
            # fp32 masters for half-precision models (fp16/bf16 Adam steps underflow); else exact copies
            state.save_masters = any(p.dtype not in FULL_PRECISION for p in phi)
            state.phi_masters = [p.detach().clone().to(p.dtype if p.dtype in FULL_PRECISION else torch.float32)
                                 for p in phi]
            if state.pending_masters is not None:
                saved = state.pending_masters
                if [tuple(m.shape) for m in saved] != [tuple(m.shape) for m in state.phi_masters]:
                    raise ValueError("the checkpoint's phi masters do not match the model's language-specific "
                                     "parameters (different --model-languages or modules?)")
                with torch.no_grad():
                    for master, value in zip(state.phi_masters, saved):
                        master.copy_(value)
                state.pending_masters = None
            if self.cfg.meta_phi_optimizer == "adam":
                betas = tuple(float(b) for b in ast.literal_eval(self.cfg.meta_phi_adam_betas))
                state.phi_optimizer = torch.optim.Adam(state.phi_masters, lr=1.0, betas=betas,
                                                       eps=self.cfg.meta_phi_adam_eps)
            else:
                state.phi_optimizer = torch.optim.SGD(state.phi_masters, lr=1.0)
            if state.pending_optimizer_state is not None:
                state.phi_optimizer.load_state_dict(state.pending_optimizer_state)
                state.pending_optimizer_state = None
        return state.phi_optimizer

    def _masters_of(self, model, lang: str) -> List[torch.Tensor]:
        """phi_lang's fp32 masters, aligned with ``model.language_parameters(lang)``."""
        self._phi_optimizer(model)
        position = {id(p): k for k, p in enumerate(self._all_phi(model))}
        return [model.meta_state.phi_masters[position[id(p)]] for _, p in model.language_parameters(lang)]

    # ------------------------------------------------------------------ meta-dev streams

    def _next_metadev_sample(self, model, lang_index: int, device: torch.device) -> Dict[str, Any]:
        """This rank's next meta-dev batch of a language; streams reshuffle at each pass."""
        split = self.cfg.meta_dev_subset
        if split not in self.datasets:
            self.load_dataset(split)
        dataset: MultilingualSplit = self.datasets[split]
        lang = self.languages[lang_index]
        streams = model.meta_state.streams
        stream_epoch, position = streams.setdefault(lang, [1, 0])
        rank, ranks = data_parallel_rank_and_size()
        batches = self._metadev_stream_batches(dataset, lang_index, stream_epoch)
        if position >= len(batches):
            stream_epoch, position = stream_epoch + 1, 0
            batches = self._metadev_stream_batches(dataset, lang_index, stream_epoch)
        if not batches:
            raise ValueError(f"the {split} split of {lang} has no batch: preprocess with --metadev-size > 0")
        # each rank takes its own batch; a split with fewer batches than ranks wraps around
        indices = batches[(position + rank) % len(batches)]
        streams[lang] = [stream_epoch, position + ranks]
        dataset.set_epoch(stream_epoch)
        sample = dataset.collater([dataset[int(i)] for i in indices])
        return utils.move_to_cuda(sample, device=device) if device.type == "cuda" else sample

    def _metadev_stream_batches(self, dataset: MultilingualSplit, lang_index: int, stream_epoch: int):
        key = (lang_index, stream_epoch)
        if key not in self._metadev_batches:
            self._metadev_batches = {k: v for k, v in self._metadev_batches.items() if k[0] != lang_index}
            rng = np.random.default_rng([self.cfg.seed, 104729, lang_index, stream_epoch])
            self._metadev_batches[key] = self._language_batches(
                dataset, lang_index, rng,
                max_tokens=_first_set(self.cfg.meta_dev_max_tokens, self.cfg.max_tokens),
                max_sentences=_first_set(self.cfg.meta_dev_batch_size, self.cfg.batch_size),
                max_positions=self.cfg.tokens_per_sample, ignore_invalid_inputs=True,
                required_batch_size_multiple=1)
        return self._metadev_batches[key]

    # ------------------------------------------------------------------ the update

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        inner = unwrap_model(model)
        lang_index = sample.get("language", -1)
        if lang_index < 0:
            raise ValueError("meta_mlm needs single-language batches (use the task's own batch iterator)")
        stats: Dict[str, float] = {}
        if self._grad_sim_interval > 0:  # before the meta step: the parameters after update_num updates
            self.measure_gradient_similarity(model, criterion, optimizer, update_num)
        # the first micro-batch of an update is the one that finds theta's gradients cleared
        if not any(p.grad is not None for _, p in inner.shared_parameters()):
            if self._pending is not None and self._pending.update_num == update_num:
                self._roll_back()  # the last attempt at this update took no theta step
            stats = self.meta_step(inner, sample, lang_index, optimizer.get_lr(), ignore_grad, update_num)
        loss, sample_size, logging_output = super().train_step(
            sample, model, criterion, optimizer, update_num, ignore_grad)
        logging_output.update(stats)
        return loss, sample_size, logging_output

    def optimizer_step(self, optimizer, model, update_num):
        scale_before = _loss_scale(optimizer)
        super().optimizer_step(optimizer, model, update_num)
        if self._pending is not None:
            scale_after = _loss_scale(optimizer)
            # AMP steps through an overflow (its scaler skips the step and lowers the scale)
            self._pending.committed = not (scale_before is not None and scale_after < scale_before)

    def meta_evaluation(self, model, lang: str) -> MetaEvaluation:
        """theta and phi_lang for the meta step: the model's own tensors, or fp32 copies of a half model."""
        theta = {name: p for name, p in model.shared_parameters() if p.requires_grad}
        phi = dict(model.language_parameters(lang))
        if all(p.dtype in FULL_PRECISION for p in model.parameters()):
            return MetaEvaluation(theta, phi)
        substitute = {name: p.detach().to(torch.float32, copy=True) for name, p in model.named_parameters()}
        for lang_j in self.languages:
            for (name, _), master in zip(model.language_parameters(lang_j), self._masters_of(model, lang_j)):
                substitute[name] = master
        for name in theta:
            substitute[name].requires_grad_(True)
        return MetaEvaluation({name: substitute[name] for name in theta}, {name: substitute[name] for name in phi},
                              substitute)

    def meta_step(self, model, sample, lang_index: int, scheduled_lr: float, ignore_grad: bool,
                  update_num: int = 0) -> Dict[str, float]:
        """Update phi_i by one meta step; returns the logging statistics."""
        cfg = self.cfg
        lang = self.languages[lang_index]
        pad = self.source_dictionary.pad()
        beta = cfg.meta_beta if cfg.meta_beta >= 0 else scheduled_lr
        device = sample["target"].device
        streams_before = copy.deepcopy(model.meta_state.streams)
        metadev = [self._next_metadev_sample(model, j, device) for j in range(len(self.languages))]
        num_languages = len(self.languages)
        evaluation = self.meta_evaluation(model, lang)

        def loss_on(batch, params):
            if evaluation.substitute is not None:
                params = {**evaluation.substitute, **(params or {})}
            return masked_lm_mean_loss(model, batch, pad, params)

        forked = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=forked), torch.autocast(device_type=device.type, enabled=False):
            seed = int(torch.randint(0, 2 ** 62, ()))  # from the training stream's state, which the fork restores

            def train_loss(params=None):
                return seeded(seed, lambda: loss_on(sample, params))

            def meta_term(j):
                return lambda params=None: seeded(seed + 1 + j, lambda: loss_on(metadev[j], params)) / num_languages

            result = compute_meta_gradient(evaluation.theta, evaluation.phi, train_loss,
                                           [meta_term(j) for j in range(num_languages)],
                                           beta=beta, mode=cfg.meta_second_order,
                                           epsilon_scale=cfg.meta_fd_epsilon, fd_scheme=cfg.meta_fd_scheme)
        clock_start = _synchronized_time(device)
        grads = self._average_over_ranks(result.grads, weight=0.0 if ignore_grad else 1.0)
        update_norm, skipped = 0.0, 0
        if grads is None:
            skipped = 1
        else:
            update_norm = self._phi_step(model, lang, grads, cfg.meta_phi_lr if cfg.meta_phi_lr >= 0 else scheduled_lr,
                                         update_num, streams_before)
        seconds = dict(result.seconds, phi_step=_synchronized_time(device) - clock_start)
        stats = {
            "meta_steps": 1, "meta_skipped": skipped,
            "meta_loss": float(result.meta_loss),
            "meta_direct_norm": float(result.direct_norm), "meta_second_order_norm": float(result.second_order_norm),
            "meta_update_norm": update_norm,
        }
        if result.virtual_step_changed is not None:
            stats["meta_virtual_changed"] = float(result.virtual_step_changed)
        if result.fd_step_changed is not None:
            stats["meta_fd_changed"] = float(result.fd_step_changed)
        for phase in ("virtual_step", "meta_loss", "second_order", "phi_step"):
            stats[f"meta_seconds_{phase}"] = seconds.get(phase, 0.0)
        for key in ("meta_loss", "meta_direct_norm", "meta_second_order_norm"):
            if not math.isfinite(stats[key]):
                stats[key] = 0.0
        return stats

    def _average_over_ranks(self, grads: List[torch.Tensor], weight: float) -> Optional[List[torch.Tensor]]:
        """Average grad_phi V over the ranks that had a real batch; None if non-finite or none had."""
        dtype = torch.float64 if grads[0].dtype == torch.float64 else torch.float32
        flat = torch.cat([g.reshape(-1).to(dtype) for g in grads] + [grads[0].new_tensor([weight], dtype=dtype)])
        flat[:-1].mul_(weight)
        if data_parallel_rank_and_size()[1] > 1:
            flat = distributed_utils.all_reduce(flat, group=distributed_utils.get_data_parallel_group())
        total_weight = float(flat[-1])
        if total_weight == 0 or not bool(torch.isfinite(flat).all()):
            return None
        flat = flat[:-1] / total_weight
        out, offset = [], 0
        for g in grads:
            out.append(flat[offset: offset + g.numel()].view_as(g))
            offset += g.numel()
        return out

    def _phi_step(self, model, lang: str, grads: List[torch.Tensor], lr: float, update_num: int,
                  streams_before: Dict[str, List[int]]) -> float:
        optimizer = self._phi_optimizer(model)
        masters = self._masters_of(model, lang)
        self._pending = PendingMetaStep(
            update_num=update_num, lang=lang, masters=[m.detach().clone() for m in masters],
            optimizer_state=[copy.deepcopy(optimizer.state[m]) if m in optimizer.state else None for m in masters],
            streams=streams_before)
        if self.cfg.meta_phi_clip_norm > 0:
            norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
            scale = min(1.0, self.cfg.meta_phi_clip_norm / (float(norm) + 1e-6))
            grads = [g * scale for g in grads]
        for master, g in zip(masters, grads):
            master.grad = g.to(device=master.device, dtype=master.dtype)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self._copy_masters_to_model(model, lang)
        return float(torch.sqrt(sum(((m - b) ** 2).sum() for m, b in zip(masters, self._pending.masters))))

    def _copy_masters_to_model(self, model, lang: str) -> None:
        with torch.no_grad():
            for (_, p), master in zip(model.language_parameters(lang), self._masters_of(model, lang)):
                p.copy_(master)

    def _roll_back(self) -> None:
        """Undo the pending phi step: masters, the optimizer's state of them, phi and the meta-dev streams."""
        pending, model = self._pending, self._model
        self._pending = None
        if pending is None or model is None:
            return
        optimizer = self._phi_optimizer(model)
        masters = self._masters_of(model, pending.lang)
        with torch.no_grad():
            for master, saved in zip(masters, pending.masters):
                master.copy_(saved)
        for master, state in zip(masters, pending.optimizer_state):
            if state is None:
                optimizer.state.pop(master, None)
            else:
                optimizer.state[master] = state
        self._copy_masters_to_model(model, pending.lang)
        model.meta_state.streams = pending.streams
        logger.info("meta_mlm: theta's step of update %d was skipped; its phi step is rolled back",
                    pending.update_num)

    def _roll_back_uncommitted(self) -> None:
        if self._pending is not None and not self._pending.committed:
            self._roll_back()

    # ------------------------------------------------------------------ logging

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        steps = sum(log.get("meta_steps", 0) for log in logging_outputs)
        if steps == 0:
            return
        metrics.log_scalar_sum("meta_skipped", sum(log.get("meta_skipped", 0) for log in logging_outputs),
                               priority=900, round=0)
        for key in META_LOG_KEYS:
            if not any(key in log for log in logging_outputs):
                continue
            mean = sum(log.get(key, 0.0) for log in logging_outputs) / steps
            if key == "meta_loss":
                mean /= math.log(2)  # base 2, like fairseq's loss
            metrics.log_scalar(key, mean, steps, priority=900, round=6 if ("norm" in key or "changed" in key) else 4)


def second_order_description(cfg: MetaMlmConfig) -> str:
    if cfg.meta_second_order == "finite-difference":
        return f"finite-difference ({cfg.meta_fd_scheme}, eps = {cfg.meta_fd_epsilon} / ||v||)"
    return cfg.meta_second_order


def _loss_scale(optimizer) -> Optional[float]:
    """The AMP grad scaler's current scale, None for other optimizers."""
    if isinstance(optimizer, AMPOptimizer):
        return float(optimizer.scaler.get_scale())
    return None


def _synchronized_time(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _first_set(*values):
    return next((v for v in values if v is not None), None)

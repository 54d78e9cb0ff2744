"""``meta_mlm``: meta-learned language-specific parameters (Wang et al. 2020, Algorithm 1).

Every training batch of language i (the same i on all data-parallel ranks) runs:

1. a virtual step theta' = theta - beta grad_theta L_train^i(theta, phi_i) (mean loss);
2. the meta loss V = (1/L) sum_j L_val^j(theta', phi_j), one *meta-dev* batch per
   language, each through its own modules;
3. grad_phi_i V with the second-order term by finite differences (default, the
   paper's Eq. 8), exactly (double backprop) or dropped (``--meta-second-order``),
   see :mod:`.hypergradient`;
4. a step on phi_i with its own optimizer (Adam by default, following theta's
   learning-rate schedule), after averaging grad_phi_i V over data-parallel ranks;
   a non-finite meta-gradient skips the step and is counted;
5. fairseq's usual step on theta with grad_theta L_train(theta, phi^{t+1}) on the same
   batch (the parent task's ``train_step``; fairseq's optimizer never sees phi).

Meta-dev batches come from the ``metadev`` split written by ``xlint preprocess``, held
out from both training and the validation set whose perplexity is reported.  The phi
optimizer's state and the meta-dev stream positions live in a parameter-free module
attached to the model (``model.meta_state``), so every checkpoint carries them and
``fairseq-train`` resumes exactly.
"""
import ast
import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from fairseq import utils
from fairseq.data import data_utils
from fairseq.distributed import utils as distributed_utils
from fairseq.logging import metrics
from fairseq.optim.amp_optimizer import AMPOptimizer
from fairseq.tasks import register_task
from omegaconf import II

from .hypergradient import FD_SCHEMES, SECOND_ORDER_MODES, compute_meta_gradient
from .xlm_mlm import MultilingualSplit, XlmMlmConfig, XlmMlmTask

logger = logging.getLogger(__name__)

META_LOG_KEYS = ("meta_loss", "meta_direct_norm", "meta_second_order_norm", "meta_update_norm",
                 "meta_seconds_virtual_step", "meta_seconds_meta_loss", "meta_seconds_second_order",
                 "meta_seconds_phi_step")


@dataclass
class MetaMlmConfig(XlmMlmConfig):
    meta_second_order: str = field(
        default="finite-difference",
        metadata={"help": "second-order term of grad_phi V: finite-difference (paper, Eq. 8), "
                          "exact (double backprop; small models), first-order (dropped; ablation)"},
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
    """Parameter-free module whose extra state (phi optimizer, meta-dev streams) is checkpointed."""

    def __init__(self) -> None:
        super().__init__()
        self.phi_optimizer: Optional[torch.optim.Optimizer] = None
        self.pending_optimizer_state: Optional[Dict[str, Any]] = None
        self.streams: Dict[str, List[int]] = {}  # lang -> [stream epoch, position]

    def get_extra_state(self) -> Dict[str, Any]:
        optimizer_state = (self.phi_optimizer.state_dict() if self.phi_optimizer is not None
                           else self.pending_optimizer_state)
        return {"phi_optimizer": optimizer_state, "streams": {k: list(v) for k, v in self.streams.items()}}

    def set_extra_state(self, state: Dict[str, Any]) -> None:
        self.streams = {k: [int(e), int(p)] for k, (e, p) in state.get("streams", {}).items()}
        self.pending_optimizer_state = state.get("phi_optimizer")
        if self.phi_optimizer is not None and self.pending_optimizer_state is not None:
            self.phi_optimizer.load_state_dict(self.pending_optimizer_state)
            self.pending_optimizer_state = None


def data_parallel_rank_and_size() -> Tuple[int, int]:
    """(rank, world size) of the data-parallel group; (0, 1) outside distributed training."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return 0, 1
    return distributed_utils.get_data_parallel_rank(), distributed_utils.get_data_parallel_world_size()


def unwrap_model(model: nn.Module) -> nn.Module:
    """The fairseq model inside data-parallel wrappers."""
    while hasattr(model, "module"):
        model = model.module
    return model


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
        self._phi_master: List[torch.Tensor] = []

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
        logger.info("meta_mlm: %d shared parameters (theta), %s language-specific (phi)",
                    sum(p.numel() for _, p in model.shared_parameters()),
                    {lang: sum(p.numel() for _, p in model.language_parameters(lang)) for lang in self.languages})
        return model

    def _phi_optimizer(self, model) -> torch.optim.Optimizer:
        """Optimizer over fp32 master copies of every language's phi (created once)."""
        state: MetaLearningState = model.meta_state
        if state.phi_optimizer is None:
            phi = [p for lang in self.languages for _, p in model.language_parameters(lang)]
            # fp32 masters for half-precision models (fp16/bf16 Adam steps underflow); else exact copies
            self._phi_master = [p.detach().clone().to(torch.float32 if p.dtype in (torch.float16, torch.bfloat16)
                                                      else p.dtype) for p in phi]
            if self.cfg.meta_phi_optimizer == "adam":
                betas = tuple(float(b) for b in ast.literal_eval(self.cfg.meta_phi_adam_betas))
                state.phi_optimizer = torch.optim.Adam(self._phi_master, lr=1.0, betas=betas,
                                                       eps=self.cfg.meta_phi_adam_eps)
            else:
                state.phi_optimizer = torch.optim.SGD(self._phi_master, lr=1.0)
            if state.pending_optimizer_state is not None:
                state.phi_optimizer.load_state_dict(state.pending_optimizer_state)
                state.pending_optimizer_state = None
        return state.phi_optimizer

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
        with torch.autocast(device_type=sample["target"].device.type, enabled=isinstance(optimizer, AMPOptimizer)):
            stats = self.meta_step(inner, sample, lang_index, optimizer.get_lr(), ignore_grad)
        loss, sample_size, logging_output = super().train_step(
            sample, model, criterion, optimizer, update_num, ignore_grad)
        logging_output.update(stats)
        return loss, sample_size, logging_output

    def meta_step(self, model, sample, lang_index: int, scheduled_lr: float, ignore_grad: bool) -> Dict[str, float]:
        """Update phi_i by one meta step; returns the logging statistics."""
        cfg = self.cfg
        lang = self.languages[lang_index]
        pad = self.source_dictionary.pad()
        beta = cfg.meta_beta if cfg.meta_beta >= 0 else scheduled_lr
        phi = dict(model.language_parameters(lang))
        theta = {name: p for name, p in model.shared_parameters() if p.requires_grad}
        device = next(iter(theta.values())).device
        metadev = [self._next_metadev_sample(model, j, device) for j in range(len(self.languages))]
        num_languages = len(self.languages)

        def train_loss(params=None):
            return masked_lm_mean_loss(model, sample, pad, params)

        def meta_term(j):
            return lambda params=None: masked_lm_mean_loss(model, metadev[j], pad, params) / num_languages

        with _math_attention_if(cfg.meta_second_order == "exact"):
            result = compute_meta_gradient(theta, phi, train_loss, [meta_term(j) for j in range(num_languages)],
                                           beta=beta, mode=cfg.meta_second_order,
                                           epsilon_scale=cfg.meta_fd_epsilon, fd_scheme=cfg.meta_fd_scheme)
        started = time.perf_counter()
        grads = self._average_over_ranks(result.grads, weight=0.0 if ignore_grad else 1.0)
        update_norm, skipped = 0.0, 0
        if grads is None:
            skipped = 1
        else:
            update_norm = self._phi_step(model, phi, grads, cfg.meta_phi_lr if cfg.meta_phi_lr >= 0 else scheduled_lr)
        seconds = dict(result.seconds, phi_step=time.perf_counter() - started)
        stats = {
            "meta_steps": 1, "meta_skipped": skipped,
            "meta_loss": float(result.meta_loss) if math.isfinite(float(result.meta_loss)) else 0.0,
            "meta_direct_norm": float(result.direct_norm), "meta_second_order_norm": float(result.second_order_norm),
            "meta_update_norm": update_norm,
        }
        for phase in ("virtual_step", "meta_loss", "second_order", "phi_step"):
            stats[f"meta_seconds_{phase}"] = seconds.get(phase, 0.0)
        for key in ("meta_direct_norm", "meta_second_order_norm"):
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

    def _phi_step(self, model, phi: Dict[str, torch.Tensor], grads: List[torch.Tensor], lr: float) -> float:
        optimizer = self._phi_optimizer(model)
        all_phi = [p for lang in self.languages for _, p in model.language_parameters(lang)]
        position = {id(p): k for k, p in enumerate(all_phi)}
        masters = [self._phi_master[position[id(p)]] for p in phi.values()]
        if self.cfg.meta_phi_clip_norm > 0:
            norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
            scale = min(1.0, self.cfg.meta_phi_clip_norm / (float(norm) + 1e-6))
            grads = [g * scale for g in grads]
        for master, g in zip(masters, grads):
            master.grad = g.to(master.device)
        for group in optimizer.param_groups:
            group["lr"] = lr
        before = [m.detach().clone() for m in masters]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            for p, master in zip(phi.values(), masters):
                p.copy_(master)
        return float(torch.sqrt(sum(((m - b) ** 2).sum() for m, b in zip(masters, before))))

    # ------------------------------------------------------------------ logging

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        steps = sum(log.get("meta_steps", 0) for log in logging_outputs)
        if steps == 0:
            return
        metrics.log_scalar_sum("meta_skipped", sum(log.get("meta_skipped", 0) for log in logging_outputs),
                               priority=900, round=0)
        for key in META_LOG_KEYS:
            mean = sum(log.get(key, 0.0) for log in logging_outputs) / steps
            if key == "meta_loss":
                mean /= math.log(2)  # base 2, like fairseq's loss
            metrics.log_scalar(key, mean, steps, priority=900, round=6 if "norm" in key else 4)


def _first_set(*values):
    return next((v for v in values if v is not None), None)


def _math_attention_if(condition: bool):
    """Double backprop needs the math SDPA kernel (the fused CPU and GPU kernels have no double backward)."""
    if not condition:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])

"""``l0_hard_concrete``: the masked-LM loss of a frozen model under learned hard-concrete masks,
plus an L0 penalty (Wang et al. 2020, Sec. 3.3; Louizos et al. 2017).

The gated parameter groups (:mod:`..modules.gate_layout`) of the frozen pretrained model are
masked, θ̃ = θ ⊙ z with z drawn from :class:`~..modules.hard_concrete.HardConcreteGate`
(in validation, the deterministic test-time gate), and the objective per masked token is::

    L = MLM(θ̃) + λ · R                                      (fixed-penalty form)
    L = MLM(θ̃) + λ · R + μ · (R − (1 − s*))                (target-sparsity form, --target-sparsity s*)

with ``R`` the expected L0 norm ``E‖z‖₀ = Σ_g P(z_g ≠ 0)`` normalised by ``--l0-normalization``:
``gates`` (default: divided by the number of gates, the expected fraction of open groups),
``parameters`` (each gate weighted by the number of parameters it masks, divided by their
total: the expected fraction of kept parameters) or ``none`` (the expected count, as in Louizos
et al.).  The Lagrange multiplier ``μ`` (a criterion parameter, so that fairseq's optimizer
steps it and the checkpoint stores it) is raised by gradient *ascent*: its gradient is
reversed on the way back (:class:`GradientReversal`), so that the optimizer's descent step
raises ``μ`` while the expected density ``R`` exceeds the target density ``1 − s*`` (sparsity
below target) and lowers it once the target is passed.  This is the min-max of Wang, Wohlwend &
Lei (2019, Structured pruning of LLMs) with a linear term.

The criterion's loss is a sum over the batch (as fairseq's): the penalty is multiplied by the
batch's ``sample_size`` (masked tokens), so that after fairseq divides by the summed sample size
the gradient is that of the per-token objective above, whatever ``--update-freq`` and the number
of data-parallel workers.

Weight decay must be 0: fairseq's optimizer would decay ``log α`` towards 0 and ``μ`` towards
0, neither of which is part of the objective; the ``l0_mlm`` task refuses it at the first
update.  The criterion needs the ``l0_mlm`` task, which loads and freezes the pretrained model
and gives the criterion its gate layout.  The layout and options are saved with the gates
(``_extra_state``), and resuming with another layout fails with a message.
"""
import math
from dataclasses import dataclass, field
from typing import Dict, Optional

import torch
import torch.nn as nn
from fairseq import modules, utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.logging import metrics
from omegaconf import II

from ..modules.gate_layout import ATTENTION_GATES, FFN_GATES, GateLayout
from ..modules.hard_concrete import BETA, GAMMA, ZETA, HardConcreteGate

NORMALIZATIONS = ("gates", "parameters", "none")


@dataclass
class L0HardConcreteConfig(FairseqDataclass):
    l0_lambda: float = field(default=0.1, metadata={"help": "λ: weight of the (normalised) expected L0 norm"})
    l0_normalization: ChoiceEnum(NORMALIZATIONS) = field(
        default="gates",
        metadata={"help": "R = E||z||_0 divided by the number of gates (gates), weighted by and divided by the "
                          "parameters each gate masks (parameters), or the raw expected count (none)"})
    target_sparsity: Optional[float] = field(
        default=None,
        metadata={"help": "target sparsity s* in [0, 1): adds mu * (R - (1 - s*)) with a Lagrange multiplier mu "
                          "raised by gradient ascent (needs a normalised R)"})
    multiplier_init: float = field(default=0.0, metadata={"help": "initial Lagrange multiplier mu"})
    attention_gates: ChoiceEnum(ATTENTION_GATES) = field(
        default="row", metadata={"help": "attention gate groups: one per output row of q/k/v/out_proj (row), "
                                         "per head (head), per matrix (matrix)"})
    ffn_gates: ChoiceEnum(FFN_GATES) = field(
        default="row", metadata={"help": "FFN gate groups: one per output row of fc1/fc2 (row), per hidden "
                                         "neuron (neuron), per matrix (matrix)"})
    log_alpha_init: float = field(
        default=0.0, metadata={"help": "mean of the initial log alpha (0: P(z!=0)=0.83, deterministic gate 1/2; "
                                       "a common offset would dominate the cosines of the analysis)"})
    log_alpha_init_std: float = field(default=0.01, metadata={"help": "std of the initial log alpha"})
    tpu: bool = II("common.tpu")


class GradientReversal(torch.autograd.Function):
    """Identity forward, negated gradient backward: descent on the input becomes ascent."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad


def _unwrap(model: nn.Module) -> nn.Module:
    while hasattr(model, "module"):
        model = model.module
    return model


@register_criterion("l0_hard_concrete", dataclass=L0HardConcreteConfig)
class L0HardConcreteCriterion(FairseqCriterion):
    """Masked LM on the hard-concrete-masked frozen model + L0 penalty; see the module docstring."""

    def __init__(self, cfg: L0HardConcreteConfig, task):
        super().__init__(task)
        if not hasattr(task, "gate_layout"):
            raise ValueError("--criterion l0_hard_concrete needs --task l0_mlm (the frozen pretrained model "
                             "and its gate layout)")
        if cfg.target_sparsity is not None:
            if not 0.0 <= cfg.target_sparsity < 1.0:
                raise ValueError(f"--target-sparsity must be in [0, 1), got {cfg.target_sparsity}")
            if cfg.l0_normalization == "none":
                raise ValueError("--target-sparsity needs a normalised L0 term: --l0-normalization gates "
                                 "or parameters")
        if cfg.l0_lambda < 0:
            raise ValueError(f"--l0-lambda must be >= 0, got {cfg.l0_lambda}")
        self.cfg = cfg
        self.tpu = cfg.tpu
        self.attention_gates, self.ffn_gates = str(cfg.attention_gates), str(cfg.ffn_gates)
        self.normalization = str(cfg.l0_normalization)
        self.layout: GateLayout = task.gate_layout(self.attention_gates, self.ffn_gates)
        self.gates = HardConcreteGate(self.layout.num_gates, cfg.log_alpha_init, cfg.log_alpha_init_std,
                                      GAMMA, ZETA, BETA)
        weights = self.layout.params_per_gate()
        self.register_buffer("gate_weights", (weights / weights.sum()).float(), persistent=False)
        if cfg.target_sparsity is not None:
            self.multiplier = nn.Parameter(torch.tensor([float(cfg.multiplier_init)]))
        else:
            self.multiplier = None
        self._frozen: Optional[Dict[str, torch.Tensor]] = None
        self._frozen_of: Optional[int] = None

    # ------------------------------------------------------------------ checkpointed layout

    def get_extra_state(self) -> dict:
        return {"layout": self.layout.spec(), "options": self._options()}

    def set_extra_state(self, state: dict) -> None:
        if state.get("layout") != self.layout.spec():
            raise ValueError("the checkpoint's gates have another layout (model or --attention-gates/--ffn-gates "
                             "differ); start a new --save-dir")

    def _options(self) -> dict:
        return {"attention_gates": self.attention_gates, "ffn_gates": self.ffn_gates,
                "l0_normalization": self.normalization, "gamma": GAMMA, "zeta": ZETA, "beta": BETA}

    # ------------------------------------------------------------------ the objective

    def normalized_l0(self) -> torch.Tensor:
        """``R``: the expected L0 norm under ``--l0-normalization``."""
        prob = self.gates.prob_nonzero()
        if self.normalization == "gates":
            return prob.mean()
        if self.normalization == "parameters":
            return (prob * self.gate_weights.to(prob.dtype)).sum()
        return prob.sum()

    def penalty(self) -> torch.Tensor:
        """Per-token penalty: ``λ R`` (+ ``μ (R − (1 − s*))`` with the multiplier's gradient reversed)."""
        r = self.normalized_l0()
        total = self.cfg.l0_lambda * r
        if self.multiplier is not None:
            mu = GradientReversal.apply(self.multiplier).squeeze(0)
            total = total + mu * (r - (1.0 - self.cfg.target_sparsity))
        return total

    def _frozen_parameters(self, model: nn.Module) -> Dict[str, torch.Tensor]:
        if self._frozen is None or self._frozen_of != id(model):
            params = dict(model.named_parameters())
            names = [t.weight for b in self.layout.blocks for t in b.targets]
            names += [t.bias for b in self.layout.blocks for t in b.targets if t.bias is not None]
            missing = [n for n in names if n not in params]
            if missing:
                raise ValueError(f"the model has no parameter {missing[0]} of the gate layout")
            self._frozen, self._frozen_of = {n: params[n] for n in names}, id(model)
        return self._frozen

    def forward(self, model, sample, reduce=True):
        inner = _unwrap(model)
        z = self.gates()  # a sample in training, the deterministic gate in validation
        masked_params = self.layout.masked_parameters(self._frozen_parameters(inner), z)

        masked_tokens = sample["target"].ne(self.padding_idx)
        sample_size = masked_tokens.int().sum()
        if self.tpu:
            masked_tokens = None
        elif masked_tokens.device == torch.device("cpu"):
            if not masked_tokens.any():
                masked_tokens = None
        else:
            masked_tokens = torch.where(masked_tokens.any(), masked_tokens, masked_tokens.new([True]))
        logits = torch.func.functional_call(
            inner, masked_params, args=(), kwargs={**sample["net_input"], "masked_tokens": masked_tokens})[0]
        targets = inner.get_targets(sample, [logits])
        if masked_tokens is not None:
            targets = targets[masked_tokens]
        mlm = modules.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), reduction="sum",
                                    ignore_index=self.padding_idx)
        r = self.normalized_l0()
        if self.training:
            loss = mlm + sample_size.to(mlm.dtype) * self.penalty()
        else:  # validation: the MLM loss of the model under the test-time gates
            loss = mlm
        with torch.no_grad():
            open_fraction = self.gates.binarized().float().mean()
        logging_output = {
            "loss": loss.data,
            "mlm_loss": mlm.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample["nsentences"],
            "sample_size": sample_size,
            "l0_norm": r.detach(),
            "open_fraction": open_fraction,
            "l0_terms": 1,
        }
        if self.multiplier is not None:
            logging_output["multiplier"] = self.multiplier.detach().squeeze(0)
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        def total(key):
            value = sum(log.get(key, 0) for log in logging_outputs)
            return float(value.item() if torch.is_tensor(value) else value)

        sample_size = total("sample_size")
        terms = max(total("l0_terms"), 1.0)
        metrics.log_scalar("loss", total("loss") / max(sample_size, 1) / math.log(2), sample_size, round=3)
        metrics.log_scalar("mlm_loss", total("mlm_loss") / max(sample_size, 1) / math.log(2), sample_size, round=3)
        metrics.log_derived("ppl", lambda meters: utils.get_perplexity(meters["mlm_loss"].avg))
        metrics.log_scalar("l0_norm", total("l0_norm") / terms, terms, round=4)
        metrics.log_scalar("open_fraction", total("open_fraction") / terms, terms, round=4)
        if any("multiplier" in log for log in logging_outputs):
            metrics.log_scalar("multiplier", total("multiplier") / terms, terms, round=4)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True

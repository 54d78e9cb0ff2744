"""Fine-tuning slow and fast (Guo et al. 2023) inside a fairseq task: sets, loss feed, multipliers.

The method multiplies the learning rate of weight sets by ``K`` (Eq. 1-3): the numeric pieces
are :mod:`..analysis.phase_detector` (P1/P2, ``phi``, ``R``), :mod:`..analysis.slow_fast_sets`
(the sets and their depth rule) and :mod:`..analysis.slow_fast_policy` (``K``, the presets, the
Policy IV switch).  This module wires them into fairseq:

1. :meth:`SlowFastController.tag_parameters` (at ``build_model``) finds each parameter's layer
   and sublayer (:func:`locate_parameters`) and tags it with the policies whose
   sets contain it (``param.param_group``, e.g. ``fsf.I+fsf.II``; the task head keeps ``head``),
   so that ``--optimizer xlint_adam`` (:mod:`..optim.adam_with_head_lr`) gives every combination
   its own parameter group.
2. :meth:`SlowFastController.before_update` (at ``optimizer_step``, before the step) computes
   the phase and ``R`` from the losses of the updates before this one, sets each group's
   multiplier on the optimizer (which multiplies the scheduled rate: any ``--lr-scheduler``)
   and logs them.
3. :meth:`SlowFastController.observe_logging_outputs` (at ``reduce_metrics`` of a training
   update) feeds the detector the update's loss.

**The loss the detector sees**: ``sum(loss) / sum(sample_size)`` over the update's logging
outputs, in nats.  xlint's criteria return summed cross-entropies in nats (``F.cross_entropy``,
``reduction="sum"``) with ``sample_size`` = examples (``xlint_classification``), windows
(``xlint_qa``: the mean of the start and end cross-entropies per window, Hugging Face's loss
per feature) and labelled words (``xlint_tagging``: per first subword, Hugging Face's loss per
labelled token); the ratio is the per-update mean training loss of a Hugging Face-style
fine-tuning, on which the paper's threshold 0.1 is calibrated (fairseq's logged ``loss`` is the
same in bits).  ``reduce_metrics`` runs once per *successful* update (not for updates skipped
by fp16 overflow or AMP retries), after fairseq has gathered the logging outputs of all
data-parallel workers, so every rank pushes the same loss and is in the same phase.  An update
whose sample size is 0 pushes nothing.  (BMUF, which syncs statistics only every few updates,
and TPUs, which reduce them once per log interval, are not supported.)

**Policy IV probes** (``auto``): :func:`top_layers_cka` measures the top two layers' linear CKA
between the current and a frozen pretrained copy on the current batch; the task calls it when
:meth:`SlowFastController.wants_cka_probe` says so and passes the value to
:meth:`SlowFastController.observe_cka` (the frozen copy is kept by the task:
:class:`..tasks.finetune_base.FinetuneTask`).

**Checkpoints**: the controller's state (detector, Policy IV switch) is saved inside
``xlint_adam``'s state (fairseq restores optimizer state on resume, not task state), so a
resumed run equals an uninterrupted one; ``--reset-optimizer`` resets it too.

**Precision**: ``--amp``, ``--bf16``, ``--memory-efficient-fp16`` and ``--fp16
--fp16-no-flatten-grads`` keep the groups; plain ``--fp16`` flattens them into one and is
refused at the first update (:data:`FLAT_FP16_MESSAGE`).

**Log** (``train_inner`` lines, averages over the log interval): ``fsf_loss`` (what the detector
was fed, nats), ``fsf_p1`` (fraction of the
interval's updates in P1), ``fsf_phi``, ``fsf_R``, ``fsf_policy_iv`` (1 if Policy IV is on),
``fsf_K_<set>`` per set, ``fsf_lr`` (the scheduled rate at the step) and ``fsf_lr_<group>``
(the effective rate of each optimizer group: ``body``, ``head``, ``I``, ``I_II``, ...).

**Integration** (:class:`SlowFastTaskMixin`): ``class T(SlowFastTaskMixin, SomeTask)`` with a
config that also inherits :class:`SlowFastConfig`; xlint's fine-tuning tasks
(:class:`..tasks.finetune_base.FinetuneTask`) do, and ``xlint finetune --method`` sets the preset.

Layers and sublayers come from the layer interface of both model families,
:mod:`..models.layer_groups` (``xlm_adapter`` and fairseq's RoBERTa/XLM-R, ``xlint_roberta``):
see :func:`locate_parameters`.
"""

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple

import torch
from fairseq import utils
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.logging import metrics

from ..analysis.cka import linear_cka
from ..analysis.phase_detector import DEFAULT_POWER, DEFAULT_THRESHOLD, DEFAULT_WINDOW, PHASE_FAST, PhaseDetector
from ..analysis.slow_fast_policy import (
    DEFAULT_C1,
    DEFAULT_C2,
    POLICY_IV_MODES,
    PRESETS,
    PolicyIVSwitch,
    multiplier,
    policies_by_set,
)
from ..analysis.slow_fast_sets import DEPTH_RULES, SET_NAMES, ParamLocation, WeightSet, default_specs, parse_set_spec
from ..models.task_heads import HEAD_PARAM_GROUP
from .adam_with_head_lr import find_xlint_adam, join_tag, parameter_tag, tag_tokens

logger = logging.getLogger(__name__)

#: prefix of the tag tokens of the policies (``fsf.I`` .. ``fsf.IV``)
TOKEN_PREFIX = "fsf."
FLAT_FP16_MESSAGE = ("fine-tuning slow and fast: fairseq's --fp16 flattened all parameters into one optimizer "
                     "group, which loses the weight sets; add --fp16-no-flatten-grads, or use "
                     "--memory-efficient-fp16, --bf16 or --amp")


@dataclass
class SlowFastConfig(FairseqDataclass):
    slow_fast_preset: ChoiceEnum(list(PRESETS)) = field(
        default="df", metadata={"help": "which policies act on which sets: fsf (the method), fs, ff, df (none: "
                                        "plain fine-tuning) or a Table 8 ablation (only_s1, only_s2, s2_to_s1, "
                                        "only_v1, only_v2, v2_to_v1)"})
    slow_fast_s1: str = field(default="", metadata={
        "help": "set spec of S^I (e.g. 1-10:all; items A-B:all|attn|ffn, embeddings, head, none); "
                "empty: the depth rule's default"})
    slow_fast_s2: str = field(default="", metadata={"help": "set spec of S^II (default for 12 layers: 1-4:ffn)"})
    slow_fast_v1: str = field(default="", metadata={"help": "set spec of V^I (default for 12 layers: 11-12:all)"})
    slow_fast_v2: str = field(default="", metadata={"help": "set spec of V^II (default for 12 layers: 11-12:attn)"})
    slow_fast_depth_rule: ChoiceEnum(list(DEPTH_RULES)) = field(
        default="proportional", metadata={"help": "default sets for other depths: proportional (2 of 12 top "
                                                  "layers, 4 of 12 bottom ones) or absolute (2 and 4)"})
    slow_fast_language_specific: bool = field(
        default=False, metadata={"help": "put language-specific parameters in the sets of their layer "
                                         "(default: they keep K = 1)"})
    slow_fast_window: int = field(default=DEFAULT_WINDOW, metadata={"help": "loss window w of the phase detector"})
    slow_fast_threshold: float = field(
        default=DEFAULT_THRESHOLD, metadata={"help": "P1 iff the mean loss (nats) dropped by more than this "
                                                     "between the last two windows"})
    slow_fast_power: float = field(default=DEFAULT_POWER, metadata={"help": "r in R = max(1 - phi^r, 0)"})
    slow_fast_c1: float = field(default=DEFAULT_C1, metadata={"help": "K of Policy I (S^I in P1)"})
    slow_fast_c2: float = field(default=DEFAULT_C2, metadata={"help": "K of Policy IV (V^II in P2)"})
    slow_fast_policy_iv: ChoiceEnum(list(POLICY_IV_MODES)) = field(
        default="auto", metadata={"help": "Policy IV: on, off, or auto (on while the top two layers' CKA to the "
                                          "pretrained model still falls; without probes it stays on)"})
    slow_fast_cka_interval: int = field(
        default=100, metadata={"help": "updates between CKA probes for --slow-fast-policy-iv auto (0: none)"})
    slow_fast_cka_width: int = field(
        default=3, metadata={"help": "probes averaged on each side of the 'still falls' comparison"})
    slow_fast_cka_tol: float = field(
        default=0.0, metadata={"help": "the CKA must fall by more than this to count as falling"})


# --------------------------------------------------------------------------- parameter locations

_HEADS = ("heads.", "classification_heads.")


def locate_parameters(model) -> Tuple[int, Dict[str, ParamLocation]]:
    """``(L, {name: location})`` of every parameter, by the layer interface of both model families.

    :mod:`..models.layer_groups` gives each layer parameter's ``(k, "attn" | "ffn")`` (the
    attention block: self-attention, its layer norm and the adapter after it; the feed-forward
    block: fc1/fc2 or ``ffn``, the final layer norm and the adapter after it) and the embedding
    parameters; parameters tagged ``head`` or under ``heads.`` / ``classification_heads.`` are the
    task head; anything else (the MLM head) is ``other``.  Language-specific:
    ``...per_language.<lang>...`` in the name.
    """
    from ..models import layer_groups

    num_layers = layer_groups.num_layers(model)
    embeddings = set(layer_groups.embedding_parameters(model))
    out: Dict[str, ParamLocation] = {}
    for name, param in model.named_parameters():
        language_specific = ".per_language." in f".{name}"
        address = layer_groups.address_of_parameter(model, name)
        if address is not None:
            out[name] = ParamLocation("layer", address[0] + 1, address[1], language_specific)
        elif name in embeddings:
            out[name] = ParamLocation("embeddings", language_specific=language_specific)
        elif HEAD_PARAM_GROUP in tag_tokens(parameter_tag(param)) or name.startswith(_HEADS):
            out[name] = ParamLocation("head", language_specific=language_specific)
        else:
            out[name] = ParamLocation("other", language_specific=language_specific)
    return num_layers, out


def group_label(tag: str) -> str:
    """A log-friendly name of an optimizer group (``body``, ``head``, ``I_II``, ``head_IV``)."""
    if not tag:
        return "body"
    return "_".join(t[len(TOKEN_PREFIX):] if t.startswith(TOKEN_PREFIX) else t for t in tag_tokens(tag))


# --------------------------------------------------------------------------- controller


class SlowFastController:
    """Tags the sets, feeds the phase detector and sets the multipliers of ``xlint_adam``'s groups."""

    def __init__(self, cfg: SlowFastConfig,
                 log_scalar: Optional[Callable[..., None]] = None):
        self.cfg = cfg
        self.preset: Dict[str, str] = dict(PRESETS[str(cfg.slow_fast_preset)])
        self.detector = PhaseDetector(cfg.slow_fast_window, cfg.slow_fast_threshold, cfg.slow_fast_power)
        self.policy_iv = PolicyIVSwitch(str(cfg.slow_fast_policy_iv), cfg.slow_fast_cka_width, cfg.slow_fast_cka_tol)
        self.sets: Dict[str, WeightSet] = {}
        self.specs: Dict[str, str] = {}
        #: optimizer tag -> policies of its parameters, for every tag this controller assigned
        self.tag_policies: Dict[str, FrozenSet[str]] = {}
        #: tags with a trainable parameter (must be optimizer groups)
        self.trainable_tags: set = set()
        self.set_sizes: Dict[str, int] = {}
        self._log_scalar = log_scalar or metrics.log_scalar
        self._optimizer = None
        self.last: Dict[str, Any] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.preset)

    # ------------------------------------------------------------------ sets

    def tag_parameters(self, model) -> Dict[str, int]:
        """Tag every parameter with the policies whose sets contain it; return ``{tag: numel}``."""
        if not self.enabled:
            return {}
        named = list(model.named_parameters())
        num_layers, locations = locate_parameters(model)
        specs = default_specs(num_layers, str(self.cfg.slow_fast_depth_rule))
        for name in SET_NAMES:
            given = getattr(self.cfg, f"slow_fast_{name.lower()}")
            if given:
                specs[name] = given
        self.specs = specs
        self.sets = {name: parse_set_spec(spec, num_layers) for name, spec in specs.items()}
        policy_sets = {policy: self.sets[name] for policy, name in self.preset.items()}
        include_lang = bool(self.cfg.slow_fast_language_specific)
        counts: Dict[str, int] = {}
        self.set_sizes = {name: 0 for name in self.sets}
        for name, param in named:
            old = parameter_tag(param)
            loc = locations[name]
            for set_name, weights in self.sets.items():
                if weights.contains(loc, include_lang):
                    self.set_sizes[set_name] += param.numel()
            policies = frozenset(p for p, weights in policy_sets.items() if weights.contains(loc, include_lang))
            kept = [t for t in tag_tokens(old) if not t.startswith(TOKEN_PREFIX)]
            tag = join_tag(kept + [TOKEN_PREFIX + p for p in policies])
            if policies:
                param.param_group = tag
                self.tag_policies[tag] = policies
            elif old != tag:
                param.param_group = tag
            if param.requires_grad and policies:
                self.trainable_tags.add(tag)
            counts[tag] = counts.get(tag, 0) + param.numel()
        logger.info("fine-tuning slow and fast (%s, %d layers): %s; parameters per group: %s",
                    self.cfg.slow_fast_preset, num_layers, ", ".join(f"{k}={v}" for k, v in specs.items()),
                    ", ".join(f"{group_label(t)} {n}" for t, n in sorted(counts.items())))
        for policy, set_name in self.preset.items():
            if not self.set_sizes.get(set_name):
                logger.warning("fine-tuning slow and fast: Policy %s acts on %s (%s), which holds no parameter",
                               policy, set_name, specs[set_name])
        return counts

    # ------------------------------------------------------------------ per update

    def multipliers(self) -> Dict[str, float]:
        """``{tag: K}`` for the next update (from the losses pushed so far)."""
        phase, adaptive, iv = self.detector.phase, self.detector.multiplier, self.policy_iv.active
        c1, c2 = self.cfg.slow_fast_c1, self.cfg.slow_fast_c2
        return {tag: multiplier(policies, phase, adaptive, c1, c2, iv) for tag, policies in self.tag_policies.items()}

    def set_multipliers(self) -> Dict[str, float]:
        """``{set name: K}`` of the sets the preset uses, for the log."""
        phase, adaptive, iv = self.detector.phase, self.detector.multiplier, self.policy_iv.active
        return {name: multiplier(policies, phase, adaptive, self.cfg.slow_fast_c1, self.cfg.slow_fast_c2, iv)
                for name, policies in sorted(policies_by_set(self.preset).items())}

    def _attach(self, optimizer) -> None:
        inner = find_xlint_adam(optimizer)
        if inner is None:
            raise RuntimeError(f"fine-tuning slow and fast needs --optimizer xlint_adam, not "
                               f"{type(optimizer).__name__}")
        missing = sorted(self.trainable_tags - set(inner.group_tags))
        if missing:
            if getattr(optimizer, "has_flat_params", False):
                raise RuntimeError(FLAT_FP16_MESSAGE)
            raise RuntimeError("fine-tuning slow and fast: the optimizer has no parameter group for "
                               f"{', '.join(missing)} (were the parameters tagged after it was built?)")
        inner.attach_controller(self)
        self._optimizer = inner

    def attach(self, optimizer) -> None:
        """Attach to ``optimizer`` (once): a resumed run's saved state is loaded into this controller
        then, so call it before reading the state of a resumed run (e.g. before a CKA probe)."""
        if self.enabled and (self._optimizer is None or find_xlint_adam(optimizer) is not self._optimizer):
            self._attach(optimizer)

    def before_update(self, optimizer, update_num: int) -> Dict[str, float]:
        """Set the multipliers of this update on the optimizer and log them; return ``{tag: K}``."""
        if not self.enabled:
            return {}
        self.attach(optimizer)
        multipliers = self.multipliers()
        self._optimizer.set_lr_multipliers(multipliers)
        phase = self.detector.phase
        self.last = {"update": int(update_num), "phase": phase, "phi": self.detector.phi,
                     "R": self.detector.multiplier, "policy_iv": self.policy_iv.active,
                     "K": self.set_multipliers(), "lr": self._optimizer.get_lr(),
                     "group_lrs": self._optimizer.group_lrs()}
        log = self._log_scalar
        log("fsf_p1", 1.0 if phase == PHASE_FAST else 0.0, priority=2000)
        log("fsf_phi", self.last["phi"], priority=2001)
        log("fsf_R", self.last["R"], priority=2002)
        log("fsf_policy_iv", 1.0 if self.last["policy_iv"] else 0.0, priority=2003)
        for name, value in self.last["K"].items():
            log(f"fsf_K_{name}", value, priority=2004)
        log("fsf_lr", self.last["lr"], priority=2005)
        for tag, value in self.last["group_lrs"].items():
            log(f"fsf_lr_{group_label(tag)}", value, priority=2006)
        return multipliers

    def observe_loss(self, loss_sum: float, sample_size: float) -> Optional[float]:
        """Push ``loss_sum / sample_size`` (nats per unit) of one update; None if the sample size is 0."""
        if not self.enabled or not sample_size > 0:
            return None
        loss = float(loss_sum) / float(sample_size)
        self.detector.push(loss)
        self._log_scalar("fsf_loss", loss, priority=1999)
        return loss

    def observe_logging_outputs(self, logging_outputs: List[Dict[str, Any]]) -> Optional[float]:
        """Push the loss of one training update from its (all-workers) logging outputs."""
        loss = update_loss(logging_outputs) if self.enabled else None
        return None if loss is None else self.observe_loss(*loss)

    def wants_cka_probe(self, num_updates: int) -> bool:
        """Whether a CKA probe for Policy IV's ``auto`` mode is due after ``num_updates`` updates."""
        interval = int(self.cfg.slow_fast_cka_interval)
        return (self.enabled and "IV" in self.preset and self.policy_iv.mode == "auto" and self.policy_iv.active
                and interval > 0 and num_updates > 0 and num_updates % interval == 0)

    def observe_cka(self, value: float) -> bool:
        """Record a probe (mean linear CKA of the top two layers to the pretrained model); Policy IV on?"""
        return self.policy_iv.observe(value)

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> Dict[str, Any]:
        return {"version": 1, "preset": str(self.cfg.slow_fast_preset), "detector": self.detector.state_dict(),
                "policy_iv": self.policy_iv.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.detector.load_state_dict(state["detector"])
        self.policy_iv.load_state_dict(state["policy_iv"])


@torch.no_grad()
def layer_cka(model, pretrained, src_tokens: torch.Tensor, padding_idx: int,
              layers: Optional[Sequence[int]] = None, **forward_kwargs) -> Dict[int, float]:
    """``{k: CKA}``: linear CKA (float64, non-padding tokens) of the output of each layer ``k`` of
    ``layers`` (``0 .. L-1``; negative counts from the top; default: every layer) between ``model``
    and the frozen ``pretrained`` copy on the same batch (Guo et al. 2023, Fig. 6).

    Both run a no-grad forward (``features_only``, plus ``forward_kwargs``, e.g. ``src_lang_id``) in
    eval mode (no dropout); each model's training mode is restored.  The layer outputs come from
    :func:`..models.layer_groups.layer_outputs`.
    """
    from ..models import layer_groups

    mask = src_tokens.ne(padding_idx)
    outputs = []
    for net in (model, pretrained):
        was_training = net.training
        net.eval()
        try:
            with layer_groups.layer_outputs(net, layers) as captured:
                net(src_tokens, features_only=True, **forward_kwargs)
        finally:
            net.train(was_training)
        outputs.append(captured)
    return {k: linear_cka(outputs[0][k], outputs[1][k], mask) for k in sorted(outputs[0])}


def top_layers_cka(model, pretrained, src_tokens: torch.Tensor, padding_idx: int, layers=(-2, -1),
                   **forward_kwargs) -> float:
    """One Policy IV probe: the mean of :func:`layer_cka` over ``layers`` (default: the top two)."""
    values = layer_cka(model, pretrained, src_tokens, padding_idx, layers, **forward_kwargs)
    return sum(values.values()) / len(values)


def update_loss(logging_outputs: Sequence[Dict[str, Any]]) -> Optional[Tuple[float, float]]:
    """``(sum of loss, sum of sample_size)`` of one update's (all-workers) logging outputs, the loss
    in nats (see the module docstring); None when the sample size is 0."""
    loss_sum = utils.item(sum(log.get("loss", 0) for log in logging_outputs))
    sample_size = utils.item(sum(log.get("sample_size", 0) for log in logging_outputs))
    if not sample_size > 0:
        return None
    return float(loss_sum), float(sample_size)


class SlowFastTaskMixin:
    """Adds fine-tuning slow and fast to a fairseq task: ``class T(SlowFastTaskMixin, Task)``.

    The task's config must include :class:`SlowFastConfig`'s fields.  ``build_model`` tags the
    sets, ``optimizer_step`` sets the multipliers before the step, ``reduce_metrics`` of a
    training update feeds the loss (the criterion is in training mode only then).
    """

    @property
    def slow_fast(self) -> SlowFastController:
        controller = self.__dict__.get("_slow_fast_controller")
        if controller is None:
            controller = SlowFastController(self.cfg)
            self.__dict__["_slow_fast_controller"] = controller
        return controller

    def build_model(self, cfg, from_checkpoint: bool = False):
        model = super().build_model(cfg, from_checkpoint)
        self.slow_fast.tag_parameters(model)
        return model

    def optimizer_step(self, optimizer, model, update_num):
        self.slow_fast.before_update(optimizer, update_num)
        super().optimizer_step(optimizer, model, update_num)

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        if getattr(criterion, "training", False):
            self.slow_fast.observe_logging_outputs(logging_outputs)


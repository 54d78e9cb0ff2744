"""``xlint_adam``: fairseq's Adam with tagged parameter groups, each at its own multiple of the rate.

Every parameter may carry a tag ``param.param_group`` (a string): the parameters of one tag form
one Adam parameter group, and the learning rate of a group is always

    lr_group = lr_scheduled * scale(tag) * K(tag)

``lr_scheduled`` is what fairseq's LR scheduler sets through :meth:`XlintAdam.set_lr` (warm-up,
decay: any ``--lr-scheduler``); :meth:`XlintAdam.get_lr` returns it unchanged, so schedulers that
read the rate back see their own value.  A tag is ``+``-joined tokens:

* ``head`` (what xlint's fine-tuning tasks tag their task head with): ``scale = head_lr / lr``.
  Wang et al. (2020, App. A) tune XNLI's encoder and classifier rates separately;
  ``--optimizer xlint_adam --lr ENC --head-lr CLS`` keeps their ratio under the schedule.
  Without ``--head-lr`` the scale is 1.
* ``lrx<F>`` (e.g. ``lrx10``, what ``--lr-scale-weights`` tags a set with): a static factor,
  ``scale *= F`` (Guo et al. 2023, Table 1: ×10 on the last two layers' weights).
* any other token (e.g. ``fsf.I``, the fine-tuning slow and fast sets of
  :mod:`.slow_fast`) only names the group: its dynamic multiplier ``K`` is set from outside
  with :meth:`XlintAdam.set_lr_multipliers` (``{tag: K}``, default 1), typically once per update
  before the step.  Multipliers act on the learning rate, so under Adam they scale the step,
  which a gradient scale would not (it cancels in ``m / sqrt(v)``).

Untagged parameters form the first group (``""``), then ``head``, then the other tags sorted.
Without tags and ``--head-lr`` this is exactly fairseq's ``adam``.

Adam / AdamW: fairseq's Adam decays weights decoupled from the gradient (AdamW,
``p -= lr * weight_decay * p``); with ``--weight-decay 0`` it is Adam.  The group's rate scales
both the step and the decay, as torch's AdamW does.

Precision: ``--amp``, ``--bf16``, ``--memory-efficient-fp16`` and ``--fp16 --fp16-no-flatten-grads``
keep every tag (fairseq copies ``param_group`` onto its fp32 master parameters).  Plain ``--fp16``
flattens all parameters into one tensor, which loses the tags: with ``--head-lr`` that is refused
here; a controller that tagged parameters (:mod:`.slow_fast`) refuses it when it finds its
groups missing.

Checkpoints: the state of every attached controller (:meth:`attach_controller`, by name: the
slow-fast controller's phase detector, the training curves' loss sums) travels inside this
optimizer's state dict (fairseq saves and restores optimizer state on resume, but not the task's
state), under :func:`controller_state_key` of its name.

The class keeps the name ``XlintAdam``: besides the registry name, fairseq's trainer stores the
optimizer's class name in every checkpoint (``optimizer_history``) and refuses to resume a run
whose optimizer class is named differently, so a rename would strand the fine-tuning runs in
progress (tests/test_plugin_registration.py resumes one written before this module moved here).
"""
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

from fairseq.optim import register_optimizer
from fairseq.optim.adam import FairseqAdam, FairseqAdamConfig

from ..models.task_heads import HEAD_PARAM_GROUP

#: key of the default controller's state (the slow-fast controller's) in :meth:`XlintAdam.state_dict`
CONTROLLER_STATE_KEY = "xlint_controller_state"


def controller_state_key(name: str = "") -> str:
    """The optimizer-state key of the controller ``name`` ("" is the slow-fast controller's)."""
    return f"{CONTROLLER_STATE_KEY}:{name}" if name else CONTROLLER_STATE_KEY
#: separator of the tokens of a tag
TAG_SEPARATOR = "+"

FLAT_FP16_ERROR = ("xlint_adam: fairseq's --fp16 flattened all parameters into one tensor, which loses the "
                   "parameter groups ({what}); add --fp16-no-flatten-grads, or use --memory-efficient-fp16, "
                   "--bf16 or --amp")


#: the tag token of a static learning-rate factor: ``lrx10`` is ``scale *= 10``
LR_SCALE_TOKEN_PREFIX = "lrx"


def lr_scale_token(factor: float) -> str:
    """The tag token that multiplies a group's rate by ``factor`` (> 0)."""
    if not factor > 0:
        raise ValueError(f"a learning-rate factor must be positive, got {factor}")
    return f"{LR_SCALE_TOKEN_PREFIX}{factor:g}"


def static_lr_factor(tag: str) -> float:
    """The product of the ``lrx<F>`` factors of a tag (1 without any)."""
    factor = 1.0
    for token in tag_tokens(tag):
        if token.startswith(LR_SCALE_TOKEN_PREFIX):
            factor *= float(token[len(LR_SCALE_TOKEN_PREFIX):])
    return factor


def parameter_tag(param) -> str:
    """The group tag of a parameter (``""`` if untagged)."""
    return getattr(param, "param_group", None) or ""


def tag_tokens(tag: str) -> List[str]:
    return [token for token in tag.split(TAG_SEPARATOR) if token]


def join_tag(tokens) -> str:
    """The canonical tag of some tokens (``head`` first, the rest sorted)."""
    tokens = set(tokens)
    ordered = ([HEAD_PARAM_GROUP] if HEAD_PARAM_GROUP in tokens else []) + sorted(tokens - {HEAD_PARAM_GROUP})
    return TAG_SEPARATOR.join(ordered)


def _group_order(tag: str):
    return (tag != "", tag != HEAD_PARAM_GROUP, tag)


@dataclass
class XlintAdamConfig(FairseqAdamConfig):
    head_lr: float = field(
        default=-1.0,
        metadata={"help": "learning rate of the task head (follows --lr's schedule, keeping the ratio "
                          "head_lr/lr); negative: the same as --lr"},
    )


@register_optimizer("xlint_adam", dataclass=XlintAdamConfig)
class XlintAdam(FairseqAdam):
    """Adam with one parameter group per tag, at ``scheduled rate * scale * multiplier``."""

    def __init__(self, cfg: XlintAdamConfig, params):
        params = list(params)
        if any(isinstance(p, dict) and "params" not in p for p in params):
            # FP16Optimizer with flattening passes [{device: flat fp32 tensor}]: no tags survive
            if cfg.head_lr >= 0:
                raise ValueError(FLAT_FP16_ERROR.format(what="--head-lr's task head"))
            params = [t for p in params for t in (p.values() if isinstance(p, dict) else [p])]
        base_lr = cfg.lr[0] if isinstance(cfg.lr, Collection) else cfg.lr
        by_tag: Dict[str, list] = {}
        for param in params:
            by_tag.setdefault(parameter_tag(param), []).append(param)
        head_scale = 1.0
        if cfg.head_lr >= 0:
            if not any(HEAD_PARAM_GROUP in tag_tokens(tag) for tag in by_tag):
                raise ValueError("--head-lr: no parameter is tagged as a task head (with --fp16 use "
                                 "--memory-efficient-fp16 or --fp16-no-flatten-grads)")
            if base_lr <= 0:
                raise ValueError("--head-lr needs a positive --lr")
            head_scale = cfg.head_lr / base_lr
        self.group_tags: List[str] = sorted(by_tag, key=_group_order)
        self._scales = [(head_scale if HEAD_PARAM_GROUP in tag_tokens(tag) else 1.0) * static_lr_factor(tag)
                        for tag in self.group_tags]
        groups = [{"params": by_tag[tag], "lr_scale": scale} for tag, scale in zip(self.group_tags, self._scales)]
        super().__init__(cfg, groups)
        self._multipliers: Dict[str, float] = {}
        self._controllers: Dict[str, Any] = {}
        self._pending_controller_states: Dict[str, Dict[str, Any]] = {}
        self.set_lr(base_lr)

    # ------------------------------------------------------------------ rates

    def set_lr(self, lr):
        """Set the scheduled rate; every group gets ``lr * scale * K``."""
        self._scheduled_lr = float(lr)
        self._apply_lrs()

    def get_lr(self):
        """The scheduled rate (what the LR scheduler set), without scales or multipliers."""
        return self._scheduled_lr

    def set_lr_multipliers(self, multipliers: Mapping[str, float]) -> None:
        """Set the multiplier ``K`` of the groups named in ``multipliers`` (``{tag: K}``); others keep theirs."""
        for tag, value in multipliers.items():
            value = float(value)
            if not value >= 0:
                raise ValueError(f"the multiplier of group {tag!r} must be non-negative, got {value}")
            self._multipliers[tag] = value
        self._apply_lrs()

    def lr_multiplier(self, tag: str) -> float:
        return self._multipliers.get(tag, 1.0)

    def group_lrs(self) -> Dict[str, float]:
        """``{tag: effective learning rate}`` of every group, as the next step will use it."""
        return {tag: group["lr"] for tag, group in zip(self.group_tags, self.param_groups)}

    def _apply_lrs(self) -> None:
        for tag, scale, group in zip(self.group_tags, self._scales, self.param_groups):
            group["lr"] = self._scheduled_lr * scale * self._multipliers.get(tag, 1.0)

    # ------------------------------------------------------------------ controller state

    def attach_controller(self, controller, name: str = "") -> None:
        """Save ``controller.state_dict()`` with this optimizer under ``name``; hand it a state loaded
        before it attached."""
        self._controllers[name] = controller
        pending = self._pending_controller_states.pop(name, None)
        if pending is not None:
            controller.load_state_dict(pending)

    def state_dict(self):
        state = dict(super().state_dict())
        saved = dict(self._pending_controller_states)
        saved.update({name: controller.state_dict() for name, controller in self._controllers.items()})
        for name, controller_state in saved.items():
            state[controller_state_key(name)] = controller_state
        return state

    def load_state_dict(self, state_dict, optimizer_overrides=None):
        state_dict = dict(state_dict)
        loaded = {key[len(CONTROLLER_STATE_KEY):].lstrip(":"): state_dict.pop(key) for key in list(state_dict)
                  if isinstance(key, str) and key.startswith(CONTROLLER_STATE_KEY)}
        super().load_state_dict(state_dict, optimizer_overrides)
        for name, controller_state in loaded.items():
            if name in self._controllers:
                self._controllers[name].load_state_dict(controller_state)
            else:
                self._pending_controller_states[name] = controller_state


def find_xlint_adam(optimizer) -> Optional[XlintAdam]:
    """The :class:`XlintAdam` inside fairseq's wrappers (FP16, memory-efficient FP16, AMP), or None."""
    seen = 0
    while optimizer is not None and seen < 8:
        if isinstance(optimizer, XlintAdam):
            return optimizer
        optimizer = getattr(optimizer, "fp32_optimizer", None) or getattr(optimizer, "wrapped_optimizer", None)
        seen += 1
    return None


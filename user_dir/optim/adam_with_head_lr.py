"""``xlint_adam``: fairseq's Adam with a separate learning rate for the task head.

Wang et al. (2020, App. A) tune XNLI's encoder and classifier learning rates
separately.  ``--optimizer xlint_adam --lr ENC --head-lr CLS`` puts the parameters
that xlint's fine-tuning tasks tag ``param_group = "head"`` into a second Adam
parameter group whose learning rate is always ``lr * CLS / ENC``: both groups
follow the same schedule (warm-up, decay) and keep their ratio.  Without
``--head-lr`` it is exactly fairseq's ``adam``.

fp16: ``--fp16`` flattens all parameters into one tensor, which loses the tags;
use ``--memory-efficient-fp16`` or ``--fp16-no-flatten-grads`` with ``--head-lr``.

The class keeps the name ``XlintAdam``: besides the registry name, fairseq's trainer stores the
optimizer's class name in every checkpoint (``optimizer_history``) and refuses to resume a run
whose optimizer class is named differently, so a rename would strand the fine-tuning runs in
progress (tests/test_plugin_registration.py resumes one written before this module moved here).
"""
from collections.abc import Collection
from dataclasses import dataclass, field

from fairseq.optim import register_optimizer
from fairseq.optim.adam import FairseqAdam, FairseqAdamConfig

from ..models.task_heads import HEAD_PARAM_GROUP


@dataclass
class XlintAdamConfig(FairseqAdamConfig):
    head_lr: float = field(
        default=-1.0,
        metadata={"help": "learning rate of the task head (follows --lr's schedule, keeping the ratio "
                          "head_lr/lr); negative: the same as --lr"},
    )


@register_optimizer("xlint_adam", dataclass=XlintAdamConfig)
class XlintAdam(FairseqAdam):
    """Adam with two parameter groups: body (``--lr``) and head (``--head-lr``)."""

    def __init__(self, cfg: XlintAdamConfig, params):
        params = list(params)
        base_lr = cfg.lr[0] if isinstance(cfg.lr, Collection) else cfg.lr
        head = [p for p in params if getattr(p, "param_group", None) == HEAD_PARAM_GROUP]
        body = [p for p in params if getattr(p, "param_group", None) != HEAD_PARAM_GROUP]
        scale = 1.0
        if cfg.head_lr >= 0:
            if not head:
                raise ValueError("--head-lr: no parameter is tagged as a task head (with --fp16 use "
                                 "--memory-efficient-fp16 or --fp16-no-flatten-grads)")
            if base_lr <= 0:
                raise ValueError("--head-lr needs a positive --lr")
            scale = cfg.head_lr / base_lr
        groups = []
        if body:
            groups.append({"params": body, "lr_scale": 1.0})
        if head:
            groups.append({"params": head, "lr_scale": scale})
        super().__init__(cfg, groups)
        self.set_lr(base_lr)

    def set_lr(self, lr):
        for group in self.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)

    def get_lr(self):
        group = self.param_groups[0]
        scale = group.get("lr_scale", 1.0)
        return group["lr"] / scale if scale else group["lr"]

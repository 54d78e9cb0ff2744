"""``l0_mlm``: learn one language's L0 mask over a frozen pretrained model (Wang et al. 2020, Sec. 3.3).

An ``xlm_mlm`` task over one language (``--languages en``) whose model is the pretrained
checkpoint ``--pretrained-checkpoint`` (any ``xlm_mlm``/``meta_mlm`` checkpoint of a model whose
attention and FFN are shared: ``--language-specific joint`` or ``shared_adapter``), loaded
strictly and frozen (``requires_grad = False`` on every parameter: the optimizer never sees them,
so they stay bit-identical).  Only the criterion's parameters train: the hard-concrete gates of
``--criterion l0_hard_concrete`` (and its Lagrange multiplier), which fairseq's trainer puts into
its optimizer and saves in every checkpoint, so a run resumes from ``checkpoint_last.pt`` as
any fairseq-train run.  The model's architecture options come from the pretrained checkpoint;
the run's saved config is updated to them (``--arch`` only has to name an ``xlm_adapter``
architecture).

The task gives the criterion the model's gate layout (:meth:`L0MlmTask.gate_layout`,
:mod:`..modules.gate_layout`).  Set-ups it refuses at start: weight decay > 0 (it would pull the
gates and the multiplier to 0; checked at the first update, where the optimizer is known), and
under data parallelism pytorch DDP (``c10d``; it refuses a model without trainable parameters):
use ``--ddp-backend legacy_ddp``, which all-reduces the gates' gradients.
"""
import logging
from dataclasses import dataclass, field

from fairseq import checkpoint_utils
from fairseq.tasks import register_task
from omegaconf import open_dict

from ..models.xlm_adapter import XlmAdapterEncoder, XlmAdapterModel
from ..modules.gate_layout import GateLayout, build_gate_layout
from .xlm_mlm import XlmMlmConfig, XlmMlmTask

logger = logging.getLogger(__name__)

#: model variants whose attention and FFN all languages share
SHARED_VARIANTS = ("joint", "shared_adapter")


@dataclass
class L0MlmConfig(XlmMlmConfig):
    pretrained_checkpoint: str = field(
        default="", metadata={"help": "the pretrained xlm_adapter checkpoint whose frozen weights are masked"})


@register_task("l0_mlm", dataclass=L0MlmConfig)
class L0MlmTask(XlmMlmTask):
    """One language's MLM data over a frozen pretrained model; see the module docstring."""

    cfg: L0MlmConfig

    def __init__(self, cfg: L0MlmConfig, dictionary=None):
        super().__init__(cfg, dictionary)
        if len(self.languages) != 1:
            raise ValueError(f"l0_mlm learns one language's mask: give one --languages, not {self.languages}")
        if not cfg.pretrained_checkpoint:
            raise ValueError("l0_mlm needs --pretrained-checkpoint")
        self.frozen_model = None
        self._checked_optimizer = None

    def build_model(self, cfg, from_checkpoint=False):
        if int(self.cfg.distributed_world_size) > 1 and str(self.cfg.ddp_backend) not in ("legacy_ddp", "no_c10d"):
            raise ValueError(f"--ddp-backend {self.cfg.ddp_backend} cannot wrap a frozen model (no trainable "
                             "parameters): use --ddp-backend legacy_ddp")
        path = self.cfg.pretrained_checkpoint
        state = checkpoint_utils.load_checkpoint_to_cpu(path)
        model_cfg = state["cfg"]["model"]
        variant = str(model_cfg.get("language_specific", "joint"))
        if variant not in SHARED_VARIANTS:
            raise ValueError(f"{path}: a --language-specific {variant} model has per-language modules; the L0 masks "
                             f"analyse a model whose attention and FFN are shared ({', '.join(SHARED_VARIANTS)})")
        languages = str(model_cfg.model_languages).split(",")
        if self.languages[0] not in languages:
            raise ValueError(f"{path} was not trained on {self.languages[0]} (its languages: {','.join(languages)})")
        model = XlmAdapterModel(model_cfg, XlmAdapterEncoder(model_cfg, self.source_dictionary, languages))
        try:
            model.load_state_dict(state["model"], strict=True, model_cfg=model_cfg)
        except RuntimeError as err:
            raise ValueError(f"{path} does not fit the data's dictionary or its own config: "
                             f"{str(err).splitlines()[0]}") from None
        for param in model.parameters():
            param.requires_grad_(False)
        if cfg is not None:  # the run's saved config describes the model it really trains
            with open_dict(cfg):
                for key, value in model_cfg.items():
                    if key != "_name":
                        cfg[key] = value
        logger.info("frozen pretrained model from %s (%d parameters, languages %s)", path,
                    sum(p.numel() for p in model.parameters()), ",".join(languages))
        self.frozen_model = model
        return model

    def gate_layout(self, attention_gates: str, ffn_gates: str) -> GateLayout:
        """The gate layout of the frozen model (built by :meth:`build_model`, which fairseq calls first)."""
        if self.frozen_model is None:
            raise ValueError("the l0_mlm task builds its model before the criterion")
        layout = build_gate_layout(self.frozen_model, attention_gates, ffn_gates)
        logger.info("%d hard-concrete gates (attention: %s, FFN: %s)", layout.num_gates, attention_gates, ffn_gates)
        return layout

    def add_language_statistics(self, sample, loss, sample_size, logging_output) -> None:
        """Per-language losses (``loss_<lang>``, ``ppl_<lang>``) of the masked LM alone, without the penalty."""
        total = logging_output.get("loss", 0.0)
        logging_output["loss"] = logging_output.get("mlm_loss", total)
        super().add_language_statistics(sample, loss, sample_size, logging_output)
        logging_output["loss"] = total

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        if self._checked_optimizer is not optimizer:
            check_no_weight_decay(optimizer)
            self._checked_optimizer = optimizer
        return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)


def check_no_weight_decay(optimizer) -> None:
    """Refuse weight decay on the gates and the Lagrange multiplier (it is no part of the objective)."""
    decays = {float(group.get("weight_decay", 0.0) or 0.0) for group in optimizer.param_groups}
    if any(decay > 0 for decay in decays):
        raise ValueError(f"--weight-decay {max(decays):g} would pull the L0 gates' log alpha and the Lagrange "
                         "multiplier towards 0: use --weight-decay 0")

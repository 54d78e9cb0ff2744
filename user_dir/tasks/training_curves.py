"""Training curves of a fine-tuning run: the transfer gap, the loss and each layer's CKA over updates.

Guo et al. (2023) record, every hundred updates, the performance gap between the source language
and the others (Figs. 1, 2, 4, 5),

    gap(t) = P_src(t) - mean_{l in T} P_l(t)

(``P``: the primary dev metric in percent; ``src``: the training languages, averaged when
several; ``T``: the other validation languages), next to the training loss (Fig. 2), and the
linear CKA of every layer's output between the pretrained and the current model on the current
batch (Fig. 6, :func:`..optim.slow_fast.layer_cka`).

With ``--curve-interval N`` a fine-tuning task (:class:`.finetune_base.FinetuneTask`) writes one
JSON row per point to ``--curve-file`` (default ``SAVE_DIR/curves.jsonl``), at update 0 and every
N updates, measured on the model after that many updates, before the next one:

    {"update": 100, "train_loss": 0.83, "metric": "acc", "scores": {"en": 91.0, "tr": 55.2},
     "source": 91.0, "target": 55.2, "gap": 35.8, "cka": {"1": 0.998, "2": 0.971}, "seconds": 0.21}

* ``scores`` come from a **fixed per-language dev subset** (``--curve-examples`` examples of each
  validation language, the same for every point, seed and method: drawn with ``--few-shot-seed``;
  0: the whole dev set), evaluated exactly as validation is (eval mode, the criterion's
  predictions, the task's metric).  Model selection still validates on the whole dev set.
* ``train_loss``: the mean, over the updates since the previous point, of each update's loss in
  nats per unit (per labelled token for tagging, per example for classification, per window for
  QA: the loss the phase detector sees, :func:`..optim.slow_fast.update_loss`); null at update 0.
* ``cka`` (``--curve-cka``): layers numbered 1..L, on the update's first training batch, against
  the pretrained weights (``--slow-fast-reference``, or the model at update 0 of a fresh run).
* ``seconds``: what measuring the point cost (not part of the curve; it differs between runs).

Data parallel: the update's loss is the all-workers one (reduce_metrics); every rank evaluates
the whole (small) subset on its identical copy of the model, so no communication is needed and
every rank holds the same point; rank 0 writes it.  Resume: the loss sums since the last point
travel in ``xlint_adam``'s state (controller ``curves``), and the file drops the rows of updates
>= the update a process starts at (:class:`..data.update_rows.UpdateRowsLog`), so a resumed
run's file equals an uninterrupted run's.
"""

import os
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence

from fairseq.dataclass import FairseqDataclass
from omegaconf import II

from ..data.update_rows import UpdateRowsLog
from ..optim.adam_with_head_lr import find_xlint_adam
from ..optim.slow_fast import update_loss

CURVES_FILE = "curves.jsonl"
#: the name of the curves' state in ``xlint_adam``'s state dict
CONTROLLER_NAME = "curves"


@dataclass
class CurvesConfig(FairseqDataclass):
    curve_interval: int = field(
        default=0, metadata={"help": "record a training-curve point (dev gap P_src - mean P_tgt on a fixed dev "
                                     "subset, training loss, optionally per-layer CKA) at update 0 and every N "
                                     "updates to --curve-file (0: no curves)"})
    curve_examples: int = field(
        default=200, metadata={"help": "dev examples per validation language in the curve's fixed subset "
                                       "(0: the whole dev set; model selection always uses the whole dev set)"})
    curve_cka: bool = field(
        default=False, metadata={"help": "also record each layer's linear CKA to the pretrained model on the "
                                         "update's first training batch (Guo et al. 2023, Fig. 6)"})
    curve_batch_size: int = field(default=32, metadata={"help": "batch size of the curve's dev-subset evaluation"})
    curve_file: str = field(default="", metadata={"help": "where the curve rows go (default: SAVE_DIR/curves.jsonl)"})
    curve_save_dir: str = II("checkpoint.save_dir")


def curve_point(update: int, train_loss: Optional[float], metric: str,
                scores: Mapping[str, Mapping[str, float]], train_languages: Sequence[str],
                cka: Optional[Mapping[int, float]] = None) -> Dict[str, Any]:
    """One JSON row: ``scores`` maps each language to its metrics (a language without ``metric`` is
    left out); ``cka`` maps layer ``k`` (0-based) to its CKA."""
    per_language = {lang: float(values[metric]) for lang, values in scores.items() if metric in values}
    sources = [value for lang, value in per_language.items() if lang in train_languages]
    targets = [value for lang, value in per_language.items() if lang not in train_languages]
    source = sum(sources) / len(sources) if sources else None
    target = sum(targets) / len(targets) if targets else None
    row: Dict[str, Any] = {
        "update": int(update), "train_loss": train_loss, "metric": metric, "scores": per_language,
        "source": source, "target": target,
        "gap": source - target if source is not None and target is not None else None,
    }
    if cka is not None:
        row["cka"] = {str(k + 1): float(value) for k, value in sorted(cka.items())}
    return row


class TrainingCurves:
    """When points are due, the loss since the last point, the file; state saved with ``xlint_adam``."""

    def __init__(self, cfg: CurvesConfig):
        self.interval = int(cfg.curve_interval)
        self.with_cka = bool(cfg.curve_cka)
        self.path = cfg.curve_file or os.path.join(str(cfg.curve_save_dir or "."), CURVES_FILE)
        self.loss_total = 0.0
        self.loss_updates = 0
        self._started = False
        self._last_point = -1

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def start(self, optimizer, update_num: int, is_writer: bool) -> None:
        """Once per process, at its first update: take a resumed run's state from the optimizer and
        drop the file's rows of updates >= ``update_num`` (on the writing rank)."""
        if self._started:
            return
        adam = find_xlint_adam(optimizer)
        if adam is None:
            raise RuntimeError("--curve-interval needs --optimizer xlint_adam (its state carries the curves' "
                               "loss sums across resumes)")
        adam.attach_controller(self, CONTROLLER_NAME)
        if is_writer:
            UpdateRowsLog(self.path).keep_before(update_num)
        self._started = True

    def due(self, update_num: int) -> bool:
        """Whether the point of ``update_num`` is still to be recorded (once per update)."""
        return self.enabled and update_num % self.interval == 0 and update_num != self._last_point

    def observe(self, logging_outputs: Sequence[Dict[str, Any]]) -> None:
        """Add one training update's loss (its all-workers logging outputs)."""
        loss = update_loss(logging_outputs) if self.enabled else None
        if loss is not None:
            self.loss_total += loss[0] / loss[1]
            self.loss_updates += 1

    def record(self, row: Dict[str, Any], is_writer: bool) -> Dict[str, Any]:
        """Write ``row`` (from :func:`curve_point`) and start the next point's loss sums."""
        self._last_point = int(row["update"])
        self.loss_total, self.loss_updates = 0.0, 0
        if is_writer:
            UpdateRowsLog(self.path).append([row])
        return row

    def mean_loss(self) -> Optional[float]:
        """The mean per-update loss since the last point (None before any update)."""
        return self.loss_total / self.loss_updates if self.loss_updates else None

    def state_dict(self) -> Dict[str, Any]:
        return {"version": 1, "loss_total": self.loss_total, "loss_updates": self.loss_updates}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.loss_total = float(state["loss_total"])
        self.loss_updates = int(state["loss_updates"])

"""``xlint plot mlm-loss``: the MLM training loss after the warm-up stage (Wang et al. 2020, Fig. 4 right).

Fig. 4c compares the early training loss of JointPair, + adapt and + meta adapt (Sec. 4.3:
ordinary adapters converge more slowly than JointPair, meta adapters faster).  Each run's
fairseq JSON log (``RUN/train.log`` as ``xlint pretrain ... -- --log-format json`` writes it,
or the log file) gives its ``train_inner`` records: ``loss`` (fairseq's masked_lm loss in
bits per masked token, averaged over the log interval) at ``num_updates``.  "After the warm-up
stage" is the records after update N: ``--after-update N``, else each run's own
``warmup_updates`` (the learning-rate warm-up of XLM's inverse-sqrt schedule, read from the
configuration fairseq prints at the top of the log).

Two panels: the loss curves after N (over updates), and per run the average after N,

    mean = sum_i w_i L_i / sum_i w_i   over the records i with N < u_i (<= --until-update M),

where ``w_i = u_i - u_{i-1}`` is the number of updates record i averages (``u_0`` the previous
record's update, 0 for the first), i.e. the mean loss per update of that stretch.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import click

from .fairseq_logs import as_float, parse_log_records, resolve_log
from .figures import new_figure, save_figure

_WARMUP = re.compile(r"""['"]warmup_updates['"]\s*:\s*(\d+)""")


@dataclass
class LossRun:
    label: str
    path: Path
    #: (update, loss) of every train_inner record, restarts resolved
    points: List[Tuple[float, float]]
    warmup: Optional[int]


@dataclass
class LossWindow:
    """One run's records after the warm-up: their (update, loss) points, the update count N and the mean."""

    label: str
    after: int
    points: List[Tuple[float, float]]
    mean: float


def train_history(lines: Sequence[str], key: str = "loss") -> List[Tuple[float, float]]:
    """(update, value) of the ``train_inner`` records, in order, without those a restart superseded
    (a record at update u replaces every earlier record at u or later, as for validations)."""
    history: List[Tuple[float, float]] = []
    for record in parse_log_records(lines, "train_inner"):
        update, value = as_float(record.get("num_updates")), as_float(record.get(key))
        if update is None or value is None:
            continue
        history = [kept for kept in history if kept[0] < update] + [(update, value)]
    return history


def logged_warmup(lines: Sequence[str]) -> Optional[int]:
    """The ``warmup_updates`` of the last configuration fairseq printed in the log, or None."""
    found = None
    for line in lines:
        match = _WARMUP.search(line)
        if match:
            found = int(match.group(1))
    return found


def load_loss_run(label: str, run: Path, key: str = "loss") -> LossRun:
    path = resolve_log(run)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    points = train_history(lines, key)
    if not points:
        raise click.BadParameter(f"{path}: no train_inner records with {key!r} (train with -- --log-format json)",
                                 param_hint="RUNS")
    return LossRun(label, path, points, logged_warmup(lines))


def loss_after_warmup(run: LossRun, after: Optional[int] = None, until: Optional[int] = None) -> LossWindow:
    """The records of ``run`` with ``after < update <= until`` and their update-weighted mean (module
    docstring); ``after`` defaults to the run's logged warm-up.  A run without such records is an error."""
    start = after if after is not None else run.warmup
    if start is None:
        raise click.BadParameter(f"{run.path}: no warmup_updates in the log: give --after-update",
                                 param_hint="--after-update")
    total = weight_sum = 0.0
    window = []
    previous = 0.0
    for update, loss in run.points:
        weight = update - previous
        previous = update
        if update <= start or (until is not None and update > until):
            continue
        window.append((update, loss))
        total += weight * loss
        weight_sum += weight
    if not window or weight_sum <= 0:
        last = run.points[-1][0]
        raise click.BadParameter(f"{run.path}: no train_inner record after update {start} (the log ends at "
                                 f"{last:g}); train longer or lower --after-update", param_hint="--after-update")
    return LossWindow(run.label, int(start), window, total / weight_sum)


def draw_mlm_loss(windows: Sequence[LossWindow], key: str, out: Path) -> List[Path]:
    figure, axes = new_figure(9.0, 3.4, ncols=2, gridspec_kw={"width_ratios": [2, 1]}, layout="constrained")
    curves, bars = axes[0]
    for k, window in enumerate(windows):
        curves.plot([p[0] for p in window.points], [p[1] for p in window.points], color=f"C{k}",
                    marker="o" if len(window.points) < 30 else None, markersize=3,
                    label=f"{window.label} (after {window.after})")
    curves.set_xlabel("update")
    curves.set_ylabel(f"training {key} (bits per masked token)" if key == "loss" else f"training {key}")
    curves.set_title("MLM training loss after the warm-up stage", fontsize=9)
    curves.grid(alpha=0.3)
    curves.legend(fontsize=7)
    positions = list(range(len(windows)))
    drawn = bars.bar(positions, [w.mean for w in windows], color=[f"C{k}" for k in positions], edgecolor="k",
                     linewidth=0.5)
    bars.bar_label(drawn, labels=[f"{w.mean:.3f}" for w in windows], fontsize=7, padding=1)
    low, high = min(w.mean for w in windows), max(w.mean for w in windows)
    margin = max((high - low) * 0.5, abs(high) * 0.02, 1e-3)
    bars.set_ylim(low - margin, high + margin)
    bars.set_xticks(positions)
    bars.set_xticklabels([w.label for w in windows], fontsize=8, rotation=15)
    bars.set_ylabel(f"average {key} after warm-up")
    bars.set_title("Average (Wang et al. 2020, Fig. 4 right)", fontsize=9)
    bars.grid(axis="y", alpha=0.3)
    return save_figure(figure, out)


def parse_labelled(specs: Sequence[str]) -> List[Tuple[str, Path]]:
    """``LABEL=RUN`` arguments (a run alone is labelled by its folder name)."""
    runs = []
    seen: Dict[str, str] = {}
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep:
            label, path = Path(spec).name, spec
        if not label or not path:
            raise click.BadParameter(f"expected LABEL=RUN_DIR, got {spec!r}", param_hint="RUNS")
        if label in seen:
            raise click.BadParameter(f"label {label!r} given twice ({seen[label]}, {spec})", param_hint="RUNS")
        seen[label] = spec
        if not Path(path).exists():
            raise click.BadParameter(f"{path} does not exist", param_hint="RUNS")
        runs.append((label, Path(path)))
    return runs


@click.command("mlm-loss")
@click.argument("runs", nargs=-1, required=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="figure stem: writes OUT.png and OUT.pdf")
@click.option("--after-update", type=click.IntRange(min=0),
              help="drop the records up to this update (default: each run's warmup_updates from its log)")
@click.option("--until-update", type=click.IntRange(min=1), help="only the early stage: records up to this update")
@click.option("--metric", "key", default="loss", show_default=True,
              help="train_inner value: loss, or loss_<lang> (one language's MLM loss)")
def mlm_loss_plot(runs: Tuple[str, ...], out: Path, after_update: Optional[int], until_update: Optional[int],
                  key: str) -> None:
    """Draw Fig. 4 (right) from RUNS, each LABEL=RUN_DIR (a pretraining save dir with a JSON train.log, or the log)."""
    if until_update is not None and after_update is not None and until_update <= after_update:
        raise click.BadParameter(f"{until_update} is not after --after-update {after_update}",
                                 param_hint="--until-update")
    windows = [loss_after_warmup(load_loss_run(label, path, key), after_update, until_update)
               for label, path in parse_labelled(runs)]
    for window in windows:
        click.echo(f"{window.label}: average {key} after update {window.after}: {window.mean:.4f} "
                   f"({len(window.points)} records)")
    for path in draw_mlm_loss(windows, key, out):
        click.echo(f"wrote {path}")

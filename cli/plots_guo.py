"""Guo et al. (2023) figures: the performance gap, CKA and the slow-fast phases over fine-tuning.

* ``xlint plot guo-gap LABEL=SAVE_DIR... --out FIG`` (Fig. 1, 2, 4, 5): per label, the gap
  ``P_src - mean P_tgt`` (points) and the training loss over updates, mean over the seeds with a
  min-max band, from each seed's ``curves.jsonl`` (``xlint finetune --curve-interval N``).
* ``xlint plot guo-cka SAVE_DIR --out FIG`` (Fig. 6): each layer's linear CKA to the pretrained
  model over updates, mean over seeds (``--curve-cka``).
* ``xlint plot guo-phases RUN_DIR --out FIG``: a slow-fast run's phase, multipliers ``R`` and
  ``K_<set>`` and detector loss over updates, from its ``train.log`` (``fsf_*`` in ``train_inner``).
* :func:`draw_layer_sweep` (Fig. 3) draws a freeze / re-initialise sweep over layers; the command
  that reads the sweep lives elsewhere and calls it.

``curves.jsonl`` holds one JSON object per line, sorted by update:
``{"update", "train_loss", "metric", "scores", "source", "target", "gap", "cka": {"1": ...}}``.
A run that was resumed may repeat updates: a point (or ``train_inner`` record) at update ``u``
replaces every earlier one at update ``u`` or later (the resumed attempt's values win).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import click

from .fairseq_logs import as_float, parse_log_records
from .figures import new_figure, save_figure

CURVES_FILE = "curves.jsonl"
RESULTS_FILE = "results.json"
#: the multipliers' axis: symmetric log, linear below this, so that K = R = 0 stays visible
#: next to c1 = 0.01 and c2 = 10
MULTIPLIER_LINTHRESH = 1e-3
FSF_PREFIX = "fsf_"
K_PREFIX = "fsf_K_"
#: the multipliers' colours: not the phase's orange
MULTIPLIER_COLORS = ("tab:blue", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
                     "tab:cyan")
Point = Dict[str, Any]


# ---------------------------------------------------------------- reading

def supersede(points: Iterable[Point], key: str) -> List[Point]:
    """Points in order where one at ``key`` = u drops every earlier one at u or later (a resume's rewrite)."""
    kept: List[Point] = []
    for point in points:
        update = as_float(point.get(key))
        if update is None:
            continue
        kept = [p for p in kept if float(p[key]) < update] + [point]
    return kept


def load_curves(path: Path) -> List[Point]:
    """The points of one ``curves.jsonl``, by update; a bad line is a one-line error naming ``file:line``."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise click.ClickException(f"{path}: cannot read ({error.strerror})")
    points = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            point = json.loads(line)
        except ValueError as error:
            raise click.ClickException(f"{path}:{number}: not JSON ({error.msg})")
        if not isinstance(point, dict) or as_float(point.get("update")) is None:
            raise click.ClickException(f"{path}:{number}: not a curve point (a JSON object with a numeric 'update')")
        points.append(point)
    if not points:
        raise click.ClickException(f"{path}: no curve points")
    return supersede(points, "update")


def find_curves(save_dir: Path) -> List[Path]:
    """Every ``<grid point>/seed<k>/curves.jsonl`` under an ``xlint finetune`` SAVE_DIR, sorted."""
    return sorted(save_dir.glob(f"*/seed*/{CURVES_FILE}"))


def chosen_curves(save_dir: Path) -> List[Path]:
    """The seeds' curves of SAVE_DIR's grid point: the only one, or ``results.json``'s chosen one.

    Errors (one line, naming SAVE_DIR): no curves at all; several grid points and no
    ``results.json`` naming the chosen one among them.
    """
    paths = find_curves(save_dir)
    if not paths:
        raise click.ClickException(f"{save_dir}: no */seed*/{CURVES_FILE} (fine-tune with --curve-interval N)")
    points = sorted({path.parent.parent.name for path in paths})
    if len(points) == 1:
        return paths
    chosen = None
    results = save_dir / RESULTS_FILE
    if results.is_file():
        try:
            chosen = (json.loads(results.read_text(encoding="utf-8")).get("chosen") or {}).get("name")
        except (ValueError, AttributeError):
            raise click.ClickException(f"{results}: not a results.json of xlint finetune")
    if chosen not in points:
        raise click.ClickException(f"{save_dir}: curves of several grid points ({', '.join(points)}) and no "
                                   f"{RESULTS_FILE} choosing one of them")
    return [path for path in paths if path.parent.parent.name == chosen]


# ---------------------------------------------------------------- aggregating

@dataclass(frozen=True)
class Series:
    """One quantity over updates across seeds: mean, min, max and sample std (0 for one seed) per update."""

    updates: List[float]
    mean: List[float]
    low: List[float]
    high: List[float]
    std: List[float]
    seeds: List[int]


def point_value(point: Mapping[str, Any], key: str) -> Optional[float]:
    """``point[key]`` as a finite float; ``"cka.3"`` is ``point["cka"]["3"]``; None when absent or null."""
    value: Any = point
    for part in key.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    number = as_float(value)
    return number if number is not None and math.isfinite(number) else None


def aggregate_curves(runs: Sequence[Sequence[Mapping[str, Any]]], key: str) -> Series:
    """``key`` over the updates of any seed: at each update, the mean/min/max/std over the seeds having it.

    ``runs`` is one point list per seed (:func:`load_curves`); a seed without the value at an
    update (``train_loss`` is null at update 0, a shorter run) does not count there.
    """
    by_update: Dict[float, List[float]] = {}
    for points in runs:
        for point in points:
            value = point_value(point, key)
            if value is not None:
                by_update.setdefault(float(point["update"]), []).append(value)
    updates = sorted(by_update)
    columns: Dict[str, List[Any]] = {name: [] for name in ("mean", "low", "high", "std", "seeds")}
    for update in updates:
        values = by_update[update]
        mean = sum(values) / len(values)
        spread = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
        for name, value in (("mean", mean), ("low", min(values)), ("high", max(values)),
                            ("std", math.sqrt(spread)), ("seeds", len(values))):
            columns[name].append(value)
    return Series(updates, **columns)


def cka_layers(runs: Sequence[Sequence[Mapping[str, Any]]]) -> List[str]:
    """The layers (``"1"``..``"L"``) having a CKA value in any point, in numeric order."""
    layers = {layer for points in runs for point in points
              for layer in (point.get("cka") or {}) if isinstance(point.get("cka"), Mapping)}
    return sorted(layers, key=lambda layer: (int(layer) if layer.isdigit() else math.inf, layer))


def curves_metric(runs: Sequence[Sequence[Mapping[str, Any]]]) -> str:
    """The primary metric the points name (``acc``, ``f1``...), or ``score`` when none does."""
    names = sorted({str(point["metric"]) for points in runs for point in points if point.get("metric")})
    return "/".join(names) if names else "score"


# ---------------------------------------------------------------- drawing

#: line styles cycled per label, so that methods whose curves coincide stay visible
LINE_STYLES = ("-", "--", ":", "-.", (0, (6, 2, 1, 2)))


def _band(ax, series: Series, color: str, label: str, linestyle="-", band_alpha: float = 0.2) -> None:
    ax.plot(series.updates, series.mean, color=color, label=label, linewidth=1.6, linestyle=linestyle)
    if any(n > 1 for n in series.seeds):
        ax.fill_between(series.updates, series.low, series.high, color=color, alpha=band_alpha, linewidth=0)


def _seed_label(label: str, count: int) -> str:
    return f"{label} ({count} seed{'s' if count != 1 else ''})"


@dataclass(frozen=True)
class GapRun:
    """One label of a gap figure: its gap and training-loss series over its seeds."""

    label: str
    seeds: int
    metric: str
    gap: Series
    loss: Series


def gap_runs(runs: Mapping[str, Sequence[Path]]) -> List[GapRun]:
    """Read and aggregate each label's seeds (:func:`aggregate_curves` of ``gap`` and ``train_loss``)."""
    if not runs:
        raise click.ClickException("no runs to draw")
    out = []
    for label, paths in runs.items():
        loaded = [load_curves(path) for path in paths]
        gap = aggregate_curves(loaded, "gap")
        if not gap.updates:
            raise click.ClickException(f"{label}: no 'gap' in {', '.join(map(str, paths))}")
        out.append(GapRun(label, len(paths), curves_metric(loaded), gap, aggregate_curves(loaded, "train_loss")))
    return out


def draw_gap_curves(runs: Mapping[str, Sequence[Path]], out: Path, title: str = "") -> List[Path]:
    """Fig. 1/2/4/5: per label, the gap (mean over its seeds, min-max band) above the training loss."""
    loaded = gap_runs(runs)
    figure, axes = new_figure(6.4, 6.0, nrows=2, sharex=True)
    gap_ax, loss_ax = axes[0][0], axes[1][0]
    band_alpha = 0.2 if len(loaded) <= 2 else 0.08
    for k, run in enumerate(loaded):
        style = LINE_STYLES[k % len(LINE_STYLES)]
        _band(gap_ax, run.gap, f"C{k}", _seed_label(run.label, run.seeds), style, band_alpha)
        if run.loss.updates:
            _band(loss_ax, run.loss, f"C{k}", run.label, style, band_alpha)
    metrics = "/".join(sorted({run.metric for run in loaded}))
    gap_ax.set_ylabel(f"gap P_src - mean P_tgt\n({metrics} points)")
    loss_ax.set_ylabel("training loss (nats)")
    loss_ax.set_xlabel("updates")
    gap_ax.legend(fontsize=8)
    for ax in (gap_ax, loss_ax):
        ax.grid(alpha=0.3)
    if title:
        gap_ax.set_title(title)
    return save_figure(figure, out)


def draw_cka_curves(curves: Sequence[Path], out: Path, title: str = "") -> List[Path]:
    """Fig. 6: one line per layer of linear CKA to the pretrained model (mean over the seeds' files)."""
    import matplotlib

    loaded = [load_curves(path) for path in curves]
    layers = cka_layers(loaded)
    if not layers:
        raise click.ClickException(f"no 'cka' in {', '.join(map(str, curves))} (fine-tune with --curve-cka)")
    series = {layer: aggregate_curves(loaded, f"cka.{layer}") for layer in layers}
    colormap = matplotlib.colormaps["viridis"]
    figure, axes = new_figure(6.4, 4.2)
    ax = axes[0][0]
    for k, layer in enumerate(layers):
        color = colormap(k / max(len(layers) - 1, 1))
        _band(ax, series[layer], color, f"layer {layer}")
    ax.set_xlabel("updates")
    ax.set_ylabel("linear CKA to the pretrained model")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2 if len(layers) > 6 else 1, loc="best")
    ax.set_title(title or f"CKA per layer ({len(curves)} seed{'s' if len(curves) != 1 else ''})")
    return save_figure(figure, out)


def draw_layer_sweep(sweep: Mapping[str, Mapping[int, float]], baseline: Optional[float], out: Path,
                     metric: str) -> List[Path]:
    """Fig. 3: score against the layer frozen / re-initialised, one line per kind; dotted DF line at ``baseline``.

    ``sweep`` is kind (``"freeze"``, ``"reinit"``) -> layer index -> score; layers a kind lacks are gaps.
    """
    drawn = {kind: scores for kind, scores in sweep.items() if scores}
    if not drawn and baseline is None:
        raise click.ClickException("no layer sweep scores to draw")
    figure, axes = new_figure(6.0, 4.0)
    ax = axes[0][0]
    markers = {"freeze": "s", "reinit": "o"}
    for k, (kind, scores) in enumerate(drawn.items()):
        layers = sorted(scores)
        ax.plot(layers, [scores[layer] for layer in layers], marker=markers.get(kind, "^"), color=f"C{k}",
                label=kind)
    if baseline is not None:
        ax.axhline(baseline, color="black", linestyle=":", linewidth=1.4, label="DF (no layer changed)")
    layers = sorted({layer for scores in drawn.values() for layer in scores})
    if layers:
        ax.set_xticks(layers)
    ax.set_xlabel("layer frozen / re-initialised")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(figure, out)


@dataclass(frozen=True)
class PhaseLog:
    """A slow-fast run's ``fsf_*`` values over updates: name (without ``fsf_``) -> (updates, values)."""

    path: Path
    series: Dict[str, Tuple[List[float], List[float]]]

    @property
    def multipliers(self) -> List[str]:
        """The per-set multipliers ``K_<set>`` logged, sorted."""
        return sorted(name for name in self.series if name.startswith(K_PREFIX[len(FSF_PREFIX):]))


def read_phases(log: Path) -> PhaseLog:
    """The ``fsf_*`` values of ``train_inner`` records (``num_updates`` as x) of a fairseq JSON log."""
    if not log.is_file():
        raise click.ClickException(f"{log}: no such log (the train.log of a slow-fast run)")
    records = parse_log_records(log.read_text(encoding="utf-8", errors="replace").splitlines(), "train_inner")
    series: Dict[str, Tuple[List[float], List[float]]] = {}
    for record in supersede(records, "num_updates"):
        update = float(record["num_updates"])
        for key, raw in record.items():
            value = as_float(raw)
            if key.startswith(FSF_PREFIX) and value is not None and math.isfinite(value):
                xs, ys = series.setdefault(key[len(FSF_PREFIX):], ([], []))
                xs.append(update)
                ys.append(value)
    if "p1" not in series:
        raise click.ClickException(f"{log}: no fsf_p1 in its train_inner records (not a slow-fast run: "
                                   "xlint finetune --method fsf|fs|ff, with --log-format json)")
    return PhaseLog(log, series)


def fast_spans(updates: Sequence[float], p1: Sequence[float]) -> List[Tuple[float, float]]:
    """The update ranges of log intervals mostly in P1 (``fsf_p1 >= 0.5``), merged; an interval ends at its record."""
    spans: List[Tuple[float, float]] = []
    previous = 0.0
    for update, fraction in zip(updates, p1):
        if fraction >= 0.5:
            if spans and spans[-1][1] == previous:
                spans[-1] = (spans[-1][0], update)
            else:
                spans.append((previous, update))
        previous = update
    return spans


def draw_phases(log: Path, out: Path) -> List[Path]:
    """The phase (fraction of each log interval in P1), ``R`` and ``K_<set>`` (symlog), and the loss, over updates.

    A ``train_inner`` record at update u averages the interval ending at u: the phase and the
    multipliers are drawn as steps over that interval, P1 intervals (:func:`fast_spans`) shaded.
    """
    phases = read_phases(log)
    figure, axes = new_figure(6.8, 7.0, nrows=3, sharex=True, gridspec_kw={"height_ratios": [1, 2, 1.6]})
    phase_ax, k_ax, loss_ax = (row[0] for row in axes)
    updates, p1 = phases.series["p1"]
    for ax in (phase_ax, k_ax, loss_ax):
        for start, end in fast_spans(updates, p1):
            ax.axvspan(start, end, color="tab:orange", alpha=0.12, linewidth=0)
        ax.grid(alpha=0.3)
    phase_ax.step(updates, p1, where="pre", color="tab:orange", label="fraction in P1")
    if "policy_iv" in phases.series:
        phase_ax.step(*phases.series["policy_iv"], where="pre", color="tab:purple", linestyle="--",
                      label="Policy IV on")
    phase_ax.set_ylim(-0.05, 1.05)
    phase_ax.set_ylabel("phase")
    phase_ax.legend(fontsize=7, loc="center right")
    phase_ax.set_title(f"slow-fast phases ({log.parent.name}/{log.name}; shaded: P1)", fontsize=9)
    for k, name in enumerate(["R"] * ("R" in phases.series) + phases.multipliers):
        style = {"color": "black", "linestyle": ":"} if name == "R" else {"color": MULTIPLIER_COLORS[k % 8]}
        k_ax.step(*phases.series[name], where="pre", label=name, linewidth=1.4, **style)
    k_ax.set_yscale("symlog", linthresh=MULTIPLIER_LINTHRESH)
    k_ax.set_ylabel(f"multiplier (symlog, linear below {MULTIPLIER_LINTHRESH:g})")
    k_ax.legend(fontsize=7, ncol=2)
    if "loss" in phases.series:
        loss_ax.plot(*phases.series["loss"], color="tab:blue")
    loss_ax.set_ylabel("fsf_loss (nats)")
    loss_ax.set_xlabel("updates")
    return save_figure(figure, out)


# ---------------------------------------------------------------- commands

def parse_labelled(specs: Sequence[str]) -> Dict[str, Path]:
    """``LABEL=SAVE_DIR`` arguments as an ordered label -> path map (labels unique, both sides non-empty)."""
    runs: Dict[str, Path] = {}
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep or not label.strip() or not path:
            raise click.BadParameter(f"{spec!r}: expected LABEL=SAVE_DIR", param_hint="RUNS")
        if label in runs:
            raise click.BadParameter(f"label {label!r} given twice", param_hint="RUNS")
        if not Path(path).is_dir():
            raise click.BadParameter(f"{path}: no such directory (an xlint finetune SAVE_DIR)", param_hint="RUNS")
        runs[label] = Path(path)
    return runs


def _echo_written(paths: Sequence[Path]) -> None:
    for path in paths:
        click.echo(f"wrote {path}")


OUT_OPTION = click.option("--out", type=click.Path(path_type=Path), required=True,
                          help="output stem: OUT.png and OUT.pdf")
TITLE_OPTION = click.option("--title", default="", help="figure title")


@click.command("guo-gap")
@click.argument("runs", nargs=-1, required=True, metavar="LABEL=SAVE_DIR...")
@OUT_OPTION
@TITLE_OPTION
def guo_gap_plot(runs: Tuple[str, ...], out: Path, title: str) -> None:
    """Draw Fig. 1/2/4/5: the gap P_src - mean P_tgt and the loss over updates, one line per LABEL (seed band)."""
    labelled = parse_labelled(runs)
    _echo_written(draw_gap_curves({label: chosen_curves(path) for label, path in labelled.items()}, out, title))


@click.command("guo-cka")
@click.argument("save_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@OUT_OPTION
@TITLE_OPTION
def guo_cka_plot(save_dir: Path, out: Path, title: str) -> None:
    """Draw Fig. 6: each layer's linear CKA to the pretrained model over updates (SAVE_DIR of --curve-cka runs)."""
    _echo_written(draw_cka_curves(chosen_curves(save_dir), out, title))


@click.command("guo-phases")
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True))
@OUT_OPTION
def guo_phases_plot(run_dir: Path, out: Path) -> None:
    """Draw a slow-fast run's phase, multipliers and loss over updates (RUN_DIR holds train.log, or give the log)."""
    _echo_written(draw_phases(run_dir / "train.log" if run_dir.is_dir() else run_dir, out))

"""``xlint plot grad-sim``: gradient cosine similarity over training (Wang et al. 2020, Fig. 3).

Reads the rows that ``fairseq-train --grad-sim-interval`` writes to ``SAVE_DIR/grad_sim.jsonl``
(or that ``xlint grad-sim`` writes for saved checkpoints) and draws

* ``OUT.{png,pdf}``: the cosine of one parameter group (default: all shared parameters) over
  updates or epochs, one solid line per language pair of every run and a dashed line per
  language for the similarity within it (two independent probes: the paper's "En-En");
* ``OUT_layers.{png,pdf}``: a heat map per run of one pair's cosine per layer and sublayer
  (rows: embeddings, every layer's attention / FFN / adapters / layer norms, the LM head)
  over the measurements.

With ``--x epoch`` the measurements of an epoch are averaged (re-aggregated from their
dots and squared norms, i.e. the cosine of the summed gradients).
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import click

from .figures import figure_stem, new_figure, save_figure

RUN_FILES = ("grad_sim.jsonl", "grad_sim_offline.jsonl")


@dataclass
class GradSimRun:
    label: str
    path: Path
    #: (update, pair, group) -> row; a later row of the same key wins
    rows: Dict[Tuple[int, str, str], dict]

    @property
    def pairs(self) -> List[str]:
        seen = {key[1]: self.rows[key] for key in self.rows}
        cross = sorted(p for p, r in seen.items() if r["lang_a"] != r["lang_b"])
        within = sorted(p for p, r in seen.items() if r["lang_a"] == r["lang_b"])
        return cross + within

    def is_within(self, pair: str) -> bool:
        a, _, b = pair.partition("-")
        return a == b


def resolve_run_file(run: Path) -> Path:
    if run.is_file():
        return run
    for name in RUN_FILES:
        if (run / name).is_file():
            return run / name
    raise click.BadParameter(f"{run}: no {' or '.join(RUN_FILES)} (train with --grad-sim-interval, or run "
                             "`xlint grad-sim`)", param_hint="RUNS")


def load_run(run: Path, label: Optional[str] = None) -> GradSimRun:
    path = resolve_run_file(run)
    rows: Dict[Tuple[int, str, str], dict] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                row = json.loads(line)
                rows[(int(row["update"]), str(row["pair"]), str(row["group"]))] = row
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line, or not a probe row
    if not rows:
        raise click.BadParameter(f"{path}: no gradient-similarity rows", param_hint="RUNS")
    return GradSimRun(label or (run.name if run.is_dir() else run.stem), path, rows)


def series(run: GradSimRun, pair: str, group: str, x: str) -> Tuple[List[float], List[float]]:
    """x values and cosines of one pair and group, in order; ``x="epoch"`` re-aggregates per epoch."""
    points = sorted((update, row) for (update, p, g), row in run.rows.items() if p == pair and g == group)
    if x == "update":
        return ([float(u) for u, r in points if r.get("cos") is not None],
                [float(r["cos"]) for _, r in points if r.get("cos") is not None])
    sums: Dict[int, List[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for _, r in points:
        if r.get("epoch") is None or not r.get("finite", True) or r.get("dot") is None:
            continue
        s = sums[int(r["epoch"])]
        s[0] += r["dot"]
        s[1] += r["sq_norm_a"]
        s[2] += r["sq_norm_b"]
    xs, ys = [], []
    for epoch in sorted(sums):
        dot, na, nb = sums[epoch]
        if na > 0 and nb > 0:
            xs.append(float(epoch))
            ys.append(dot / math.sqrt(na * nb))
    return xs, ys


def layer_groups(run: GradSimRun) -> List[str]:
    """The heat map's rows, bottom of the network first: embeddings, each layer's sublayers, lm_head."""
    from ..analysis.gradient_similarity import group_sort_key

    groups = {key[2] for key in run.rows}
    rows = [g for g in groups if g == "embeddings" or g == "lm_head" or (g.startswith("layer") and "." in g)]
    return sorted(rows, key=group_sort_key)


def line_figure(runs: Sequence[GradSimRun], group: str, x: str):
    """Fig. 3: one group's cosine over training, per pair (solid) and within languages (dashed)."""
    figure, axes = new_figure(7.0, 4.0)
    ax = axes[0][0]
    colors = iter(f"C{i}" for i in range(100))
    drawn = 0
    for run in runs:
        for pair in run.pairs:
            xs, ys = series(run, pair, group, x)
            if not xs:
                continue
            label = pair if len(runs) == 1 else f"{run.label}: {pair}"
            within = run.is_within(pair)
            ax.plot(xs, ys, linestyle="--" if within else "-", marker="o" if len(xs) < 30 else None,
                    markersize=3, color=next(colors), label=label + (" (within)" if within else ""))
            drawn += 1
    if not drawn:
        import matplotlib.pyplot as plt

        plt.close(figure)
        raise click.BadParameter(f"no finite cosine of group {group!r} in the runs", param_hint="--group")
    ax.axhline(0.0, color="0.5", linewidth=0.8)
    ax.set_xlabel("update" if x == "update" else "epoch")
    ax.set_ylabel("cosine similarity")
    title = f"Gradient similarity of the shared parameters ({group})"
    ax.set_title(title + (f"\n{runs[0].label}" if len(runs) == 1 else ""), fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return figure


def heatmap_figure(runs: Sequence[GradSimRun], pair: Optional[str]):
    """One pair's cosine per layer and sublayer over the measurements, a panel per run."""
    import numpy as np

    panels = []
    for run in runs:
        chosen = pair or (run.pairs[0] if run.pairs else None)
        if chosen is None or chosen not in run.pairs:
            raise click.BadParameter(f"{run.path}: no pair {chosen!r} (has {', '.join(run.pairs)})",
                                     param_hint="--pair")
        groups = layer_groups(run)
        updates = sorted({key[0] for key in run.rows if key[1] == chosen})
        grid = np.full((len(groups), len(updates)), np.nan)
        for i, group in enumerate(groups):
            for j, update in enumerate(updates):
                row = run.rows.get((update, chosen, group))
                if row is not None and row.get("cos") is not None:
                    grid[i, j] = row["cos"]
        panels.append((run, chosen, groups, updates, grid))
    height = max(2.5, 0.22 * max(len(p[2]) for p in panels) + 1.2)
    figure, axes = new_figure(6.0 * len(panels), height, ncols=len(panels))
    image = None
    for ax, (run, chosen, groups, updates, grid) in zip(axes[0], panels):
        image = ax.imshow(grid, aspect="auto", cmap="RdBu", vmin=-1, vmax=1, origin="lower", interpolation="nearest")
        ax.set_yticks(range(len(groups)))
        ax.set_yticklabels(groups, fontsize=7)
        step = max(1, len(updates) // 8)
        ax.set_xticks(range(0, len(updates), step))
        ax.set_xticklabels([str(updates[k]) for k in range(0, len(updates), step)], fontsize=7)
        ax.set_xlabel("update")
        ax.set_title(f"{run.label}: {chosen}" if len(panels) > 1 else f"{chosen} per layer", fontsize=9)
    figure.colorbar(image, ax=list(axes[0]), label="cosine similarity", shrink=0.9)
    return figure


def draw_grad_sim(runs: Sequence[GradSimRun], group: str, x: str, pair: Optional[str], out: Path) -> List[Path]:
    """Both figures, saved only once both could be drawn: OUT.{png,pdf} and OUT_layers.{png,pdf}."""
    import matplotlib.pyplot as plt

    lines = line_figure(runs, group, x)
    try:
        heat = heatmap_figure(runs, pair)
    except BaseException:
        plt.close(lines)
        raise
    stem = figure_stem(out)
    return save_figure(lines, stem) + save_figure(heat, stem.with_name(stem.name + "_layers"))


@click.command("grad-sim")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="output stem: writes OUT.png, OUT.pdf, OUT_layers.png, OUT_layers.pdf")
@click.option("--x", "x_axis", type=click.Choice(["update", "epoch"]), default="update", show_default=True,
              help="horizontal axis (epoch: the epoch's measurements re-aggregated)")
@click.option("--group", default="total", show_default=True,
              help="parameter group of the line plot: total, embeddings, attention, ffn, layer<k>, "
              "layer<k>.attention, ...")
@click.option("--pair", help="pair of the per-layer heat map, e.g. fr-en (default: each run's first pair)")
@click.option("--label", "labels", multiple=True, help="legend label per run (repeat; default: folder names)")
def grad_sim_plot(runs: Tuple[Path, ...], out: Path, x_axis: str, group: str, pair: Optional[str],
                  labels: Tuple[str, ...]) -> None:
    """Draw Fig. 3 from RUNS (save dirs holding grad_sim.jsonl, or such files)."""
    if labels and len(labels) != len(runs):
        raise click.BadParameter(f"{len(labels)} labels for {len(runs)} runs", param_hint="--label")
    loaded = [load_run(run, labels[i] if labels else None) for i, run in enumerate(runs)]
    for path in draw_grad_sim(loaded, group, x_axis, pair, out):
        click.echo(f"wrote {path}")

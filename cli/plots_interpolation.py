"""``xlint plot interpolation``: the figures of Wu et al. (2022) from ``xlint interpolate aggregate``.

* ``--figure 1d`` (Fig. 2): the normalised score (over the matching bilingual model) of the
  source and target languages against α, mean over seeds (and pairs and tasks) with the 95%
  t-interval as a band; a second panel shows each language's raw score (mean and band);
* ``--figure variance`` (Fig. 5): the normalised variance over seeds against α;
* ``--figure 2d`` (Fig. 3, 10): per 2D experiment and language, contours of the mean normalised
  score over (α1, α2), the three fine-tuned models marked;
* ``--figure geometry`` (Fig. 4): ‖δ_src‖/‖δ_tgt‖ against the angle between δ_src and δ_tgt.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import click

from .figures import new_figure, save_figure

FIGURES = ("1d", "variance", "2d", "geometry")
ROLE_STYLE = {"source": ("tab:red", "source"), "target": ("tab:blue", "target"), "other": ("tab:gray", "other")}


def load_aggregate(path: Path) -> Dict[str, Any]:
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise click.BadParameter(f"{path}: cannot read it ({error})", param_hint="AGGREGATE") from None
    if not isinstance(result, dict) or "pooled" not in result or "experiments" not in result:
        raise click.BadParameter(f"{path} is not written by `xlint interpolate aggregate`", param_hint="AGGREGATE")
    return result


def _band(ax, xs, stats: List[Dict[str, Any]], color: str, label: str) -> None:
    means = [s["mean"] for s in stats]
    ax.plot(xs, means, color=color, marker=".", label=label)
    lows = [s["ci_low"] if s["ci_low"] is not None else s["mean"] for s in stats]
    highs = [s["ci_high"] if s["ci_high"] is not None else s["mean"] for s in stats]
    ax.fill_between(xs, lows, highs, color=color, alpha=0.2, linewidth=0)


def draw_1d(result: Dict[str, Any], out: Path, variance: bool = False) -> List[Path]:
    pooled = [row for row in result["pooled"] if row["mode"] == "1d"]
    if not pooled:
        raise click.BadParameter("the aggregate holds no 1D sweep", param_hint="AGGREGATE")
    level = int(round(result["level"] * 100))
    if variance:
        figure, axes = new_figure(4.2, 3.2)
        ax = axes[0][0]
        for role, (color, label) in ROLE_STYLE.items():
            rows = sorted((r for r in pooled if r["role"] == role and r["normalised_variance"] is not None),
                          key=lambda r: r["point"][0])
            if rows:
                ax.plot([r["point"][0] for r in rows], [r["normalised_variance"] for r in rows], color=color,
                        marker=".", label=label)
        ax.set_xlabel("α (0: CKPT_A, 1: bilingual)")
        ax.set_ylabel("normalised variance over seeds")
        ax.set_title("Normalised variance (Wu et al. 2022, Fig. 5)", fontsize=9)
        ax.legend(fontsize=8)
        return save_figure(figure, out)
    figure, axes = new_figure(8.4, 3.2, ncols=2)
    ax = axes[0][0]
    for role, (color, label) in ROLE_STYLE.items():
        rows = sorted((r for r in pooled if r["role"] == role and r["normalised"]["mean"] is not None),
                      key=lambda r: r["point"][0])
        if rows:
            _band(ax, [r["point"][0] for r in rows], [r["normalised"] for r in rows], color, label)
    ax.axvline(0, color="k", linewidth=0.5, linestyle=":")
    ax.axvline(1, color="k", linewidth=0.5, linestyle=":")
    ax.set_xlabel("α (0: CKPT_A, 1: bilingual)")
    ax.set_ylabel("score / bilingual model's")
    ax.set_title(f"Normalised, mean and {level}% t-interval", fontsize=9)
    ax.legend(fontsize=8)
    ax = axes[0][1]
    colors = ["tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown"]
    series = 0
    for experiment in result["experiments"]:
        if experiment["mode"] != "1d":
            continue
        metric = experiment["primary_metric"]
        languages = list(dict.fromkeys(row["language"] for row in experiment["rows"]))
        for lang in languages:
            rows = sorted((r for r in experiment["rows"] if r["language"] == lang and r["metric"] == metric),
                          key=lambda r: r["point"][0])
            role = rows[0]["role"] if rows else ""
            _band(ax, [r["point"][0] for r in rows], [r["score"] for r in rows], colors[series % len(colors)],
                  f"{lang} ({role}) {metric}")
            series += 1
    ax.set_xlabel("α")
    ax.set_ylabel("dev score (%)")
    ax.set_title(f"Raw score, mean and {level}% t-interval over seeds", fontsize=9)
    ax.legend(fontsize=7)
    return save_figure(figure, out)


def draw_2d(result: Dict[str, Any], out: Path) -> List[Path]:
    import numpy as np

    panels = []
    for experiment in result["experiments"]:
        if experiment["mode"] != "2d":
            continue
        metric = experiment["primary_metric"]
        for lang in dict.fromkeys(row["language"] for row in experiment["rows"]):
            rows = [r for r in experiment["rows"] if r["language"] == lang and r["metric"] == metric
                    and r["normalised"]["mean"] is not None]
            if rows:
                panels.append((experiment, lang, rows))
    if not panels:
        raise click.BadParameter("the aggregate holds no 2D sweep", param_hint="AGGREGATE")
    figure, axes = new_figure(4.4 * len(panels), 3.6, ncols=len(panels), layout="constrained")
    for ax, (experiment, lang, rows) in zip(axes[0], panels):
        xs = sorted({r["point"][0] for r in rows})
        ys = sorted({r["point"][1] for r in rows})
        grid = np.full((len(ys), len(xs)), np.nan)
        for r in rows:
            grid[ys.index(r["point"][1]), xs.index(r["point"][0])] = r["normalised"]["mean"]
        contour = ax.contourf(xs, ys, grid, levels=12, cmap="viridis")
        ax.contour(xs, ys, grid, levels=12, colors="k", linewidths=0.3)
        figure.colorbar(contour, ax=ax)
        for (x, y), name in (((0, 0), "bi"), ((1, 0), "src"), ((0, 1), "tgt")):
            ax.plot([x], [y], marker="o", color="w", markeredgecolor="k", markersize=5)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color="w")
        role = rows[0]["role"]
        ax.set_title(f"{lang} ({role}) {metric} / bilingual, {len(experiment['seeds'])} seed(s)", fontsize=9)
        ax.set_xlabel("α1 (δ_src)")
        ax.set_ylabel("α2 (δ_tgt)")
    return save_figure(figure, out)


def draw_geometry(result: Dict[str, Any], out: Path) -> List[Path]:
    points = [g for g in result["geometry"] if g.get("norm_ratio") is not None and g.get("angle_degrees") is not None]
    if not points:
        raise click.BadParameter("the aggregate holds no 2D sweep with finite norms", param_hint="AGGREGATE")
    figure, axes = new_figure(4.0, 3.2)
    ax = axes[0][0]
    for experiment in dict.fromkeys(g["experiment"] for g in points):
        chosen = [g for g in points if g["experiment"] == experiment]
        ax.scatter([g["angle_degrees"] for g in chosen], [g["norm_ratio"] for g in chosen], label=experiment, s=18)
    ax.set_xlabel("angle between δ_src and δ_tgt (degrees)")
    ax.set_ylabel("‖δ_src‖ / ‖δ_tgt‖")
    ax.set_title("Wu et al. 2022, Fig. 4", fontsize=9)
    ax.legend(fontsize=7)
    return save_figure(figure, out)


@click.command("interpolation")
@click.argument("aggregate", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--figure", "which", type=click.Choice(FIGURES), default="1d", show_default=True,
              help="1d: Fig. 2 curves with the CI band; variance: Fig. 5; 2d: Fig. 3 contours; geometry: Fig. 4")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="figure stem: writes OUT.png and OUT.pdf")
def interpolation_plot(aggregate: Path, which: str, out: Path) -> None:
    """Draw Wu et al. (2022)'s interpolation figures from AGGREGATE (xlint interpolate aggregate's JSON)."""
    result = load_aggregate(aggregate)
    if which == "2d":
        paths = draw_2d(result, out)
    elif which == "geometry":
        paths = draw_geometry(result, out)
    else:
        paths = draw_1d(result, out, variance=which == "variance")
    click.echo(f"written: {', '.join(str(p) for p in paths)}")

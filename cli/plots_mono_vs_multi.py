"""``xlint plot mono-vs-multi``: monolingual against bilingual models, within-language (Wang et al. 2020, Fig. 1).

Fig. 1 compares, per language, the within-language NER F1 of the monolingual model (Mono,
pretrained on the language alone) with the bilingual one (JointPair, the language + en) and
XLM: where Mono wins, the second language interferes negatively.  The runs are Table 2's
(``recipes/wang2020_table2_downstream.sh``, or ``recipes/wang2020_fig1_mono_vs_multi.sh``):
``RUN_DIR/<lang>/<row>/<task>-within/results.json``, read through Table 2's spec
(:mod:`.report_tables`: its columns are the languages, its within-language ``mono`` and
``jointpair`` rows the bars), so a bar is exactly the table's cell: the mean over seeds of
the test score, with the sample standard deviation as the error bar.  ``--published`` adds
the paper's Table 2 numbers (Mono, JointPair and XLM) as hatched bars.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import click

from .figures import new_figure, save_figure

#: (Table 2 row key, legend label) of our bars, in drawing order
OUR_ROWS = (("mono", "Mono"), ("jointpair", "JointPair"))
#: the paper's bars with --published: Fig. 1's three models
PUBLISHED_ROWS = (("mono", "Mono (paper)"), ("jointpair", "JointPair (paper)"), ("xlm", "XLM (paper)"))
SECTION = "within"


@dataclass
class Series:
    """One bar per language: ``means[i]`` (None where there is no run) and ``stds[i]`` (None: one seed)."""

    label: str
    means: List[Optional[float]]
    stds: List[Optional[float]]
    published: bool = False


@dataclass
class BarData:
    task: str
    metric: str
    languages: List[str]
    series: List[Series]


def task_columns(task: str) -> Tuple[str, List[str]]:
    """The metric and the language columns (without ``avg``) of Table 2's group ``task`` (ner or pos)."""
    from .report_tables import get_spec

    spec = get_spec("wang2020", "2")
    for group in spec.column_groups:
        if group.key == task:
            return str(group.vars["metric"]), [column.key for column in group.items if "average" not in column.vars]
    raise click.BadParameter(f"Table 2 has no task {task!r} (has {', '.join(g.key for g in spec.column_groups)})",
                             param_hint="--task")


def mono_vs_multi_bars(run_dirs: Sequence[Path], task: str = "ner", with_published: bool = False) -> BarData:
    """The bars of Fig. 1: per language of Table 2's ``task`` columns that has a Mono or JointPair run,
    the mean ± std over seeds of the within-language test score (Table 2's cells); with
    ``with_published`` also the paper's Mono, JointPair and XLM numbers (first number of the cell)."""
    from .report_tables import build_table, get_spec, printed_numbers

    metric, columns = task_columns(task)
    table = build_table(get_spec("wang2020", "2"), run_dirs, with_published=with_published)

    def ours(row: str, lang: str) -> Tuple[Optional[float], Optional[float]]:
        cell = table.cells[(f"{SECTION}/{row}", f"{task}/{lang}")]
        if not cell.complete:
            return None, None
        stat = cell.stats[0]
        return stat.mean, stat.std

    languages = [lang for lang in columns if any(ours(row, lang)[0] is not None for row, _ in OUR_ROWS)]
    if not languages:
        dirs = ", ".join(str(d) for d in run_dirs)
        raise click.BadParameter(f"no finished {task} within-language run of Mono or JointPair below {dirs} "
                                 f"(expected <lang>/mono/{task}-within/results.json with test results, "
                                 f"<lang> one of {', '.join(columns)})", param_hint="RUN_DIRS")
    series = []
    for row, label in OUR_ROWS:
        pairs = [ours(row, lang) for lang in languages]
        series.append(Series(label, [p[0] for p in pairs], [p[1] for p in pairs]))
    if with_published:
        for row, label in PUBLISHED_ROWS:
            means: List[Optional[float]] = []
            for lang in languages:
                text = table.cells[(f"{SECTION}/{row}", f"{task}/{lang}")].published
                numbers = printed_numbers(text) if text else []
                means.append(numbers[0] if numbers else None)
            series.append(Series(label, means, [None] * len(languages), published=True))
    return BarData(task, metric, languages, series)


def draw_mono_vs_multi(data: BarData, out: Path) -> List[Path]:
    """Grouped bars: one group per language, one bar per series (ours solid with std error bars,
    the paper's hatched), the value printed above each bar."""
    count = len(data.series)
    width = 0.8 / count
    figure, axes = new_figure(max(3.5, 0.5 * len(data.languages) * count + 1.5), 3.6)
    ax = axes[0][0]
    drawn = [m for s in data.series for m in s.means if m is not None]
    for k, series in enumerate(data.series):
        xs = [i + (k - (count - 1) / 2) * width for i in range(len(data.languages))]
        points = [(x, m, s) for x, m, s in zip(xs, series.means, series.stds) if m is not None]
        if not points:
            continue
        color = f"C{k % 2}" if not series.published else ("C0", "C1", "C2")[min(k - len(OUR_ROWS), 2)]
        bars = ax.bar([p[0] for p in points], [p[1] for p in points], width, label=series.label, color=color,
                      alpha=0.45 if series.published else 0.9, hatch="//" if series.published else None,
                      edgecolor="k", linewidth=0.5,
                      yerr=[p[2] or 0.0 for p in points] if not series.published else None, capsize=2)
        ax.bar_label(bars, labels=[f"{p[1]:.1f}" for p in points], fontsize=6, padding=1)
    low, high = min(drawn), max(drawn)
    margin = max(2.0, (high - low) * 0.15)
    ax.set_ylim(max(0.0, low - margin), min(100.0, high + margin) if high <= 100 else high + margin)
    ax.set_xticks(range(len(data.languages)))
    ax.set_xticklabels(data.languages)
    ax.set_xlabel("language (fine-tuned and tested on it)")
    ax.set_ylabel(f"{data.task.upper()} test {data.metric.upper()} (within-language)")
    ax.set_title("Monolingual vs multilingual models (Wang et al. 2020, Fig. 1)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return save_figure(figure, out)


@click.command("mono-vs-multi")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="figure stem: writes OUT.png and OUT.pdf")
@click.option("--task", type=click.Choice(["ner", "pos"]), default="ner", show_default=True,
              help="Table 2's task (the paper's Fig. 1 is NER)")
@click.option("--published", is_flag=True, help="also draw the paper's Mono, JointPair and XLM numbers (Table 2)")
def mono_vs_multi_plot(run_dirs: Tuple[Path, ...], out: Path, task: str, published: bool) -> None:
    """Draw Fig. 1 from RUN_DIRS (Table 2's layout: <lang>/{mono,jointpair}/<task>-within/results.json)."""
    data = mono_vs_multi_bars(run_dirs, task, published)
    for path in draw_mono_vs_multi(data, out):
        click.echo(f"wrote {path}")

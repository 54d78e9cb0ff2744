"""``xlint plot ppl``: validation perplexity per language over training (Wang et al. 2020, Fig. 2).

Reads every run's fairseq JSON log (``RUN/train.log`` as ``xlint pretrain`` writes it, or a
log file) with :func:`xlint.cli.fairseq_logs.validation_history` (a resumed run's repeated
validations are superseded) and draws one panel per language, one line per run, of
``valid_ppl_<lang>`` over updates or epochs (log scale): e.g. Mono against JointPair.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import click

from .fairseq_logs import as_float, resolve_log, validation_history
from .figures import new_figure, save_figure

PPL_PREFIX = "valid_ppl_"


@dataclass
class PplRun:
    label: str
    path: Path
    #: language -> [(update, epoch, perplexity)]
    curves: Dict[str, List[Tuple[float, float, float]]]


def load_ppl_run(run: Path, label: Optional[str] = None) -> PplRun:
    path = resolve_log(run)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    curves: Dict[str, List[Tuple[float, float, float]]] = {}
    for record in validation_history(lines):
        update, epoch = as_float(record.get("valid_num_updates")), as_float(record.get("epoch"))
        for key, value in record.items():
            ppl = as_float(value)
            if key.startswith(PPL_PREFIX) and ppl is not None and update is not None:
                curves.setdefault(key[len(PPL_PREFIX):], []).append((update, epoch or 0.0, ppl))
    if not curves:
        raise click.BadParameter(f"{path}: no per-language validation perplexity (valid_ppl_<lang>) in the log "
                                 "(train with --log-format json)", param_hint="RUNS")
    return PplRun(label or (run.name if run.is_dir() else run.stem), path, curves)


def draw_ppl(runs: Sequence[PplRun], languages: Sequence[str], x: str, out: Path) -> List[Path]:
    figure, axes = new_figure(3.6 * len(languages), 3.4, ncols=len(languages))
    for ax, lang in zip(axes[0], languages):
        for k, run in enumerate(runs):
            points = run.curves.get(lang)
            if not points:
                continue
            xs = [p[0] if x == "update" else p[1] for p in points]
            ax.plot(xs, [p[2] for p in points], marker="o", markersize=3, color=f"C{k}", label=run.label)
        ax.set_yscale("log")
        ax.set_title(lang)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("validation perplexity")
    return save_figure(figure, out)


@click.command("ppl")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="output stem: OUT.png and OUT.pdf")
@click.option("--x", "x_axis", type=click.Choice(["update", "epoch"]), default="update", show_default=True)
@click.option("--languages", help="comma-separated panels (default: every language of the runs)")
@click.option("--label", "labels", multiple=True, help="legend label per run (repeat; default: folder names)")
def ppl_plot(runs: Tuple[Path, ...], out: Path, x_axis: str, languages: Optional[str],
             labels: Tuple[str, ...]) -> None:
    """Draw Fig. 2 from RUNS (save dirs holding train.log, or fairseq JSON logs)."""
    if labels and len(labels) != len(runs):
        raise click.BadParameter(f"{len(labels)} labels for {len(runs)} runs", param_hint="--label")
    loaded = [load_ppl_run(run, labels[i] if labels else None) for i, run in enumerate(runs)]
    seen: List[str] = []
    for run in loaded:
        seen += [lang for lang in run.curves if lang not in seen]
    chosen = [code.strip() for code in languages.split(",") if code.strip()] if languages else seen
    missing = [lang for lang in chosen if lang not in seen]
    if missing:
        raise click.BadParameter(f"no validation perplexity for {', '.join(missing)} (have {', '.join(seen)})",
                                 param_hint="--languages")
    for path in draw_ppl(loaded, chosen, x_axis, out):
        click.echo(f"wrote {path}")

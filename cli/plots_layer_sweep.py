"""``xlint plot guo-layers``: the one-layer freeze / re-initialisation sweep (Guo et al. 2023, Fig. 3).

Reads ``SWEEP_DIR`` with :func:`.layer_sweep.read_layer_sweep` (``df/``, ``freeze-layer-<k>/``,
``reinit-layer-<k>/``, each with ``TASK-zero-shot/results.json``; the score is the zero-shot
target-language average test score, mean over seeds) and draws it with
:func:`.plots_guo.draw_layer_sweep`: x = the layer chosen, one line per kind, DF dotted.
Missing runs are listed on stderr and left out of the lines; no run at all is an error.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from .layer_sweep import read_layer_sweep


@click.command("guo-layers")
@click.argument("sweep_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--task", required=True, help="the runs' task folder prefix: SWEEP_DIR/<method>/TASK-zero-shot/")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="output stem: OUT.png and OUT.pdf")
@click.option("--metric", help="test metric of the target average [the task's: XNLI acc, MLQA/NER f1]")
def guo_layers_plot(sweep_dir: Path, task: str, out: Path, metric: Optional[str]) -> None:
    """Draw Fig. 3 from SWEEP_DIR: per-layer freeze and re-init scores against DF."""
    from .plots_guo import draw_layer_sweep

    sweep = read_layer_sweep(sweep_dir, task, metric)
    if not sweep.freeze and not sweep.reinit:
        example = sweep.missing[-1] if sweep.missing else "no such folders"
        raise click.ClickException(f"{sweep_dir}: no freeze-layer-<k> or reinit-layer-<k> run of {task} with test "
                                   f"results ({example})")
    for entry in sweep.missing:
        click.echo(f"missing: {entry}", err=True)
    for path in draw_layer_sweep(sweep.kinds(), sweep.baseline, out, f"{sweep.metric} (target-language average, test)"):
        click.echo(f"wrote {path}")

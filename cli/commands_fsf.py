"""``xlint fsf``: helpers of fine-tuning slow and fast (Guo et al. 2023).

``xlint fsf derive-sets SWEEP_DIR --task TASK`` reads the one-layer freeze / re-initialisation
sweep of Fig. 3 (:mod:`.layer_sweep`: ``SWEEP_DIR/df``, ``freeze-layer-<k>``, ``reinit-layer-<k>``,
each holding ``TASK-zero-shot/results.json``), prints every layer's score beside DF's, lists the
missing runs and the derivation's warnings (on stderr), and ends with ONE line of
``--fsf-s1 ... --fsf-s2 ... --fsf-v1 ... --fsf-v2 ...`` to paste into ``xlint finetune --method fsf``.
The rule (S^I: re-init drops more than ``--reinit-drop`` points; S^II: the S^I layers whose
freezing beats DF by more than ``--freeze-gain``, feed-forward weights; V: the layers above S^I)
is :func:`.layer_sweep.derive_sets`'s.  ``xlint fsf layers PRETRAINED`` prints the encoder depth L
(the recipes size their layer ranges with it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from .layer_sweep import DF_DIR, derive_sets, encoder_depth, read_layer_sweep, score_table


@click.group("fsf")
def fsf() -> None:
    """Fine-tuning slow and fast (Guo et al. 2023): derive its weight sets from a layer sweep."""


@fsf.command("derive-sets")
@click.argument("sweep_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--task", required=True, help="the runs' task folder prefix: SWEEP_DIR/<method>/TASK-zero-shot/")
@click.option("--reinit-drop", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="a layer is in S^I when re-initialising it drops the score more than this many points below DF")
@click.option("--freeze-gain", type=float, default=0.0, show_default=True,
              help="an S^I layer is in S^II when freezing it beats DF by more than this many points")
@click.option("--metric", help="test metric of the target average [the task's: XNLI acc, MLQA/NER f1]")
def derive_sets_command(sweep_dir: Path, task: str, reinit_drop: float, freeze_gain: float,
                        metric: Optional[str]) -> None:
    """Print SWEEP_DIR's per-layer scores vs DF and the --fsf-* options they imply (Guo et al. Sec. 3)."""
    sweep = read_layer_sweep(sweep_dir, task, metric)
    if sweep.empty:
        raise click.ClickException(f"{sweep_dir}: no runs of {task} (expected df/{task}-zero-shot/results.json "
                                   f"and freeze-layer-<k>/, reinit-layer-<k>/ beside it)")
    if sweep.baseline is None:
        reason = next(entry for entry in sweep.missing if entry.startswith(f"{DF_DIR}/"))
        raise click.ClickException(f"{sweep_dir / reason}: no DF score; every layer is compared with it")
    click.echo("\n".join(score_table(sweep)))
    if sweep.missing:
        click.echo(f"\nMissing ({len(sweep.missing)}):")
        for entry in sweep.missing:
            click.echo(f"- {entry}")
    derived = derive_sets(sweep, reinit_drop, freeze_gain)
    for warning in derived.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo("")
    click.echo(derived.options())


@fsf.command("layers")
@click.argument("pretrained", type=click.Path(path_type=Path, exists=True))
def layers_command(pretrained: Path) -> None:
    """Print L, the encoder depth of PRETRAINED (a checkpoint or an XLM-R release folder); the recipes size
    their layer ranges with it."""
    try:
        click.echo(encoder_depth(pretrained))
    except (OSError, RuntimeError, ValueError) as error:
        raise click.ClickException(f"{pretrained}: cannot read its layers ({error})") from None

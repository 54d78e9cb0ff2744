"""``xlint grad-sim``: gradient similarity between languages of saved pretraining checkpoints.

The numbers of ``fairseq-train --grad-sim-interval`` (Wang et al. 2020, Fig. 3), for
checkpoints of a finished run (e.g. every epoch's): for each checkpoint, two probe batches
per language from the training data, the cosine of the shared parameters' gradients for
every language pair and within every language, per parameter group and in total.  The
probe seeds depend on the update a checkpoint was saved at, so a checkpoint gives the
rows the run itself would have written at that update.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Tuple

import click

from .fairseq_runner import quiet_loggers


@click.command("grad-sim")
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--data", type=click.Path(path_type=Path, file_okay=False),
              help="the pretraining data (from `xlint preprocess`); default: the path saved in the checkpoint")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              help="JSONL file of the rows (default: grad_sim_offline.jsonl next to the first checkpoint)")
@click.option("--sentences", type=click.IntRange(min=1), help="sentences per probe (default: the run's "
              "--grad-sim-sentences, 4096)")
@click.option("--max-tokens", type=click.IntRange(min=1), help="tokens per probe micro-batch (default: the run's)")
@click.option("--batch-size", type=click.IntRange(min=1), help="sentences per probe micro-batch (default: the run's)")
@click.option("--seed", type=int, help="probe seed (default: the run's --seed)")
@click.option("--dropout/--no-dropout", default=None,
              help="probes in training mode (the paper's; the default unless the run had --grad-sim-no-dropout) "
              "or in eval mode")
@click.option("--cpu", is_flag=True, help="stay on the CPU even when a GPU is available")
@click.option("--threads", type=click.IntRange(min=1), help="torch CPU threads")
def grad_sim(checkpoints: Tuple[Path, ...], data: Optional[Path], out: Optional[Path], sentences: Optional[int],
             max_tokens: Optional[int], batch_size: Optional[int], seed: Optional[int], dropout: Optional[bool],
             cpu: bool, threads: Optional[int]) -> None:
    """Gradient cosine similarity between languages for saved CHECKPOINTS (Wang et al. 2020, Fig. 3)."""
    for path in checkpoints:
        if not path.is_file():
            raise click.BadParameter(f"{path} is not a file", param_hint="CHECKPOINTS")
    if data is not None and not (data / "dict.txt").is_file():
        raise click.BadParameter(f"{data}/dict.txt not found: give the data of `xlint preprocess`",
                                 param_hint="--data")
    import torch

    from ..preprocess.textio import write_text_atomic
    from ..user_dir.tasks.grad_sim_probe import measure_checkpoint

    if threads:
        torch.set_num_threads(threads)
    overrides = {key: value for key, value in (("sentences", sentences), ("max_tokens", max_tokens),
                                               ("max_sentences", batch_size), ("seed", seed),
                                               ("dropout", dropout)) if value is not None}
    out = out or checkpoints[0].parent / "grad_sim_offline.jsonl"
    use_cuda = torch.cuda.is_available() and not cpu
    measurements = []
    for path in checkpoints:
        try:
            with quiet_loggers():
                measurement = measure_checkpoint(str(path), str(data) if data else None, use_cuda, **overrides)
        except (FileNotFoundError, ValueError, KeyError, RuntimeError) as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise click.ClickException(f"{path}: {message}") from None
        measurements.append(measurement)
        totals = [r for r in measurement.rows if r["group"] == "total"]
        cosines = ", ".join(f"{r['pair']} {_format(r['cos'])}" for r in totals)
        click.echo(f"{path.name} (update {measurement.update}, epoch {measurement.epoch}): {cosines}")
    measurements.sort(key=lambda m: m.update)
    write_text_atomic(out, "".join(json.dumps(row) + "\n" for m in measurements for row in m.rows))
    click.echo(f"rows written to {out}")


def _format(value: Optional[float]) -> str:
    return "non-finite" if value is None else f"{value:+.4f}"

"""``xlint interpolate``: linear interpolation between fine-tuned models (Wu et al. 2022, Sec. 3.1).

``xlint interpolate A B --out DIR`` (1D) and ``xlint interpolate A B --plane C --out DIR``
(2D) sweep a grid of interpolated models and score each on the dev (or test) set of every
language, B always being the bilingual model θ_{src,tgt}:

* 1D: θ(α) = α θ_B + (1 − α) θ_A; A = θ_src gives Eq. 1, A = θ_tgt Eq. 2;
* 2D: θ(α1, α2) = θ_B + α1 (θ_A − θ_B) + α2 (θ_C − θ_B) with A = θ_src and C = θ_tgt (Eq. 3).

``xlint interpolate merge DIR`` joins the folders that ``--shard i/n`` runs wrote, and
``xlint interpolate aggregate DIR... --out PREFIX`` normalises and aggregates sweeps over
seeds (and language pairs and tasks) with 95% Student's t intervals.  The library:
:mod:`.interpolation_sweep` and :mod:`.interpolation_aggregate`.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import click

SUBCOMMANDS = ("merge", "aggregate")


class InterpolateGroup(click.Group):
    """``interpolate merge|aggregate ...`` are subcommands; ``interpolate A B ...`` is the sweep."""

    #: the subcommand that arguments which name no subcommand go to
    default_command = "sweep"

    def parse_args(self, ctx: click.Context, args: List[str]) -> List[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "CKPT_A CKPT_B [--plane CKPT_C] --out DIR [OPTIONS] | merge | "
                                                "aggregate")


@click.group("interpolate", cls=InterpolateGroup)
def interpolate() -> None:
    """Interpolate fine-tuned checkpoints and score every point per language (Wu et al. 2022).

    \b
    xlint interpolate CKPT_A CKPT_B --out DIR            1D: alpha*B + (1-alpha)*A
    xlint interpolate CKPT_A CKPT_B --plane C --out DIR  2D: B + a1*(A-B) + a2*(C-B)
    xlint interpolate merge DIR                          join the --shard i/n folders of DIR
    xlint interpolate aggregate DIR... --out PREFIX      mean and 95% t-interval over seeds

    CKPT_B is the bilingual model (source + target), CKPT_A the source-only model (or the
    target-only one for Eq. 2), --plane the target-only model.
    """


@interpolate.command("sweep")
@click.argument("ckpt_a", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("ckpt_b", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--plane", "ckpt_c", type=click.Path(path_type=Path, dir_okay=False),
              help="2D: the target-only model theta_tgt (then CKPT_A is theta_src, CKPT_B theta_{src,tgt})")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="output folder (re-running resumes: only missing points are evaluated)")
@click.option("--alphas", help="1D: alpha grid; 2D: alpha1 grid. 'paper' (default: 1D the paper's 33 values, "
              "2D -0.5:1.5:0.1), START:STOP:STEP or a comma-separated list")
@click.option("--alphas2", help="2D: alpha2 grid (default: as --alphas)")
@click.option("--scope", type=click.Choice(["all", "encoder", "head"]), default="all", show_default=True,
              help="interpolate the whole model, the encoder only or the task head only (the rest: CKPT_A's "
              "tensors in 1D, CKPT_B's in 2D)")
@click.option("--split", type=click.Choice(["dev", "test"]), default="dev", show_default=True)
@click.option("--languages", help="comma-separated languages (default: the checkpoints' training languages)")
@click.option("--data", type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="fine-tuning data folder (default: the one CKPT_A was trained on)")
@click.option("--shard", help="I/N: evaluate grid points I, I+N, ... into OUT/shard-I-of-N (0 <= I < N)")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--cpu", is_flag=True, help="evaluate on CPU even if a GPU is available")
@click.option("--threads", type=click.IntRange(min=1), help="torch CPU threads")
@click.option("--quiet", "-q", is_flag=True, help="no line per point")
def sweep(ckpt_a: Path, ckpt_b: Path, ckpt_c: Optional[Path], out: Path, alphas: Optional[str],
          alphas2: Optional[str], scope: str, split: str, languages: Optional[str], data: Optional[Path],
          shard: Optional[str], batch_size: int, cpu: bool, threads: Optional[int], quiet: bool) -> None:
    """Sweep a 1D line (CKPT_A -> CKPT_B) or, with --plane, a 2D plane of interpolated models."""
    from .finetune_plan import parse_list
    from .interpolation_sweep import SweepSpec, parse_alphas, parse_shard, run_sweep

    if alphas2 is not None and ckpt_c is None:
        raise click.BadParameter("a 1D sweep has one coefficient: use --alphas", param_hint="--alphas2")
    spec = SweepSpec(
        checkpoints=[ckpt_a, ckpt_b] + ([ckpt_c] if ckpt_c is not None else []), out=out,
        alphas=parse_alphas(alphas, []) or None, alphas2=parse_alphas(alphas2, []) or None, scope=scope,
        split=split, languages=parse_list(languages, str, "--languages"), data=data, batch_size=batch_size,
        cpu=cpu, threads=threads, shard=parse_shard(shard), progress=not quiet)
    summary = run_sweep(spec)
    folder = spec.folder()
    if not quiet:
        click.echo((folder / "summary.md").read_text(encoding="utf-8"))
    click.echo(f"written: {folder / 'scores.jsonl'}, {folder / 'summary.json'}, {folder / 'summary.md'} "
               f"({summary['rows']} rows)")


@interpolate.command("merge")
@click.argument("out", type=click.Path(path_type=Path, file_okay=False, exists=True))
def merge(out: Path) -> None:
    """Join the finished OUT/shard-I-of-N folders into OUT's scores.jsonl, summary.json and summary.md."""
    from .interpolation_sweep import merge_shards

    summary = merge_shards(out)
    click.echo(f"written: {out / 'scores.jsonl'}, {out / 'summary.json'}, {out / 'summary.md'} "
               f"({summary['rows']} rows)")


@interpolate.command("aggregate")
@click.argument("sweeps", nargs=-1, required=True, type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="output prefix: OUT.json and OUT.md (OUT may end in .json)")
@click.option("--level", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95,
              show_default=True, help="confidence level of the Student's t interval")
def aggregate(sweeps: Tuple[Path, ...], out: Path, level: float) -> None:
    """Normalise finished sweeps by their bilingual models and aggregate them over seeds and pairs."""
    from .interpolation_aggregate import aggregate_sweeps, write_aggregate

    result = aggregate_sweeps(list(sweeps), level)
    paths = write_aggregate(result, out)
    click.echo(f"written: {', '.join(str(p) for p in paths)}")

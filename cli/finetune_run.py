"""Running ``xlint finetune``: one fairseq-train subprocess per planned run, its log streamed
into a progress line and ``train.log``, its summary read back from the log and from
``checkpoint_best.pt``; then the grid point is chosen and evaluated on test.
"""
from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Sequence

import click

from ..preprocess.textio import write_json_atomic, write_text_atomic
from .evaluation import evaluate_checkpoint
from .fairseq_logs import as_float, parse_log_records, validation_history
from .fairseq_runner import run_command
from .finetune_methods import write_noised_checkpoint
from .finetune_plan import FinetuneSpec, RunPlan, plan_runs
from .finetune_report import aggregate_seeds, mean_std, results_markdown


class ProgressPrinter:
    """Condenses fairseq's JSON log into one line per log interval and per validation."""

    def __init__(self, label: str, epochs: int, metric: str, valid_languages: Sequence[str], quiet: bool,
                 verbose: bool):
        self.label = label
        self.epochs = epochs
        self.metric = metric
        self.valid_languages = list(valid_languages)
        self.quiet = quiet
        self.verbose = verbose
        self.started = time.monotonic()

    def __call__(self, line: str) -> None:
        if self.verbose:
            click.echo(line, nl=False, err=True)
            return
        if self.quiet:
            return
        elapsed = time.monotonic() - self.started
        for record in parse_log_records([line], "train_inner"):
            click.echo(f"  [{self.label}] epoch {record.get('epoch')}/{self.epochs} update {record.get('num_updates')}"
                       f" loss {record.get('loss')} lr {record.get('lr')} ({elapsed:.0f}s)", err=True)
        for record in parse_log_records([line], "valid"):
            base = self.metric.split("_", 1)[0]
            parts = [f"{lang} {as_float(record.get(f'valid_{base}_{lang}')) or 0:.1f}" for lang in self.valid_languages
                     if f"valid_{base}_{lang}" in record]
            best = record.get(f"valid_best_{self.metric}")
            click.echo(f"  [{self.label}] epoch {record.get('epoch')}/{self.epochs} dev {base}: " + ", ".join(parts)
                       + (f" (best {self.metric} {float(best):.2f})" if best is not None else "")
                       + f" ({elapsed:.0f}s)", err=True)


@dataclass
class SavedBest:
    """What fairseq saved as ``checkpoint_best.pt``: its metric value, epoch and update."""

    score: float
    epoch: int
    num_updates: int


def read_saved_best(path: Path) -> SavedBest:
    """The validation that ``checkpoint_best.pt`` holds (fairseq keeps the last of tied best scores)."""
    import torch

    from ..user_dir import checkpoint_compat  # noqa: F401  (allow-lists fairseq's globals)

    try:
        state = torch.load(str(path), map_location="cpu", mmap=True)
    except Exception as error:  # noqa: BLE001 - an unreadable checkpoint is reported, whatever the cause
        raise click.ClickException(f"{path}: cannot load the checkpoint ({error})") from None
    extra = state.get("extra_state") or {}
    iterator = extra.get("train_iterator") or {}
    history = state.get("optimizer_history") or [{}]
    if extra.get("val_loss") is None or "epoch" not in iterator or "num_updates" not in history[-1]:
        raise click.ClickException(f"{path}: no validation score, epoch or update count in its extra_state")
    # fairseq saves the iterator of the next epoch once an epoch is finished
    epoch = int(iterator["epoch"]) - (1 if int(iterator.get("iterations_in_epoch", 0)) == 0 else 0)
    return SavedBest(score=float(extra["val_loss"]), epoch=epoch, num_updates=int(history[-1]["num_updates"]))


def summarise_run(run: RunPlan, log_lines: Sequence[str], metric: str) -> Dict[str, Any]:
    """Dev metrics of every validation of a finished run (its whole log) and the one that
    ``checkpoint_best.pt`` holds, which is what the run selected."""
    log_file = run.run_dir / "train.log"
    valid = validation_history(log_lines)
    if not valid:
        raise click.ClickException(f"{log_file}: no validation record")
    key = f"valid_{metric}"
    if any(as_float(record.get(key)) is None for record in valid):
        raise click.ClickException(f"{log_file}: validation did not log {metric}")
    best_file = run.run_dir / "checkpoint_best.pt"
    if not best_file.is_file():
        raise click.ClickException(f"{run.run_dir}: training finished without checkpoint_best.pt")
    best = read_saved_best(best_file)
    epochs = [{(k[len("valid_"):] if k.startswith("valid_") else k): as_float(v) if as_float(v) is not None else v
               for k, v in record.items()} for record in valid]
    return {"name": run.name, "seed": run.seed, "batch_size": run.batch_size, "lr": run.lr, "head_lr": run.head_lr,
            "command": shlex.join(run.command), "dev_by_epoch": epochs, "best_epoch": best.epoch,
            "best_updates": best.num_updates, "best_dev": best.score, "checkpoint": str(best_file)}


def train_run(run: RunPlan, index: int, total: int, info: Dict[str, Any], spec: FinetuneSpec) -> Dict[str, Any]:
    """One fairseq-train run (reused when its summary exists for the same command)."""
    summary_file = run.run_dir / "run.json"
    command_text = shlex.join(run.command)
    if summary_file.is_file():
        summary = json.loads(summary_file.read_text(encoding="utf-8"))
        if summary.get("command") == command_text:
            if not spec.quiet:
                click.echo(f"[{index}/{total}] {run.name} seed {run.seed}: reusing {summary_file}", err=True)
            return summary
    label = f"{index}/{total} {run.name} seed {run.seed}"
    if run.noised is not None and not (run.run_dir / "checkpoint_last.pt").is_file():
        source, noised, lam, seed = run.noised  # a fresh run starts from the noised copy (resumes never do)
        if write_noised_checkpoint(source, noised, lam, seed) and not spec.quiet:
            click.echo(f"[{label}] NoisyTune (lambda {lam:g}, seed {seed}): wrote {noised}", err=True)
    click.echo(f"[{label}] + {command_text}", err=True)
    env = {}
    if spec.cpu_threads:
        env = {"OMP_NUM_THREADS": str(spec.cpu_threads), "MKL_NUM_THREADS": str(spec.cpu_threads)}
    printer = ProgressPrinter(label, info["epochs"], info["selection"]["metric"], info["valid_languages"],
                              spec.quiet, spec.verbose)
    log_file = run.run_dir / "train.log"
    run_command(run.command, log_file=log_file, echo=False, quiet=True, env=env, on_line=printer, append=True)
    summary = summarise_run(run, log_file.read_text(encoding="utf-8").splitlines(), info["selection"]["metric"])
    write_json_atomic(summary_file, summary)
    return summary


def run_finetune(spec: FinetuneSpec) -> Dict[str, Any]:
    """Train every grid point and seed, pick the grid point, evaluate it on test; return the results.

    Writes ``SAVE_DIR/results.json`` and ``SAVE_DIR/results.md`` (atomically) unless
    ``spec.dry_run`` (which only prints the fairseq-train lines).
    """
    runs, info = plan_runs(spec)
    if spec.dry_run:
        for run in runs:
            click.echo(shlex.join(run.command))
        return {"runs": [shlex.join(run.command) for run in runs], **info}
    spec.save_dir.mkdir(parents=True, exist_ok=True)
    summaries = [train_run(run, index, len(runs), info, spec) for index, run in enumerate(runs, start=1)]
    grid: Dict[str, Dict[str, Any]] = {}
    for summary in summaries:
        point = grid.setdefault(summary["name"], {"name": summary["name"], "batch_size": summary["batch_size"],
                                                  "lr": summary["lr"], "head_lr": summary["head_lr"], "runs": []})
        point["runs"].append({"seed": summary["seed"], "best_dev": summary["best_dev"],
                              "best_epoch": summary["best_epoch"], "checkpoint": summary["checkpoint"]})
    for point in grid.values():
        point["dev"] = mean_std([run["best_dev"] for run in point["runs"]])
    chosen = max(grid.values(), key=lambda point: point["dev"]["mean"])  # first best on ties
    results: Dict[str, Any] = {**info, "seeds": list(spec.seeds), "grid": list(grid.values()), "chosen": chosen}
    if spec.evaluate:
        per_seed: Dict[int, Dict[str, Any]] = {}
        for run in chosen["runs"]:
            if not spec.quiet:
                click.echo(f"evaluating {run['checkpoint']} on test ({', '.join(info['test_languages'])})", err=True)
            per_seed[run["seed"]] = evaluate_checkpoint(
                Path(run["checkpoint"]), data=spec.data, split="test", languages=info["test_languages"],
                batch_size=spec.eval_batch_size, cpu=spec.cpu, threads=spec.cpu_threads)
            write_json_atomic(Path(run["checkpoint"]).parent / "test_results.json", per_seed[run["seed"]])
        first = next(iter(per_seed.values()))
        results["test"] = {"metrics": first["metrics"], "per_seed": {str(s): r for s, r in per_seed.items()},
                           "summary": aggregate_seeds(per_seed)}
        write_text_atomic(spec.save_dir / "results.md", results_markdown(results))
    write_json_atomic(spec.save_dir / "results.json", results)
    return results

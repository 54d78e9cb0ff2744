"""``xlint demo``: the whole pipeline on real data, small enough for two CPU cores.

Koine Greek (SBLGNT), Turkish (Turkish Web Treebank text) and English (BSB) are
fetched from pinned PyPI wheels, preprocessed with one joint subword model, and tiny
models of Wang et al.'s Table 2 rows are pretrained with fairseq-train.  The result is
a table of per-language validation perplexity (lower is better; every model shares
the vocabulary, so the numbers are comparable): Mono rows against the multilingual
rows show negative interference, the adapter rows show what language-specific
capacity buys.
"""
from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import click

from .commands_pretrain import pretrain_options
from .fairseq_runner import fairseq_train_command, run_command

DEMO_LANGUAGES = ("grc", "tr", "en")


@dataclass(frozen=True)
class DemoRun:
    name: str  # folder name
    row: str  # table row
    variant: str
    languages: Sequence[str]


DEMO_RUNS = (
    DemoRun("mono-grc", "Mono", "joint", ("grc",)),
    DemoRun("mono-tr", "Mono", "joint", ("tr",)),
    DemoRun("joint", "Joint (grc+tr+en)", "joint", DEMO_LANGUAGES),
    DemoRun("ffn", "+ffn", "ffn", DEMO_LANGUAGES),
    DemoRun("adapter", "+adapt", "adapter", DEMO_LANGUAGES),
    DemoRun("meta-adapter", "+meta adapt", "meta_adapter", DEMO_LANGUAGES),
)
#: POS transfer (Greek -> Turkish) is measured for the multilingual rows
DOWNSTREAM_SOURCE, DOWNSTREAM_TARGET = "grc", "tr"


def last_validation(log_path: Path) -> Dict[str, float]:
    """The last ``valid`` record of a fairseq-train log written with ``--log-format json``."""
    record: Optional[Dict[str, float]] = None
    for line in log_path.read_text(encoding="utf-8").splitlines():
        head, sep, payload = line.partition("| valid | ")
        if sep and payload.startswith("{"):
            record = {k: float(v) for k, v in json.loads(payload).items() if _is_number(v)}
    if record is None:
        raise click.ClickException(f"{log_path}: no validation record (did training run?)")
    return record


def _is_number(value) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def write_json_atomic(path: Path, data) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def perplexity_table(results: Dict[str, Dict[str, float]], languages: Sequence[str]) -> str:
    """Markdown table: one row per model row name, one column per language (valid ppl)."""
    rows: Dict[str, Dict[str, float]] = {}
    for run in DEMO_RUNS:
        if run.name not in results:
            continue
        for lang in run.languages:
            key = f"valid_ppl_{lang}"
            if key in results[run.name]:
                rows.setdefault(run.row, {})[lang] = results[run.name][key]
    lines = ["| model | " + " | ".join(languages) + " |", "|---" * (len(languages) + 1) + "|"]
    for row, values in rows.items():
        cells = [f"{values[lang]:.2f}" if lang in values else "–" for lang in languages]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def xlint_script() -> str:
    candidate = Path(sys.executable).parent / "xlint"
    return str(candidate) if candidate.exists() else "xlint"


@click.command("demo")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-runs"),
              show_default=True, help="where data, checkpoints, logs and results go")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="demo data cache (default: $XLINT_DATA_DIR or ~/.cache/xlint/data)")
@click.option("--max-update", type=int, default=400, show_default=True, help="updates per pretraining run")
@click.option("--english-sentences", type=int, default=8000, show_default=True,
              help="English verses kept for training (the pivot would otherwise dominate the CPU budget)")
@click.option("--vocab-size", type=int, default=8000, show_default=True, help="joint subword vocabulary")
@click.option("--finetune-epochs", type=int, default=2, show_default=True,
              help="POS fine-tuning epochs for the downstream table (0 skips it)")
def demo(workdir: Path, cache_dir: Optional[Path], max_update: int, english_sentences: int, vocab_size: int,
         finetune_epochs: int) -> None:
    """Fetch real Greek/Turkish/English text, preprocess, pretrain tiny models, print perplexities.

    Re-running reuses the data, the preprocessed corpus and every finished run.
    """
    from ..preprocess.demo_data import DemoDataError, fetch_demo_data

    workdir.mkdir(parents=True, exist_ok=True)
    try:
        data = fetch_demo_data(cache_dir)
    except DemoDataError as err:
        raise click.ClickException(str(err)) from None

    corpus = workdir / "data"
    preprocess = [xlint_script(), "preprocess", "--out", str(corpus), "--vocab-size", str(vocab_size),
                  "--subsample", f"en={english_sentences}", "--valid-size", "300", "--test-size", "300",
                  "--metadev-size", "300", "--quiet"]
    preprocess += [f"{lang}={data.raw[lang]}" for lang in DEMO_LANGUAGES]
    run_command(preprocess)

    results: Dict[str, Dict[str, float]] = {}
    for run in DEMO_RUNS:
        results[run.name] = pretrain_run(corpus, workdir / "runs" / run.name, run, max_update)
    downstream: Dict[str, Dict[str, Dict[str, float]]] = {}
    if finetune_epochs > 0:
        for run in DEMO_RUNS:
            if DOWNSTREAM_TARGET in run.languages and DOWNSTREAM_SOURCE in run.languages:
                downstream[run.row] = pos_transfer_run(corpus, workdir, run, data.pos, finetune_epochs)
    tables = ["Validation perplexity per language (lower is better; shared vocabulary):\n",
              perplexity_table(results, DEMO_LANGUAGES)]
    if downstream:
        tables += [f"\nPOS test accuracy / seqeval F1 (fine-tuned on {DOWNSTREAM_SOURCE} or {DOWNSTREAM_TARGET}; "
                   "zero-shot: trained on grc, tested on tr):\n", downstream_table(downstream)]
    report = "\n".join(tables)
    write_json_atomic(workdir / "results.json", {"pretraining": results, "downstream": downstream})
    (workdir / "results.md").write_text(report + "\n", encoding="utf-8")
    click.echo("\n" + report)
    click.echo(f"\nresults: {workdir / 'results.md'}, logs: {workdir / 'runs'}/*/train.log")


def pretrain_run(corpus: Path, run_dir: Path, run: DemoRun, max_update: int) -> Dict[str, float]:
    """One tiny pretraining run (skipped when its results exist); returns its last validation."""
    result_file = run_dir / "result.json"
    if result_file.exists():
        click.echo(f"reusing {result_file}", err=True)
        return json.loads(result_file.read_text(encoding="utf-8"))
    run_dir.mkdir(parents=True, exist_ok=True)
    options = pretrain_options("tiny", run.variant, run.languages, run_dir / "checkpoints", seed=1,
                               max_update=max_update)
    options.update({"log_format": "json", "validate_interval_updates": max_update, "save_interval_updates": 0})
    command = fairseq_train_command(corpus, options)
    click.echo(f"\n== {run.row} ({', '.join(run.languages)})\n+ " + shlex.join(command), err=True)
    log_file = run_dir / "train.log"
    # one thread: tiny models gain nothing from a second one, and two threads spinning on a
    # busy 2-core machine run many times slower
    run_command(command, log_file=log_file, echo=False, quiet=True, env={"OMP_NUM_THREADS": "1"})
    result = last_validation(log_file)
    write_json_atomic(result_file, result)
    return result


def pos_transfer_run(corpus: Path, workdir: Path, run: DemoRun, pos_paths, epochs: int) -> Dict[str, Dict[str, float]]:
    """Greek -> Turkish POS transfer with one pretrained model (reused when its results exist)."""
    from .commands_finetune import run_pos_transfer_demo

    result_file = workdir / "downstream" / run.name / "result.json"
    if result_file.exists():
        return json.loads(result_file.read_text(encoding="utf-8"))
    click.echo(f"\n== POS transfer with {run.row}", err=True)
    result = run_pos_transfer_demo(corpus, workdir / "runs" / run.name / "checkpoints" / "checkpoint_last.pt",
                                   pos_paths, workdir / "downstream" / run.name, source=DOWNSTREAM_SOURCE,
                                   target=DOWNSTREAM_TARGET, max_epochs=epochs, cpu_threads=1,
                                   pos_data=workdir / "pos-data")
    table = result["table"]
    write_json_atomic(result_file, table)
    return table


def downstream_table(downstream: Dict[str, Dict[str, Dict[str, float]]]) -> str:
    columns = [f"{DOWNSTREAM_SOURCE} within", f"{DOWNSTREAM_TARGET} zero-shot", f"{DOWNSTREAM_TARGET} within"]
    lines = ["| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for row, scores in downstream.items():
        cells = [f"{scores[c]['acc']:.1f} / {scores[c]['f1']:.1f}" if c in scores else "–" for c in columns]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

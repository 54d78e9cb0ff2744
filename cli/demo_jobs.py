"""The demo's job machinery: option-keyed caching and independent jobs run side by side.

* :func:`options_key` hashes the options that affect a result; every cached demo
  result lives in a folder named after its key and records the key, so changing
  ``--max-update`` or ``--finetune-epochs`` (or anything else that matters) trains
  anew instead of reusing a stale result, and switching back reuses the old one.
* :func:`run_jobs` runs :class:`Job` s on a pool of threads, each job waiting for
  the jobs it depends on; every job is a subprocess (``fairseq-train``, or
  ``python -m xlint.cli.demo_jobs JOB_DIR`` for fine-tuning), so ``N`` jobs at a
  time with one thread each use ``N`` cores. Each job prints one line when it
  starts, one with its result when it finishes (``[3/18] ...``) and, while it
  runs, a progress line every ``PROGRESS_SECONDS`` read from its log
  (:class:`LogProgress`: update k of N and the current loss); its full output goes
  to its own log file.
* ``python -m xlint.cli.demo_jobs JOB_DIR`` is one fine-tuning job: it reads
  ``JOB_DIR/job.json``, fine-tunes with :func:`~xlint.cli.finetune_run.run_finetune`
  (within-language on the source: fairseq-train, model selection on the source dev
  set), scores the selected checkpoint on every test language with
  :func:`~xlint.cli.evaluation.evaluate_checkpoint` and writes
  ``JOB_DIR/result.json``.
"""
from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import click

from ..preprocess.textio import write_json_atomic
from .fairseq_logs import as_float, parse_log_records
from .fairseq_runner import run_command

KEY_LENGTH = 12
#: how often a running job's progress line is printed (at most; only when its log has news)
PROGRESS_SECONDS = 15.0
RESULT_FILE = "result.json"
JOB_FILE = "job.json"
#: every job's subprocess uses one thread, so that ``--jobs N`` uses N cores
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# --------------------------------------------------------------------------- option-keyed results


def options_key(options: Mapping[str, Any]) -> str:
    """A short, stable hash of ``options`` (JSON-serialisable; key order does not matter)."""
    canonical = json.dumps(options, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:KEY_LENGTH]


def keyed_dir(parent: Path, name: str, key: str) -> Path:
    """``parent/<name>-<key>``: where the result of ``name`` with options ``key`` lives."""
    return parent / f"{name}-{key}"


def read_cached_result(folder: Path, key: str) -> Optional[Dict[str, Any]]:
    """The result stored in ``folder/result.json`` if it was made with options ``key``; else None."""
    path = folder / RESULT_FILE
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("key") != key or "result" not in stored:
        return None
    return stored["result"]


def write_cached_result(folder: Path, key: str, options: Mapping[str, Any], result: Mapping[str, Any]) -> None:
    """Store ``result`` with the options and key it was made with (atomically)."""
    write_json_atomic(folder / RESULT_FILE, {"key": key, "options": dict(options), "result": dict(result)})


# --------------------------------------------------------------------------- running jobs side by side


@dataclass
class Job:
    """One unit of work. ``run`` returns the result; ``summary`` turns it into the finish line."""

    name: str
    label: str
    run: Callable[[], Dict[str, Any]]
    summary: Callable[[Dict[str, Any]], str]
    depends_on: Sequence[str] = ()
    cached: Callable[[], Optional[Dict[str, Any]]] = field(default=lambda: None)
    #: the fairseq JSON log the job writes while it runs (for the progress lines), and its planned updates
    log_file: Optional[Path] = None
    total_updates: Optional[int] = None


@dataclass
class JobOutcome:
    result: Dict[str, Any]
    seconds: float
    reused: bool


_ECHO_LOCK = threading.Lock()


class LogProgress:
    """A running job's progress from the fairseq JSON log it writes: its latest ``train_inner`` record.

    :meth:`poll` reads the lines added since the last call (a partial last line waits
    for its end) and returns ``"update k/N, epoch e, loss l"`` when there is a newer
    record than the one reported last, else None.
    """

    def __init__(self, path: Path, total_updates: Optional[int] = None) -> None:
        self.path = path
        self.total_updates = total_updates
        self.offset = 0
        self.partial = ""
        self.reported: Optional[float] = None

    def poll(self) -> Optional[str]:
        try:
            with open(self.path, "r", encoding="utf-8", errors="replace") as log:
                log.seek(self.offset)
                text = log.read()
                self.offset = log.tell()
        except FileNotFoundError:
            return None
        lines = (self.partial + text).split("\n")
        self.partial = lines.pop()
        records = parse_log_records(lines, "train_inner")
        if not records:
            return None
        latest = records[-1]
        updates = as_float(latest.get("num_updates"))
        if updates is None or updates == self.reported:
            return None
        self.reported = updates
        total = f"/{self.total_updates}" if self.total_updates else ""
        loss = as_float(latest.get("loss"))
        return (f"update {int(updates)}{total}, epoch {latest.get('epoch')}"
                + (f", loss {loss:.3f}" if loss is not None else ""))


def _watch(job: Job, tag: str, stop: threading.Event, seconds: float) -> None:
    assert job.log_file is not None
    progress = LogProgress(job.log_file, job.total_updates)
    while not stop.wait(seconds):
        message = progress.poll()
        if message:
            _say(f"{tag} {job.label}: {message}")


def _say(message: str) -> None:
    """One whole line on stderr, never interleaved with another job's line."""
    with _ECHO_LOCK:
        click.echo(message, err=True)


def _run_one(job: Job, tag: str) -> JobOutcome:
    """Reuse the job's cached result or run it, printing its start and result lines."""
    cached = job.cached()
    if cached is not None:
        _say(f"{tag} {job.label}: reusing the cached result: {job.summary(cached)}")
        return JobOutcome(cached, 0.0, True)
    _say(f"{tag} {job.label}: started" + (f" (log: {job.log_file})" if job.log_file else ""))
    started = time.monotonic()
    stop = threading.Event()
    watcher = None
    if job.log_file is not None:
        watcher = threading.Thread(target=_watch, args=(job, tag, stop, PROGRESS_SECONDS), daemon=True)
        watcher.start()
    try:
        result = job.run()
    finally:
        stop.set()
        if watcher is not None:
            watcher.join()
    seconds = time.monotonic() - started
    _say(f"{tag} {job.label}: done in {seconds:.0f}s: {job.summary(result)}")
    return JobOutcome(result, seconds, False)


def _check_graph(jobs: Sequence[Job]) -> None:
    """Names are unique and every dependency is an earlier job (so the graph has no cycle)."""
    names = [job.name for job in jobs]
    if len(set(names)) != len(names):
        raise ValueError("job names are not unique")
    position = {name: index for index, name in enumerate(names)}
    for index, job in enumerate(jobs):
        for dependency in job.depends_on:
            if position.get(dependency, index) >= index:
                raise ValueError(f"job {job.name} depends on {dependency}, which is not an earlier job")


def run_jobs(jobs: Sequence[Job], parallel: int) -> Dict[str, JobOutcome]:
    """Run ``jobs`` (dependencies listed before their dependents), at most ``parallel`` at a time.

    A job starts as soon as its dependencies are done, in list order. When a job
    fails, no new job starts; the running ones finish and the first error is raised.
    """
    _check_graph(jobs)
    total = len(jobs)
    outcomes: Dict[str, JobOutcome] = {}
    pending = list(enumerate(jobs, start=1))
    running: Dict[Future, str] = {}
    failure: Optional[BaseException] = None
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        while pending or running:
            if failure is None:
                for item in [item for item in pending if all(d in outcomes for d in item[1].depends_on)]:
                    if len(running) >= max(1, parallel):
                        break
                    index, job = item
                    pending.remove(item)
                    running[pool.submit(_run_one, job, f"[{index}/{total}]")] = job.name
            elif not running:
                break
            if not running:
                raise RuntimeError("no job can start: a dependency is missing")  # guarded by _check_graph
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                error = future.exception()
                if error is not None:
                    failure = failure or error
                else:
                    outcomes[name] = future.result()
    if failure is not None:
        raise failure
    return outcomes


def command_job(*, name: str, label: str, folder: Path, key: str, options: Mapping[str, Any],
                command: Callable[[], Sequence[str]], read_result: Callable[[], Dict[str, Any]],
                summary: Callable[[Dict[str, Any]], str], depends_on: Sequence[str] = (),
                log_file: Optional[Path] = None, total_updates: Optional[int] = None) -> Job:
    """A cached job that is one subprocess (one thread): ``command()`` (built when the job starts, so it
    may read its dependencies' results) writes into ``folder``, its output goes to ``folder/job.log``;
    then ``read_result()`` is stored as the result of ``key`` (``folder/result.json``)."""

    def run() -> Dict[str, Any]:
        folder.mkdir(parents=True, exist_ok=True)
        run_command(list(command()), log_file=folder / "job.log", echo=False, quiet=True, env=ONE_THREAD)
        result = read_result()
        write_cached_result(folder, key, options, result)
        return result

    return Job(name=name, label=label, run=run, summary=summary, depends_on=tuple(depends_on),
               cached=lambda: read_cached_result(folder, key), log_file=log_file or folder / "job.log",
               total_updates=total_updates)


# --------------------------------------------------------------------------- one fine-tuning job (a subprocess)


def finetune_job_payload(*, data: Path, pretrained: Path, corpus: Path, save_dir: Path, source: str,
                         test_languages: Sequence[str], epochs: int, lr: float, batch_size: int,
                         max_train_examples: int, seed: int, setting: str = "within", targets: Sequence[str] = (),
                         method: Optional[Mapping[str, Any]] = None,
                         fairseq_args: Sequence[str] = ()) -> Dict[str, Any]:
    """What one fine-tuning job needs (JSON-serialisable).

    ``setting`` and ``targets`` are :class:`~xlint.cli.finetune_plan.FinetuneSpec`'s (``within``: train,
    select and validate on ``source``); ``method`` holds :class:`~xlint.cli.finetune_methods.MethodOptions`
    fields (default: plain fine-tuning); ``fairseq_args`` go to fairseq-train unchanged (e.g. the
    training-curve options).
    """
    return {"data": str(data), "pretrained": str(pretrained), "corpus": str(corpus), "save_dir": str(save_dir),
            "source": source, "test_languages": list(test_languages), "epochs": epochs, "lr": lr,
            "batch_size": batch_size, "max_train_examples": max_train_examples, "seed": seed,
            "setting": setting, "targets": list(targets), "method": dict(method or {}),
            "fairseq_args": list(fairseq_args)}


def write_finetune_job(job_dir: Path, key: str, options: Mapping[str, Any], payload: Mapping[str, Any]) -> None:
    """Describe a fine-tuning job in ``job_dir/job.json`` for ``python -m xlint.cli.demo_jobs``."""
    write_json_atomic(job_dir / JOB_FILE, {"key": key, "options": dict(options), "payload": dict(payload)})


def finetune_job_command(job_dir: Path) -> List[str]:
    """The command line that runs the job described in ``job_dir``."""
    return [sys.executable, "-m", "xlint.cli.demo_jobs", str(job_dir)]


#: fairseq-train options of every demo fine-tuning: only checkpoint_best.pt is kept
DEMO_FAIRSEQ_ARGS = ("--no-epoch-checkpoints", "--no-last-checkpoints")


def run_finetune_job(payload: Mapping[str, Any]) -> Dict[str, Any]:
    """Fine-tune as the payload says (model selection on the setting's dev sets), score the selected
    checkpoint on every test language; the result names the run folder (``run_dir``, where the
    training curves are) and its dev score (``dev_acc``, the selection metric)."""
    from .evaluation import evaluate_checkpoint
    from .finetune_methods import MethodOptions
    from .finetune_plan import FinetuneSpec
    from .finetune_run import run_finetune

    spec = FinetuneSpec(
        data=Path(payload["data"]), pretrained=Path(payload["pretrained"]), save_dir=Path(payload["save_dir"]),
        source=payload["source"], setting=payload.get("setting", "within"),
        targets=list(payload.get("targets") or []) or None, metric="acc", seeds=[payload["seed"]],
        batch_sizes=[payload["batch_size"]], lrs=[payload["lr"]], epochs=payload["epochs"],
        max_train_examples=payload["max_train_examples"], corpus=Path(payload["corpus"]), cpu=True,
        cpu_threads=1, evaluate=False, verbose=True,  # fairseq's log lines reach job.log: the progress
        fairseq_args=(*DEMO_FAIRSEQ_ARGS, *payload.get("fairseq_args", ())),
        method=MethodOptions(**payload.get("method", {})))
    trained = run_finetune(spec)
    chosen = trained["chosen"]["runs"][0]
    scores = evaluate_checkpoint(Path(chosen["checkpoint"]), data=spec.data, split="test",
                                 languages=payload["test_languages"], cpu=True, threads=1)
    return {"source": spec.source, "best_epoch": chosen["best_epoch"], "dev_acc": chosen["best_dev"],
            "checkpoint": chosen["checkpoint"], "run_dir": str(Path(chosen["checkpoint"]).parent),
            "test": scores["scores"], "examples": scores["examples"]}


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m xlint.cli.demo_jobs JOB_DIR``: run the job of JOB_DIR/job.json, write JOB_DIR/result.json."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not (Path(args[0]) / JOB_FILE).is_file():
        print(f"usage: python -m xlint.cli.demo_jobs JOB_DIR (with JOB_DIR/{JOB_FILE})", file=sys.stderr)
        return 2
    job_dir = Path(args[0])
    job = json.loads((job_dir / JOB_FILE).read_text(encoding="utf-8"))
    try:
        result = run_finetune_job(job["payload"])
    except click.ClickException as error:
        print(f"Error: {error.format_message()}", file=sys.stderr)
        return 1
    write_cached_result(job_dir, job["key"], job["options"], result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``xlint finetune`` and ``xlint evaluate``: downstream evaluation of pretrained models.

``xlint finetune FT --pretrained CKPT --source LANG --save-dir DIR`` composes one
``fairseq-train`` run per (grid point, seed) with xlint's fine-tuning tasks
(``xlint_tagging``, ``xlint_classification``, ``xlint_qa``: the data folder from
``xlint data convert`` says which), copies the model's architecture and languages
from the pretrained checkpoint's saved cfg and starts from its weights with
``--finetune-from-model`` (optimizer, scheduler, meters and data iterator reset; a
run whose ``checkpoint_last.pt`` exists resumes from it instead).

Settings (Wang et al. 2020 App. A; Guo et al. 2023 for few-shot):

* ``within``: train, select and test on the source language;
* ``zero-shot`` (default): train on the source, validate every epoch on the source
  and all targets' dev sets (each scored separately), select on the source dev set;
* ``few-shot``: as zero-shot with ``--few-shot M`` examples of every target's dev
  set moved into training (the rest stays dev).

Model selection: fairseq's ``--best-checkpoint-metric`` on a per-language dev
metric (``--select source``: the paper's rule, ``target``: the average over the
target languages, ``average``: over all dev languages), a checkpoint every epoch,
``checkpoint_best.pt`` being the selected one (fairseq keeps the last of tied
scores; a run's summary reports the validation that file holds, and its dev
history comes from the whole ``train.log``, which every attempt of a resumed run
appends to).  A grid is chosen by the mean over seeds of each run's best dev
score; the chosen point's ``checkpoint_best.pt`` of every seed is then evaluated
on the test sets of all languages, and ``DIR/results.{json,md}`` report mean ± std
over seeds (sample std).  The learning-rate schedule lasts exactly the updates
fairseq-train makes: the task counts them from the batches it builds
(:func:`planned_updates`).

``xlint evaluate CKPT`` scores one fine-tuned checkpoint per language on the
whole split, exactly as validation does, and writes JSON and a Markdown table;
the checkpoint must hold exactly the task head its task builds.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import click

from ..preprocess.textio import write_json_atomic, write_text_atomic
from .fairseq_runner import OptionValue, fairseq_train_command

TASK_NAMES = {"tagging": "xlint_tagging", "classification": "xlint_classification", "qa": "xlint_qa"}
SETTINGS = ("within", "zero-shot", "few-shot")
SELECTIONS = ("source", "target", "average")
#: Wang et al. (2020) App. A: epochs and grids per task (XNLI's 200 epochs are the paper's, sic)
PAPER_EPOCHS = {"tagging": 10, "qa": 2, "classification": 200}
PAPER_GRIDS: Dict[str, Dict[str, List[float]]] = {
    "tagging": {"batch_size": [16, 32], "lr": [2e-5, 3e-5, 5e-5]},
    "qa": {"batch_size": [16, 32], "lr": [2e-5, 3e-5, 5e-5]},
    "classification": {"batch_size": [4, 8], "lr": [1e-6, 5e-6, 2e-5], "head_lr": [5e-6, 2e-5, 5e-5]},
}
#: single-point defaults (without --grid paper): Wu et al. (2022) batch 32, lr 2e-5; XNLI mid-grid values
DEFAULTS: Dict[str, Dict[str, List[float]]] = {
    "tagging": {"batch_size": [32], "lr": [2e-5]},
    "qa": {"batch_size": [32], "lr": [2e-5]},
    "classification": {"batch_size": [8], "lr": [5e-6], "head_lr": [2e-5]},
}
DEFAULT_METRIC = {"tagging": "f1", "qa": "f1", "classification": "acc"}
#: the validation metrics each kind of data logs per language (``<metric>_<lang>``)
KIND_METRICS = {"pos": ("acc", "f1"), "ner": ("f1", "precision", "recall"), "nli": ("acc",), "qa": ("f1", "em")}
#: predictions travel in the logging outputs; gathered across workers they need room
ALL_GATHER_LIST_SIZE = 1 << 22


# --------------------------------------------------------------------------- small helpers


def parse_list(text: Optional[str], kind: Callable[[str], Any], what: str) -> Optional[List[Any]]:
    if text is None:
        return None
    try:
        values = [kind(item.strip()) for item in str(text).split(",") if item.strip()]
    except ValueError:
        raise click.BadParameter(f"expected a comma-separated list, got {text!r}", param_hint=what) from None
    if not values:
        raise click.BadParameter("empty list", param_hint=what)
    return values


def _format_value(value: float) -> str:
    return f"{value:g}"


def read_ft_meta(data: Path) -> Dict[str, Any]:
    from ..user_dir.data.finetune_data import FinetuneDataError, read_meta

    try:
        return read_meta(str(data))
    except FinetuneDataError as error:
        raise click.BadParameter(str(error), param_hint="DATA") from None


# --------------------------------------------------------------------------- the pretrained checkpoint


@dataclass
class Pretrained:
    path: Path
    arch: str
    model_options: Dict[str, OptionValue]
    model_languages: List[str]
    corpus: Optional[str]
    embedding_rows: int
    language_specific: str


def read_pretrained(path: Path) -> Pretrained:
    """Architecture, model options and languages from a pretrained checkpoint's saved cfg."""
    import dataclasses

    import torch

    from ..user_dir import checkpoint_compat  # noqa: F401  (allow-lists fairseq's globals)
    from ..user_dir.models.xlm_adapter import XlmAdapterConfig

    if not path.is_file():
        raise click.BadParameter(f"{path} is not a file", param_hint="--pretrained")
    try:
        state = torch.load(str(path), map_location="cpu", mmap=True, weights_only=False)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise click.BadParameter(f"{path}: cannot load the checkpoint ({error})", param_hint="--pretrained") from None
    cfg = state.get("cfg") or {}
    model_cfg = dict(cfg.get("model") or {})
    from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY

    arch = model_cfg.get("_name")
    if arch not in ARCH_MODEL_REGISTRY or ARCH_MODEL_REGISTRY[arch] is not MODEL_REGISTRY["xlm_adapter"]:
        raise click.BadParameter(f"{path}: its model {arch!r} is not an xlm_adapter architecture",
                                 param_hint="--pretrained")
    options: Dict[str, OptionValue] = {}
    for item in dataclasses.fields(XlmAdapterConfig):
        value = model_cfg.get(item.name)
        if item.name.startswith("_") or value is None or value == "":
            continue
        options[item.name] = str(value) if not isinstance(value, (int, float, bool)) else value
    languages = [lang for lang in str(model_cfg.get("model_languages", "")).split(",") if lang]
    if not languages:
        raise click.BadParameter(f"{path}: its cfg names no model languages", param_hint="--pretrained")
    weights = state["model"].get("encoder.embed_tokens.weight")
    task_cfg = cfg.get("task") or {}
    return Pretrained(path=path.resolve(), arch=arch, model_options=options, model_languages=languages,
                      corpus=task_cfg.get("data"), embedding_rows=int(weights.shape[0]) if weights is not None else -1,
                      language_specific=str(model_cfg.get("language_specific", "joint")))


def check_compatibility(data: Path, meta: Dict[str, Any], pretrained: Pretrained, corpus: Optional[Path]) -> None:
    """The fine-tuning data must be encoded with the pretraining corpus' dictionary."""
    from ..preprocess.textio import sha256_file

    rows = sum(1 for line in (data / "dict.txt").read_text(encoding="utf-8").splitlines() if line.strip()) + 5
    if pretrained.embedding_rows not in (-1, rows):
        raise click.BadParameter(
            f"{data}/dict.txt gives {rows} embeddings (with <s> <pad> </s> <unk> <mask>) but "
            f"{pretrained.path} has {pretrained.embedding_rows}: convert the data with the checkpoint's corpus",
            param_hint="DATA")
    if corpus is not None:
        dictionary = corpus / "dict.txt"
        if not dictionary.is_file():
            raise click.BadParameter(f"{dictionary} not found", param_hint="--corpus")
        if sha256_file(dictionary) != meta.get("dictionary_sha256"):
            raise click.BadParameter(f"{data} was converted with another dictionary than {dictionary} "
                                     f"(converted from {meta.get('corpus')})", param_hint="--corpus")


# --------------------------------------------------------------------------- runs


@dataclass
class FinetuneSpec:
    """Everything ``xlint finetune`` needs; :func:`run_finetune` is its Python entry point."""

    data: Path
    pretrained: Path
    save_dir: Path
    source: str
    setting: str = "zero-shot"
    targets: Optional[List[str]] = None
    few_shot: int = 0
    select: Optional[str] = None
    metric: Optional[str] = None
    seeds: List[int] = field(default_factory=lambda: [1])
    batch_sizes: Optional[List[int]] = None
    lrs: Optional[List[float]] = None
    head_lrs: Optional[List[float]] = None
    grid: str = "none"
    epochs: Optional[int] = None
    warmup_ratio: float = 0.1
    max_length: Optional[int] = None
    max_train_examples: int = 0
    freeze_language_specific: bool = False
    route_languages: Optional[str] = None
    corpus: Optional[Path] = None
    cpu: bool = False
    cpu_threads: Optional[int] = None
    evaluate: bool = True
    eval_batch_size: int = 64
    dry_run: bool = False
    quiet: bool = False
    verbose: bool = False
    fairseq_args: Tuple[str, ...] = ()


@dataclass
class RunPlan:
    name: str
    batch_size: int
    lr: float
    head_lr: Optional[float]
    seed: int
    run_dir: Path
    command: List[str]


def _languages(spec: FinetuneSpec, meta: Dict[str, Any]) -> Tuple[List[str], List[str], List[str]]:
    """(train, valid, test) languages of a setting."""
    from ..user_dir.data.finetune_data import available_languages

    if spec.source not in meta["splits"]:
        raise click.BadParameter(f"{spec.source} is not in {spec.data} (it has {', '.join(meta['splits'])})",
                                 param_hint="--source")
    if "train" not in meta["splits"][spec.source]:
        raise click.BadParameter(f"{spec.data} has no train split for {spec.source}", param_hint="--source")
    if meta["splits"][spec.source].get("dev", 0) == 0:
        raise click.BadParameter(f"{spec.data} has no dev split for {spec.source}: it selects the model",
                                 param_hint="--source")
    if spec.setting == "within":
        if spec.targets:
            raise click.BadParameter("the within-language setting trains and tests on --source only",
                                     param_hint="--targets")
        return [spec.source], [spec.source], [spec.source]
    targets = spec.targets or [lang for lang in available_languages(meta, "dev") + available_languages(meta, "test")
                               if lang != spec.source]
    targets = list(dict.fromkeys(targets))
    missing = [lang for lang in targets if lang not in meta["splits"]]
    if missing:
        raise click.BadParameter(f"{', '.join(missing)} not in {spec.data}", param_hint="--targets")
    valid = [spec.source] + [lang for lang in targets if meta["splits"][lang].get("dev", 0) > 0]
    test = [lang for lang in [spec.source] + targets if meta["splits"][lang].get("test", 0) > 0]
    if spec.setting == "few-shot":
        no_dev = [lang for lang in targets if meta["splits"][lang].get("dev", 0) == 0]
        if no_dev:
            raise click.BadParameter(f"few-shot examples come from dev sets; {', '.join(no_dev)} has none",
                                     param_hint="--targets")
    return [spec.source], valid, test


def selection_metric(spec: FinetuneSpec, task: str, valid: Sequence[str]) -> Tuple[str, str]:
    """(fairseq metric name, human description) of the model-selection rule."""
    metric = spec.metric or DEFAULT_METRIC[task]
    select = spec.select or ("target" if spec.setting == "within" else "source")
    if spec.setting == "within" or select == "source":
        lang = spec.source
        rule = "target dev (within-language)" if spec.setting == "within" else "source dev (zero-shot rule)"
        return f"{metric}_{lang}", rule
    if select == "target":
        if len(valid) < 2:
            raise click.BadParameter("no target language has a dev set", param_hint="--select")
        return f"{metric}_tgt_avg", "average over the target dev sets"
    return f"{metric}_avg", "average over all dev sets"


def planned_updates(command: Sequence[str]) -> int:
    """How many updates the fairseq-train ``command`` makes: its task counts the batches it builds."""
    from ..user_dir.tasks.finetune_base import count_train_updates, parse_train_args

    try:
        with _quiet_loggers():
            return count_train_updates(parse_train_args(command[1:]))
    except ValueError as error:  # FinetuneDataError, TrainArgumentsError, or a task's refusal
        raise click.ClickException(f"cannot count the training updates: {error}") from None


def plan_runs(spec: FinetuneSpec) -> Tuple[List[RunPlan], Dict[str, Any]]:
    """Check the inputs and compose every fairseq-train command (nothing runs)."""
    meta = read_ft_meta(spec.data)
    task = meta["task"]
    pretrained = read_pretrained(spec.pretrained)
    corpus = spec.corpus
    if corpus is None and pretrained.corpus and Path(pretrained.corpus).is_dir():
        corpus = Path(pretrained.corpus)
    check_compatibility(spec.data, meta, pretrained, corpus)
    if spec.setting not in SETTINGS:
        raise click.BadParameter(f"unknown setting {spec.setting!r}", param_hint="--setting")
    if spec.setting == "few-shot" and spec.few_shot <= 0:
        raise click.BadParameter("the few-shot setting needs --few-shot M > 0", param_hint="--few-shot")
    if spec.setting != "few-shot" and spec.few_shot:
        raise click.BadParameter("--few-shot needs --setting few-shot", param_hint="--few-shot")
    train, valid, test = _languages(spec, meta)
    if spec.metric and spec.metric not in KIND_METRICS[meta["kind"]]:
        raise click.BadParameter(f"{meta['kind']} data logs {', '.join(KIND_METRICS[meta['kind']])}, not "
                                 f"{spec.metric!r}", param_hint="--metric")
    best_metric, rule = selection_metric(spec, task, valid)

    grid = dict(PAPER_GRIDS[task] if spec.grid == "paper" else DEFAULTS[task])
    for key, values in (("batch_size", spec.batch_sizes), ("lr", spec.lrs), ("head_lr", spec.head_lrs)):
        if values:
            grid[key] = values
    head_lrs: List[Optional[float]] = list(grid.get("head_lr") or [None])
    epochs = spec.epochs or PAPER_EPOCHS[task]
    default_length = 384 if task == "qa" else 128
    max_length = min(spec.max_length or default_length, int(pretrained.model_options.get("max_positions", 512)))

    base: Dict[str, OptionValue] = {
        "task": TASK_NAMES[task], "criterion": TASK_NAMES[task], "arch": pretrained.arch,
    }
    base.update({key: value for key, value in pretrained.model_options.items()})
    base.update({
        "train_languages": ",".join(train), "valid_languages": ",".join(valid), "test_languages": ",".join(test),
        "max_length": max_length,
        "few_shot": spec.few_shot or None,
        "max_train_examples": spec.max_train_examples or None,
        "freeze_language_specific": spec.freeze_language_specific,
        "route_languages": spec.route_languages or None,
        "finetune_from_model": str(pretrained.path),
        "optimizer": "xlint_adam", "adam_betas": "(0.9,0.999)", "adam_eps": 1e-8, "clip_norm": 1.0,
        "lr_scheduler": "polynomial_decay", "max_epoch": epochs,
        "best_checkpoint_metric": best_metric, "maximize_best_checkpoint_metric": True,
        "required_batch_size_multiple": 1, "num_workers": 0, "all_gather_list_size": ALL_GATHER_LIST_SIZE,
        "find_unused_parameters": True,  # the MLM head and other languages' modules get no gradient
        "log_format": "json", "log_interval": 10, "cpu": spec.cpu,
    })
    runs: List[RunPlan] = []
    updates: Dict[str, int] = {}
    for batch_size in grid["batch_size"]:
        for lr in grid["lr"]:
            for head_lr in head_lrs:
                name = f"bs{int(batch_size)}-lr{_format_value(lr)}"
                if head_lr is not None:
                    name += f"-hlr{_format_value(head_lr)}"
                for seed in spec.seeds:
                    run_dir = spec.save_dir / name / f"seed{seed}"
                    options = dict(base)
                    options.update({"batch_size": int(batch_size), "lr": lr, "head_lr": head_lr, "seed": seed,
                                    "save_dir": str(run_dir)})
                    key = str(int(batch_size))  # the learning rates and the seed change no batch
                    if key not in updates:  # counted with a stand-in schedule length, which changes no batch
                        counted = dict(options, total_num_update=1)
                        updates[key] = planned_updates(fairseq_train_command(spec.data, counted, spec.fairseq_args))
                    total = max(1, updates[key])
                    options.update({"total_num_update": total,
                                    "warmup_updates": int(round(spec.warmup_ratio * total))})
                    command = fairseq_train_command(spec.data, options, spec.fairseq_args)
                    runs.append(RunPlan(name, int(batch_size), lr, head_lr, seed, run_dir, command))
    info = {"task": task, "kind": meta.get("kind"), "setting": spec.setting, "source": spec.source,
            "train_languages": train, "valid_languages": valid, "test_languages": test,
            "selection": {"metric": best_metric, "rule": rule}, "epochs": epochs, "max_length": max_length,
            "train_updates": updates, "pretrained": str(pretrained.path),
            "language_specific": pretrained.language_specific, "few_shot": spec.few_shot,
            "freeze_language_specific": spec.freeze_language_specific}
    return runs, info


# --------------------------------------------------------------------------- running fairseq-train


def parse_log_records(lines: Iterable[str], tag: str) -> List[Dict[str, Any]]:
    marker = f"| {tag} | "
    records = []
    for line in lines:
        head, sep, payload = line.partition(marker)
        if sep and payload.strip().startswith("{"):
            try:
                records.append(json.loads(payload))
            except ValueError:
                continue
    return records


def _float(value: Any) -> Optional[float]:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


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
            parts = [f"{lang} {_float(record.get(f'valid_{base}_{lang}')) or 0:.1f}" for lang in self.valid_languages
                     if f"valid_{base}_{lang}" in record]
            best = record.get(f"valid_best_{self.metric}")
            click.echo(f"  [{self.label}] epoch {record.get('epoch')}/{self.epochs} dev {base}: " + ", ".join(parts)
                       + (f" (best {self.metric} {float(best):.2f})" if best is not None else "")
                       + f" ({elapsed:.0f}s)", err=True)


def run_streaming(command: Sequence[str], log_file: Path, on_line: Callable[[str], None],
                  env: Optional[Dict[str, str]] = None) -> None:
    """Run a command, appending its output to ``log_file`` and passing each line to ``on_line``; fail
    with one line.  The log is appended to, so that a resumed run keeps the history before it."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    environment = dict(os.environ, PYTHONUNBUFFERED="1")
    environment.update(env or {})
    tail: List[str] = []
    with open(log_file, "a", encoding="utf-8") as log:
        try:
            process = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                       env=environment, bufsize=1)
        except FileNotFoundError as error:
            raise click.ClickException(f"cannot run {command[0]}: {error.strerror}") from None
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            tail = (tail + [line.rstrip()])[-20:]
            on_line(line)
        code = process.wait()
    if code != 0:
        last = next((line for line in reversed(tail) if line.strip() and "Traceback" not in line), "")
        raise click.ClickException(f"fairseq-train exited with status {code} (log: {log_file}): {last}")


def validation_history(log_lines: Sequence[str]) -> List[Dict[str, Any]]:
    """The validations of a run's whole log, first to last, without those a restart superseded.

    The log is appended to by every attempt, and an attempt that resumes from a
    checkpoint at update N validates again at the updates after N: a validation at
    update u replaces every validation logged before it at update u or later (an
    interrupted attempt's, or those of a run restarted from scratch).
    """
    history: List[Dict[str, Any]] = []
    for record in parse_log_records(log_lines, "valid"):
        updates = _float(record.get("valid_num_updates"))
        if updates is None:
            continue
        history = [kept for kept in history if float(kept["valid_num_updates"]) < updates] + [record]
    return history


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
    if any(_float(record.get(key)) is None for record in valid):
        raise click.ClickException(f"{log_file}: validation did not log {metric}")
    best_file = run.run_dir / "checkpoint_best.pt"
    if not best_file.is_file():
        raise click.ClickException(f"{run.run_dir}: training finished without checkpoint_best.pt")
    best = read_saved_best(best_file)
    epochs = [{(k[len("valid_"):] if k.startswith("valid_") else k): _float(v) if _float(v) is not None else v
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
    click.echo(f"[{label}] + {command_text}", err=True)
    env = {}
    if spec.cpu_threads:
        env = {"OMP_NUM_THREADS": str(spec.cpu_threads), "MKL_NUM_THREADS": str(spec.cpu_threads)}
    printer = ProgressPrinter(label, info["epochs"], info["selection"]["metric"], info["valid_languages"],
                              spec.quiet, spec.verbose)
    log_file = run.run_dir / "train.log"
    run_streaming(run.command, log_file, printer, env)
    summary = summarise_run(run, log_file.read_text(encoding="utf-8").splitlines(), info["selection"]["metric"])
    write_json_atomic(summary_file, summary)
    return summary


def mean_std(values: Sequence[float]) -> Dict[str, Optional[float]]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "n": len(values)}


def aggregate_seeds(per_seed: Dict[int, Dict[str, Any]]) -> Dict[str, Dict[str, Dict[str, Optional[float]]]]:
    """{lang: {metric: {mean, std, n}}} over the seeds' evaluation results."""
    out: Dict[str, Dict[str, Dict[str, Optional[float]]]] = {}
    first = next(iter(per_seed.values()))
    for group in [g for g in first["scores"]] + (["avg"] if "average" in first else []) + (
            ["tgt_avg"] if "target_average" in first else []):
        source = {"avg": "average", "tgt_avg": "target_average"}.get(group)
        out[group] = {}
        for metric in first["metrics"]:
            values = [(result[source] if source else result["scores"][group])[metric] for result in per_seed.values()]
            out[group][metric] = mean_std(values)
    return out


def format_mean_std(stats: Dict[str, Optional[float]]) -> str:
    if stats["std"] is None:
        return f"{stats['mean']:.2f}"
    return f"{stats['mean']:.2f} ± {stats['std']:.2f}"


def results_markdown(results: Dict[str, Any]) -> str:
    test = results["test"]["summary"]
    metrics = results["test"]["metrics"]
    lines = [f"{results['task']} ({results.get('kind')}), {results['setting']}, source {results['source']}; "
             f"selection: {results['selection']['metric']} ({results['selection']['rule']}); "
             f"{len(results['seeds'])} seed(s), chosen {results['chosen']['name']}", "",
             "| language | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for group, values in test.items():
        label = {"avg": "average", "tgt_avg": "target average"}.get(group, group)
        if group == results["source"]:
            label += " (source)"
        lines.append(f"| {label} | " + " | ".join(format_mean_std(values[m]) for m in metrics) + " |")
    return "\n".join(lines) + "\n"


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


# --------------------------------------------------------------------------- evaluation


def evaluate_checkpoint(checkpoint: Path, data: Optional[Path] = None, split: str = "test",
                        languages: Optional[Sequence[str]] = None, batch_size: int = 64, cpu: bool = False,
                        with_predictions: bool = False, progress: bool = False,
                        threads: Optional[int] = None) -> Dict[str, Any]:
    """Per-language scores of a fine-tuned checkpoint on a whole split (``test`` or ``dev``).

    Runs the task's criterion in eval mode over every batch, collects the
    predictions and scores them as validation does; with ``with_predictions`` the
    result also holds one record per example under ``"predictions"``.  The task
    head is loaded strictly: a checkpoint whose head does not fit is an error.
    """
    import torch

    from ..user_dir import checkpoint_compat  # noqa: F401
    from ..user_dir.data.finetune_data import FinetuneDataError, available_languages
    from ..user_dir.tasks.finetune_base import (CheckpointMismatchError, FinetuneTask, collect_predictions,
                                                load_finetuned_model)
    from fairseq import checkpoint_utils

    if not checkpoint.is_file():
        raise click.BadParameter(f"{checkpoint} is not a file", param_hint="CHECKPOINT")
    overrides = {"data": str(data)} if data is not None else {}
    with _quiet_loggers():
        state = checkpoint_utils.load_checkpoint_to_cpu(str(checkpoint), arg_overrides=overrides)
        task_name = str(state["cfg"]["task"].get("_name", ""))
        if not task_name.startswith("xlint_") or task_name not in TASK_NAMES.values():
            raise click.BadParameter(f"{checkpoint} is not a fine-tuned xlint checkpoint (task {task_name})",
                                     param_hint="CHECKPOINT")
        data_dir = Path(state["cfg"]["task"]["data"])
        if not (data_dir / "dict.txt").is_file():
            raise click.BadParameter(f"{data_dir}/dict.txt not found: give the fine-tuning data with --data",
                                     param_hint="--data")
        rows = sum(1 for line in (data_dir / "dict.txt").read_text(encoding="utf-8").splitlines() if line.strip()) + 5
        weights = state["model"].get("encoder.embed_tokens.weight")
        if weights is not None and int(weights.shape[0]) != rows:
            raise click.BadParameter(f"{data_dir} was encoded with another dictionary than {checkpoint}'s model",
                                     param_hint="--data")
        try:
            model, cfg, task = load_finetuned_model(state, str(checkpoint))
        except (FinetuneDataError, CheckpointMismatchError) as error:
            raise click.ClickException(str(error)) from None
    if not isinstance(task, FinetuneTask):
        raise click.BadParameter(f"{checkpoint} is not a fine-tuned xlint checkpoint (task {cfg.task._name})",
                                 param_hint="CHECKPOINT")
    fairseq_split = {"test": "test", "dev": "valid", "valid": "valid"}[split]
    available = available_languages(task.meta, "test" if fairseq_split == "test" else "dev")
    chosen = list(languages) if languages else available
    unknown = [lang for lang in chosen if lang not in available]
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)} has no {split} split in {task.data_dir}",
                                 param_hint="--languages")
    if fairseq_split == "test":
        task.test_languages = chosen
    else:
        task.valid_languages = chosen
    use_cuda = torch.cuda.is_available() and not cpu
    if use_cuda:
        model = model.cuda()
    criterion = task.build_criterion(cfg.criterion)
    try:
        with _quiet_loggers():
            dataset = task.load_dataset(fairseq_split)
    except FinetuneDataError as error:
        raise click.ClickException(str(error)) from None
    bar = None
    if progress:
        bar = click.progressbar(length=1, label=f"evaluating {split}", file=sys.stderr)

    def report(done: int, total: int) -> None:
        if bar is not None:
            bar.length = total
            bar.update(1)

    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with _quiet_loggers():
            items = collect_predictions(task, model, criterion, dataset, batch_size, use_cuda, report)
    finally:
        torch.set_num_threads(previous_threads)
    if bar is not None:
        bar.render_finish()
    scores = task.score_items(items)
    result: Dict[str, Any] = {
        "checkpoint": str(checkpoint.resolve()), "data": task.data_dir, "split": split, "task": task.TASK,
        "kind": task.meta.get("kind"), "metrics": list(task.metric_names()),
        "train_languages": list(task.train_languages),
        "examples": {lang: sum(1 for example_lang, _ in dataset.examples if example_lang == lang) for lang in chosen},
        "scores": {lang: scores[lang] for lang in chosen if lang in scores},
    }
    if "avg" in scores:
        result["average"] = scores["avg"]
    if "tgt_avg" in scores:
        result["target_average"] = scores["tgt_avg"]
    if with_predictions:
        result["predictions"] = task.prediction_records(items, dataset)
    return result


@contextlib.contextmanager
def _quiet_loggers():
    """fairseq's, hydra's and xlint's INFO and DEBUG messages off while working in-process."""
    loggers = [logging.getLogger(name) for name in ("fairseq", "hydra", "xlint")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def evaluation_markdown(result: Dict[str, Any]) -> str:
    metrics = result["metrics"]
    lines = [f"{result['task']} ({result.get('kind')}) on {result['split']}: {result['checkpoint']}", "",
             "| language | examples | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 2) + "|"]
    for lang, values in result["scores"].items():
        label = lang + (" (train)" if lang in result["train_languages"] else "")
        lines.append(f"| {label} | {result['examples'][lang]} | " + " | ".join(f"{values[m]:.2f}" for m in metrics)
                     + " |")
    for key, label in (("average", "average"), ("target_average", "target average")):
        if key in result:
            lines.append(f"| {label} | | " + " | ".join(f"{result[key][m]:.2f}" for m in metrics) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- click commands


@click.command("finetune", context_settings={"ignore_unknown_options": True})
@click.argument("data", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--pretrained", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="pretrained checkpoint (xlint pretrain); its saved cfg gives the architecture and languages")
@click.option("--corpus", type=click.Path(path_type=Path, file_okay=False),
              help="the checkpoint's pretraining corpus (default: the one its cfg names); checked against the "
              "dictionary DATA was converted with")
@click.option("--save-dir", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="runs go to SAVE_DIR/<grid point>/seed<N>/, results to SAVE_DIR/results.{json,md}")
@click.option("--setting", type=click.Choice(SETTINGS), default="zero-shot", show_default=True,
              help="within: train/select/test on --source; zero-shot: train on --source, test on every target; "
              "few-shot: zero-shot plus --few-shot examples of each target's dev set in training")
@click.option("--source", required=True, help="training language (the language itself for --setting within)")
@click.option("--targets", help="comma-separated target languages (default: every other language of DATA)")
@click.option("--few-shot", type=click.IntRange(min=0), default=0, help="M examples per target (few-shot)")
@click.option("--select", type=click.Choice(SELECTIONS),
              help="model selection on the source dev set (default; the paper's zero-shot rule), the average "
              "of the target dev sets, or the average of all dev sets")
@click.option("--metric", help="selection metric: f1/acc (POS), f1 (NER, QA), acc (XNLI) [default: f1, XNLI acc]")
@click.option("--seeds", default="1", show_default=True, help="comma-separated seeds; results are mean ± std")
@click.option("--grid", type=click.Choice(["none", "paper"]), default="none", show_default=True,
              help="paper: Wang et al. App. A (batch {16,32} x lr {2,3,5}e-5; XNLI batch {4,8} x encoder lr "
              "{1e-6,5e-6,2e-5} x classifier lr {5e-6,2e-5,5e-5})")
@click.option("--batch-size", "batch_sizes", help="comma-separated batch sizes (overrides the grid's)")
@click.option("--lr", "lrs", help="comma-separated (encoder) learning rates (overrides the grid's)")
@click.option("--head-lr", "head_lrs", help="comma-separated task-head learning rates (default: --lr; XNLI 2e-5)")
@click.option("--epochs", type=click.IntRange(min=1),
              help="epochs [default: the paper's: NER/POS 10, QA 2, XNLI 200]")
@click.option("--warmup-ratio", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="linear warm-up over this fraction of the updates, then linear decay to 0")
@click.option("--max-length", type=click.IntRange(min=8), help="input length in subwords [128; QA 384]")
@click.option("--max-train-examples", type=click.IntRange(min=0), default=0,
              help="train on a fixed random subset of this many examples per language (0: all)")
@click.option("--freeze-language-specific", is_flag=True,
              help="keep the language-specific modules at their pretrained values")
@click.option("--route-languages", help="LANG=MODEL_LANG,...: modules for languages the model lacks")
@click.option("--cpu", is_flag=True, help="train and evaluate on CPU")
@click.option("--cpu-threads", type=click.IntRange(min=1), help="OMP/MKL threads of the training processes")
@click.option("--evaluate/--no-evaluate", default=True, show_default=True,
              help="evaluate the selected checkpoints on the test sets")
@click.option("--dry-run", is_flag=True, help="print the fairseq-train commands only")
@click.option("--quiet", "-q", is_flag=True, help="no progress lines")
@click.option("--verbose", "-v", is_flag=True, help="show fairseq-train's whole output")
@click.argument("fairseq_args", nargs=-1, type=click.UNPROCESSED)
def finetune(data: Path, pretrained: Path, corpus: Optional[Path], save_dir: Path, setting: str, source: str,
             targets: Optional[str], few_shot: int, select: Optional[str], metric: Optional[str], seeds: str,
             grid: str, batch_sizes: Optional[str], lrs: Optional[str], head_lrs: Optional[str],
             epochs: Optional[int], warmup_ratio: float, max_length: Optional[int], max_train_examples: int,
             freeze_language_specific: bool, route_languages: Optional[str], cpu: bool, cpu_threads: Optional[int],
             evaluate: bool, dry_run: bool, quiet: bool, verbose: bool, fairseq_args: Tuple[str, ...]) -> None:
    """Fine-tune a pretrained model on DATA (from `xlint data convert`) and evaluate it.

    Every (batch size, learning rate, seed) is one fairseq-train run; the command
    line of each is printed. Arguments after `--` go to every fairseq-train
    unchanged and win over the generated ones (e.g. distributed flags:
    `-- --distributed-world-size 4`, or `--keep-last-epochs 1` to save disk).
    Finished runs are reused when the command is unchanged.
    """
    spec = FinetuneSpec(
        data=data, pretrained=pretrained, save_dir=save_dir, source=source, setting=setting,
        targets=parse_list(targets, str, "--targets"), few_shot=few_shot, select=select, metric=metric,
        seeds=parse_list(seeds, int, "--seeds") or [1], batch_sizes=parse_list(batch_sizes, int, "--batch-size"),
        lrs=parse_list(lrs, float, "--lr"), head_lrs=parse_list(head_lrs, float, "--head-lr"), grid=grid,
        epochs=epochs, warmup_ratio=warmup_ratio, max_length=max_length, max_train_examples=max_train_examples,
        freeze_language_specific=freeze_language_specific, route_languages=route_languages, corpus=corpus, cpu=cpu,
        cpu_threads=cpu_threads, evaluate=evaluate, dry_run=dry_run, quiet=quiet, verbose=verbose,
        fairseq_args=fairseq_args)
    results = run_finetune(spec)
    if dry_run:
        return
    if "test" in results:
        click.echo((save_dir / "results.md").read_text(encoding="utf-8"))
    click.echo(f"results: {save_dir / 'results.json'}")


@click.command("evaluate")
@click.argument("checkpoint", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--data", type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="fine-tuning data folder (default: the one the checkpoint was trained on)")
@click.option("--split", type=click.Choice(["test", "dev"]), default="test", show_default=True)
@click.option("--languages", help="comma-separated languages (default: every language with the split)")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              help="output prefix: writes OUT.json and OUT.md (OUT may end in .json) "
              "[default: CHECKPOINT_DIR/eval-SPLIT]")
@click.option("--predictions", is_flag=True, help="also write OUT.predictions.jsonl (one line per example)")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--cpu", is_flag=True, help="evaluate on CPU even if a GPU is available")
@click.option("--quiet", "-q", is_flag=True, help="no progress bar")
def evaluate(checkpoint: Path, data: Optional[Path], split: str, languages: Optional[str], out: Optional[Path],
             predictions: bool, batch_size: int, cpu: bool, quiet: bool) -> None:
    """Score a fine-tuned CHECKPOINT per language on a whole split (JSON + Markdown table)."""
    result = evaluate_checkpoint(checkpoint, data=data, split=split,
                                 languages=parse_list(languages, str, "--languages"),
                                 batch_size=batch_size, cpu=cpu, with_predictions=predictions, progress=not quiet)
    paths = evaluation_paths(out or checkpoint.parent / f"eval-{split}")
    records = result.pop("predictions", None)
    if records is not None:
        write_text_atomic(paths.predictions, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    table = evaluation_markdown(result)
    write_json_atomic(paths.json, result)
    write_text_atomic(paths.markdown, table)
    click.echo(table)
    click.echo(f"written: {paths.json}, {paths.markdown}" + (f", {paths.predictions}" if records is not None else ""))


@dataclass
class EvaluationPaths:
    json: Path
    markdown: Path
    predictions: Path


def evaluation_paths(out: Path) -> EvaluationPaths:
    """``OUT.json``, ``OUT.md`` and ``OUT.predictions.jsonl``; an ``OUT`` ending in .json or .md
    names the file itself (``--out eval.json`` writes eval.json and eval.md)."""
    prefix = out.with_suffix("") if out.suffix in (".json", ".md") else out
    return EvaluationPaths(json=prefix.with_name(prefix.name + ".json"), markdown=prefix.with_name(prefix.name + ".md"),
                           predictions=prefix.with_name(prefix.name + ".predictions.jsonl"))


# --------------------------------------------------------------------------- the demo's downstream table


def run_pos_transfer_demo(corpus_dir: Path, checkpoint: Path, pos_paths: Dict[str, Dict[str, Path]],
                          workdir: Path, source: str = "grc", target: str = "tr", max_epochs: int = 2,
                          lr: float = 5e-4, batch_size: int = 32, max_train_examples: int = 2000, seed: int = 1,
                          cpu_threads: Optional[int] = None, quiet: bool = True,
                          pos_data: Optional[Path] = None) -> Dict[str, Any]:
    """POS transfer on the demo data: fine-tune on ``source`` (tested on ``source``: within-language,
    and ``target``: zero-shot) and on ``target`` (within-language); returns the scores.

    ``pos_paths[lang][split]`` are the demo's CoNLL files (``fetch_demo_data().pos``);
    they are converted once into ``pos_data`` (default ``workdir/pos-data``).  Result::

        {"zero_shot": <evaluate result of the source-trained model on both test sets>,
         "within_target": <evaluate result of the target-trained model>,
         "table": {"source within": {...}, "target zero-shot": {...}, "target within": {...}}}
    """
    from ..preprocess.demo_data import SHARED_TAGS
    from ..preprocess.finetune_convert import InputSpec, convert, reader_for

    workdir = Path(workdir)
    data = Path(pos_data) if pos_data is not None else workdir / "pos-data"
    if not (data / "meta.json").is_file():
        specs = [InputSpec(lang, split, Path(pos_paths[lang][split])) for lang in (source, target)
                 for split in ("train", "dev", "test")]
        convert(specs, reader=reader_for("conll", iob="off", tag_set=SHARED_TAGS), task="tagging", kind="pos",
                source_format="demo-pos", corpus=Path(corpus_dir), out=data, labels=SHARED_TAGS,
                workers=os.cpu_count() or 1)
    common = dict(data=data, pretrained=Path(checkpoint), seeds=[seed], batch_sizes=[batch_size], lrs=[lr],
                  epochs=max_epochs, max_train_examples=max_train_examples, cpu=True, cpu_threads=cpu_threads,
                  quiet=quiet, corpus=Path(corpus_dir))
    transfer = run_finetune(FinetuneSpec(save_dir=workdir / f"zero-shot-{source}", source=source,
                                         setting="zero-shot", targets=[target], **common))
    within = run_finetune(FinetuneSpec(save_dir=workdir / f"within-{target}", source=target, setting="within",
                                       **common))
    zero = transfer["test"]["per_seed"][str(seed)]
    inside = within["test"]["per_seed"][str(seed)]
    return {"zero_shot": zero, "within_target": inside,
            "table": {f"{source} within": zero["scores"][source], f"{target} zero-shot": zero["scores"][target],
                      f"{target} within": inside["scores"][target]}}

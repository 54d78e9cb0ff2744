"""In-process evaluation of a fine-tuned checkpoint (``xlint evaluate``, and the test sets of
``xlint finetune``): the task's criterion in eval mode over a whole split, scored as
validation scores it."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

import click

from .fairseq_runner import quiet_loggers
from .finetune_plan import TASK_NAMES


def evaluate_checkpoint(checkpoint: Path, data: Optional[Path] = None, split: str = "test",
                        languages: Optional[Sequence[str]] = None, batch_size: int = 64, cpu: bool = False,
                        with_predictions: bool = False, progress: bool = False,
                        threads: Optional[int] = None,
                        prepare_model: Optional[Callable[[Any], None]] = None) -> Dict[str, Any]:
    """Per-language scores of a fine-tuned checkpoint on a whole split (``test`` or ``dev``).

    Runs the task's criterion in eval mode over every batch, collects the
    predictions and scores them as validation does; with ``with_predictions`` the
    result also holds one record per example under ``"predictions"``.  The task
    head is loaded strictly: a checkpoint whose head does not fit is an error.

    ``prepare_model(model)``, if given, is called on the loaded model (on CPU, before it
    moves to the GPU) to change it in place before scoring: re-initialise or interpolate
    layers addressed with :mod:`xlint.user_dir.models.layer_groups`, which names layers and
    sublayers the same way for both model families (``xlm_adapter`` and XLM-R).
    """
    import torch

    from ..preprocess.encoders import embedding_rows
    from ..user_dir import checkpoint_compat  # noqa: F401
    from ..user_dir.data.finetune_data import FinetuneDataError, available_languages
    from ..user_dir.tasks.finetune_base import (CheckpointMismatchError, FinetuneTask, collect_predictions,
                                                load_finetuned_model)
    from fairseq import checkpoint_utils

    if not checkpoint.is_file():
        raise click.BadParameter(f"{checkpoint} is not a file", param_hint="CHECKPOINT")
    overrides = {"data": str(data)} if data is not None else {}
    with quiet_loggers():
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
        saved_rows = embedding_rows(state)  # either family's embedding name
        if saved_rows >= 0 and saved_rows != rows:
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
    if prepare_model is not None:
        prepare_model(model)
    use_cuda = torch.cuda.is_available() and not cpu
    if use_cuda:
        model = model.cuda()
    criterion = task.build_criterion(cfg.criterion)
    try:
        with quiet_loggers():
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
        with quiet_loggers():
            items = collect_predictions(task, model, criterion, dataset, batch_size, use_cuda, report)
    finally:
        torch.set_num_threads(previous_threads)
    if bar is not None:
        bar.render_finish()
    scores = task.score_items(items)
    result: Dict[str, Any] = {
        "checkpoint": str(checkpoint.resolve()), "data": task.data_dir, "split": split, "task": task.TASK,
        "family": getattr(model, "FAMILY", type(model).__name__),
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

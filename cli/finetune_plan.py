"""Planning ``xlint finetune``: settings, the grid × seeds, one fairseq-train command line per run.

Nothing runs here except the task's own count of the training updates
(:func:`planned_updates`), so that the learning-rate schedule lasts exactly the
updates fairseq-train makes.  Settings and selection rules are described in
:mod:`xlint.cli.commands_finetune`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import click

from .fairseq_runner import OptionValue, fairseq_train_command, quiet_loggers
from .finetune_inputs import check_compatibility, read_ft_meta, read_pretrained
from .finetune_methods import DEFAULT_NOISYTUNE_LAMBDA, MethodOptions, method_options, noised_checkpoint_path

TASK_NAMES = {"tagging": "xlint_tagging", "classification": "xlint_classification", "qa": "xlint_qa"}
SETTINGS = ("within", "zero-shot", "few-shot", "bilingual")
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
#: tasks whose input is a pair of texts; RoBERTa / XLM-R separate the two with ``</s> </s>``
#: (``<s> A </s> </s> B </s>``, as ``RobertaHubInterface.encode`` and fairseq's GLUE recipes do)
PAIR_TASKS = ("classification", "qa")
ROBERTA_PAIR_SEPARATORS = 2
#: the validation metrics each kind of data logs per language (``<metric>_<lang>``)
KIND_METRICS = {"pos": ("acc", "f1"), "ner": ("f1", "precision", "recall"), "nli": ("acc",), "qa": ("f1", "em")}
#: predictions travel in the logging outputs; gathered across workers they need room
ALL_GATHER_LIST_SIZE = 1 << 22


def check_no_language_modules(spec: "FinetuneSpec", pretrained) -> None:
    """A roberta-family model has no language-specific modules: options about them are refused."""
    what = f"{pretrained.path} is a roberta-family (XLM-R) checkpoint: it has no language-specific modules"
    if spec.freeze_language_specific:
        raise click.BadParameter(f"{what} to freeze", param_hint="--freeze-language-specific")
    if spec.route_languages:
        raise click.BadParameter(f"{what} to route languages through; every language uses the same encoder",
                                 param_hint="--route-languages")


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
    #: a set spec of weights kept at their pretrained values (``--freeze``, e.g. ``1-4:attn``)
    freeze_weights: Optional[str] = None
    #: a set spec of weights re-initialised before the first update (``--reinit``, e.g. ``1-4:all``)
    reinit_weights: Optional[str] = None
    #: ``SPEC=FACTOR``: a set of weights at FACTOR x the learning rate (``--lr-scale``, e.g. ``11-12:attn=10``)
    lr_scale_weights: Optional[str] = None
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
    #: ``--method`` and its options (:mod:`.finetune_methods`)
    method: MethodOptions = field(default_factory=MethodOptions)
    #: training curves (``RUN_DIR/curves.jsonl``): a point every this many updates (0: none)
    curve_interval: int = 0
    #: dev examples per language of the curves' fixed subset (None: the task's default, 200; 0: all)
    curve_examples: Optional[int] = None
    #: also each layer's CKA to the pretrained model at every point
    curve_cka: bool = False


@dataclass
class RunPlan:
    name: str
    batch_size: int
    lr: float
    head_lr: Optional[float]
    seed: int
    run_dir: Path
    command: List[str]
    #: NoisyTune: (pretrained checkpoint, noised copy to write before the run, lambda, seed)
    noised: Optional[Tuple[Path, Path, float, int]] = None


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
    if spec.setting == "bilingual":
        if not spec.targets:
            raise click.BadParameter("the bilingual setting trains on --source and the languages of --targets: "
                                     "name them", param_hint="--targets")
        lacking = [lang for lang in targets if "train" not in meta["splits"][lang]
                   or meta["splits"][lang].get("dev", 0) == 0]
        if lacking:
            raise click.BadParameter(f"the bilingual setting trains and selects on every language; "
                                     f"{', '.join(lacking)} lacks a train or dev split", param_hint="--targets")
        return [spec.source] + targets, valid, test
    if spec.setting == "few-shot":
        no_dev = [lang for lang in targets if meta["splits"][lang].get("dev", 0) == 0]
        if no_dev:
            raise click.BadParameter(f"few-shot examples come from dev sets; {', '.join(no_dev)} has none",
                                     param_hint="--targets")
    return [spec.source], valid, test


def selection_metric(spec: FinetuneSpec, task: str, valid: Sequence[str]) -> Tuple[str, str]:
    """(fairseq metric name, human description) of the model-selection rule."""
    metric = spec.metric or DEFAULT_METRIC[task]
    select = spec.select or {"within": "target", "bilingual": "average"}.get(spec.setting, "source")
    if spec.setting == "bilingual" and select == "target":
        raise click.BadParameter("a bilingual model trains on its targets: select on source or average",
                                 param_hint="--select")
    if spec.setting == "within" or select == "source":
        lang = spec.source
        rule = "target dev (within-language)" if spec.setting == "within" else "source dev (zero-shot rule)"
        return f"{metric}_{lang}", rule
    if select == "target":
        if len(valid) < 2:
            raise click.BadParameter("no target language has a dev set", param_hint="--select")
        return f"{metric}_tgt_avg", "average over the target dev sets"
    if spec.setting == "bilingual":
        return f"{metric}_avg", "average over the training languages' dev sets (bilingual)"
    return f"{metric}_avg", "average over all dev sets"


def curve_options(spec: FinetuneSpec, pretrained: Path) -> Dict[str, OptionValue]:
    """The task options of the training curves (``{}`` without ``--curve-interval``)."""
    if spec.curve_interval <= 0:
        if spec.curve_examples is not None or spec.curve_cka:
            raise click.BadParameter("needs --curve-interval N",
                                     param_hint="--curve-cka" if spec.curve_cka else "--curve-examples")
        return {}
    out: Dict[str, OptionValue] = {"curve_interval": spec.curve_interval, "curve_examples": spec.curve_examples}
    if spec.curve_cka:
        out["curve_cka"] = True
        out["slow_fast_reference"] = str(pretrained)  # the weights the CKA compares with, also on resume
    return out


def planned_updates(command: Sequence[str]) -> int:
    """How many updates the fairseq-train ``command`` makes: its task counts the batches it builds."""
    from ..user_dir.tasks.finetune_base import count_train_updates, parse_train_args

    try:
        with quiet_loggers():
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
    if pretrained.family == "roberta":
        check_no_language_modules(spec, pretrained)
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
    if pretrained.family == "roberta" and task in PAIR_TASKS:
        base["pair_separators"] = ROBERTA_PAIR_SEPARATORS
    base.update({
        "train_languages": ",".join(train), "valid_languages": ",".join(valid), "test_languages": ",".join(test),
        "max_length": max_length,
        "few_shot": spec.few_shot or None,
        "max_train_examples": spec.max_train_examples or None,
        "freeze_language_specific": spec.freeze_language_specific,
        "freeze_weights": spec.freeze_weights or None,
        "reinit_weights": spec.reinit_weights or None,
        "lr_scale_weights": spec.lr_scale_weights or None,
        "route_languages": spec.route_languages or None,
        "finetune_from_model": str(pretrained.path),
        "optimizer": "xlint_adam", "adam_betas": "(0.9,0.999)", "adam_eps": 1e-8, "clip_norm": 1.0,
        "lr_scheduler": "polynomial_decay", "max_epoch": epochs,
        "best_checkpoint_metric": best_metric, "maximize_best_checkpoint_metric": True,
        "required_batch_size_multiple": 1, "num_workers": 0, "all_gather_list_size": ALL_GATHER_LIST_SIZE,
        "find_unused_parameters": True,  # the MLM head and other languages' modules get no gradient
        "log_format": "json", "log_interval": 10, "cpu": spec.cpu,
    })
    base.update(method_options(spec.method, meta.get("kind"), pretrained.path))
    base.update(curve_options(spec, pretrained.path))
    noisy_lambda = None
    if spec.method.method == "noisytune":
        noisy_lambda = DEFAULT_NOISYTUNE_LAMBDA if spec.method.noisytune_lambda is None else \
            spec.method.noisytune_lambda
        if not noisy_lambda >= 0:
            raise click.BadParameter("lambda must be non-negative", param_hint="--noisytune-lambda")
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
                    noised = None
                    if noisy_lambda is not None:
                        path = noised_checkpoint_path(spec.save_dir, pretrained.path, noisy_lambda, seed)
                        noised = (pretrained.path, path, noisy_lambda, seed)
                        options["finetune_from_model"] = str(path)
                    key = str(int(batch_size))  # the learning rates and the seed change no batch
                    if key not in updates:  # counted with a stand-in schedule length, which changes no batch
                        counted = dict(options, total_num_update=1)
                        updates[key] = planned_updates(fairseq_train_command(spec.data, counted, spec.fairseq_args))
                    total = max(1, updates[key])
                    options.update({"total_num_update": total,
                                    "warmup_updates": int(round(spec.warmup_ratio * total))})
                    command = fairseq_train_command(spec.data, options, spec.fairseq_args)
                    runs.append(RunPlan(name, int(batch_size), lr, head_lr, seed, run_dir, command, noised))
    info = {"task": task, "kind": meta.get("kind"), "setting": spec.setting, "source": spec.source,
            "train_languages": train, "valid_languages": valid, "test_languages": test,
            "selection": {"metric": best_metric, "rule": rule}, "epochs": epochs, "max_length": max_length,
            "train_updates": updates, "pretrained": str(pretrained.path), "family": pretrained.family,
            "language_specific": pretrained.language_specific, "few_shot": spec.few_shot,
            "freeze_language_specific": spec.freeze_language_specific, "method": spec.method.method}
    if noisy_lambda is not None:
        info["noisytune_lambda"] = noisy_lambda
    return runs, info

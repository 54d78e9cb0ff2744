"""The library behind ``xlint interpolate``: sweeps of interpolated fine-tuned models, their
resumable journal, shards and the merge, tidy outputs (Wu et al. 2022, Sec. 3.1).

Checkpoints: ``A B`` (1D) or ``A B --plane C`` (2D), B always the bilingual model θ_{src,tgt}:

* 1D: θ(α) = α θ_B + (1 − α) θ_A (Eq. 1 with A = θ_src; Eq. 2 with A = θ_tgt);
* 2D: θ(α1, α2) = θ_B + α1 (θ_A − θ_B) + α2 (θ_C − θ_B) (Eq. 3 with A = θ_src, C = θ_tgt).

One model is built (A's task and architecture, :func:`load_finetuned_model`) and every
point's weights are written into it in place from the anchors' state dicts, kept in fp32
on the CPU (:func:`xlint.analysis.interpolation.combine_into`); each point is scored per
language on the whole dev (or test) split as validation scores it
(:func:`collect_predictions`, ``task.score_items``).  Outside ``--scope`` the tensors are
the first anchor's (θ_A in 1D, θ_B in 2D).  The bilingual model's point (α = 1, or (0, 0))
is always evaluated: it normalises every score.

Output folder: ``sweep.json`` (the configuration), ``points.jsonl`` (the journal: one line
per evaluated point, appended and flushed as each finishes, so a killed sweep resumes with
the missing points only), then, once complete, ``scores.jsonl`` (one row per point,
language and metric: raw and normalised score), ``summary.json`` and ``summary.md``.
With ``--shard i/n`` the folder is ``OUT/shard-i-of-n`` and holds grid points i, i+n, ...
(and the reference point); :func:`merge_shards` joins them into ``OUT``.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import click

from ..preprocess.textio import write_json_atomic, write_text_atomic

#: model cfg keys that do not change the evaluated function (dropout is off in eval mode)
TRAINING_ONLY_MODEL_KEYS = ("dropout", "attention_dropout", "activation_dropout")
#: task cfg keys that change how a split is turned into model inputs
EVALUATION_TASK_KEYS = ("max_length", "route_languages", "window_stride", "max_answer_length", "doc_stride")
#: the metric of each task's curves (Wu et al.: accuracy for POS and XNLI, span F1 for NER, F1 for QA)
PRIMARY_METRIC = {"pos": "acc", "ner": "f1", "nli": "acc", "qa": "f1"}
ROLES = ("source", "target", "other")
FORMAT_VERSION = 1


def point_key(point: Sequence[float]) -> str:
    return ",".join(f"{value:.6g}" for value in point)


def parse_alphas(text: Optional[str], default: Sequence[float]) -> List[float]:
    """``paper`` (or None): ``default``; ``START:STOP:STEP``; or a comma-separated list."""
    from ..analysis.interpolation import coarse_grid

    if text is None or text == "paper":
        return list(default)
    try:
        if ":" in text:
            start, stop, step = (float(part) for part in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            values = coarse_grid(start, stop, step)
        else:
            values = [float(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise click.BadParameter(f"expected 'paper', START:STOP:STEP or a comma-separated list, got {text!r}",
                                 param_hint="--alphas") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise click.BadParameter(f"no finite values in {text!r}", param_hint="--alphas")
    return sorted(set(round(v, 10) for v in values))


def parse_shard(text: Optional[str]) -> Optional[Tuple[int, int]]:
    if text is None:
        return None
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise click.BadParameter(f"expected I/N, got {text!r}", param_hint="--shard") from None
    if count < 1 or not 0 <= index < count:
        raise click.BadParameter(f"shard {text}: I must lie in 0..N-1", param_hint="--shard")
    return index, count


def grid_points(mode: str, alphas: Sequence[float], alphas2: Optional[Sequence[float]] = None
                ) -> List[Tuple[float, ...]]:
    """The sweep's points in evaluation order, the reference (bilingual) point included."""
    if mode == "1d":
        points = [(float(a),) for a in alphas]
        reference: Tuple[float, ...] = (1.0,)
    else:
        points = [(float(a1), float(a2)) for a1 in alphas for a2 in (alphas2 or alphas)]
        reference = (0.0, 0.0)
    if reference not in points:
        points.append(reference)
    return points


def reference_point(mode: str) -> Tuple[float, ...]:
    return (1.0,) if mode == "1d" else (0.0, 0.0)


def shard_points(points: Sequence[Tuple[float, ...]], shard: Optional[Tuple[int, int]], mode: str
                 ) -> List[Tuple[float, ...]]:
    """Shard i of n: points i, i + n, ... of the grid, plus the reference point (every shard normalises)."""
    if shard is None:
        return list(points)
    index, count = shard
    mine = [point for number, point in enumerate(points) if number % count == index]
    if reference_point(mode) not in mine:
        mine.append(reference_point(mode))
    return mine


# --------------------------------------------------------------------------- checkpoints


@dataclass
class Anchor:
    """One loaded checkpoint: its fp32 CPU state dict and what the checks compare."""

    name: str
    path: Path
    state: Dict[str, Any]
    checkpoint: Dict[str, Any]
    task_name: str
    model_cfg: Dict[str, Any]
    task_cfg: Dict[str, Any]
    seed: Optional[int]
    train_languages: List[str]
    meta: Dict[str, Any] = field(default_factory=dict)
    dictionary: Optional[str] = None

    def identity(self) -> Dict[str, Any]:
        stat = self.path.stat()
        return {"path": str(self.path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _plain(cfg: Any) -> Dict[str, Any]:
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        return dict(OmegaConf.to_container(cfg, resolve=False))
    return dict(cfg or {})


def load_checkpoint_mmap(path: Path, overrides: Dict[str, Any]) -> Dict[str, Any]:
    """As fairseq's ``load_checkpoint_to_cpu`` (cfg as a DictConfig with ``overrides``, the state upgraded),
    but memory-mapped and without the optimizer state, which is never read: only the model's tensors
    become resident."""
    import torch
    from fairseq import checkpoint_utils
    from fairseq.dataclass.utils import overwrite_args_by_name
    from omegaconf import OmegaConf

    state = torch.load(str(path), map_location="cpu", mmap=True)
    state.pop("last_optimizer_state", None)
    if state.get("cfg") is not None:
        state["cfg"] = OmegaConf.create(state["cfg"], flags={"allow_objects": True})
        if overrides:
            overwrite_args_by_name(state["cfg"], overrides)
    return checkpoint_utils._upgrade_state_dict(state)


def load_anchor(path: Path, name: str, data: Optional[Path]) -> Anchor:
    """Load a fine-tuned checkpoint to the CPU, its float tensors in fp32 (the optimizer state dropped)."""
    import torch

    from ..user_dir import checkpoint_compat  # noqa: F401
    from ..user_dir.data.finetune_data import FinetuneDataError, read_meta
    from ..preprocess.textio import sha256_file
    from .fairseq_runner import quiet_loggers
    from .finetune_plan import TASK_NAMES

    if not path.is_file():
        raise click.BadParameter(f"{path} is not a file", param_hint=name)
    overrides = {"data": str(data)} if data is not None else {}
    try:
        with quiet_loggers():
            checkpoint = load_checkpoint_mmap(path, overrides)
    except Exception as error:  # noqa: BLE001 - an unreadable checkpoint is reported, whatever the cause
        raise click.BadParameter(f"{path}: cannot load it ({' '.join(str(error).split())})", param_hint=name)
    cfg = checkpoint.get("cfg")
    if cfg is None or "task" not in cfg:
        raise click.BadParameter(f"{path} has no saved cfg: not a fine-tuned xlint checkpoint", param_hint=name)
    task_cfg, model_cfg = _plain(cfg["task"]), _plain(cfg["model"])
    task_name = str(task_cfg.get("_name", ""))
    if task_name not in TASK_NAMES.values():
        raise click.BadParameter(f"{path} is not a fine-tuned xlint checkpoint (task {task_name})", param_hint=name)
    state = {key: value.float() if isinstance(value, torch.Tensor) and torch.is_floating_point(value) else value
             for key, value in checkpoint["model"].items()}
    data_dir = Path(str(task_cfg.get("data", "")))
    meta: Dict[str, Any] = {}
    dictionary = None
    try:
        meta = read_meta(str(data_dir))
        dictionary = meta.get("dictionary_sha256")
    except FinetuneDataError:
        meta = {}
    if dictionary is None and (data_dir / "dict.txt").is_file():
        dictionary = sha256_file(data_dir / "dict.txt")
    train = [lang for lang in str(task_cfg.get("train_languages", "")).split(",") if lang]
    seed = task_cfg.get("seed")
    common = cfg.get("common") if hasattr(cfg, "get") else None
    if common is not None and common.get("seed") is not None:
        seed = common.get("seed")
    return Anchor(name=name, path=path, state=state, checkpoint=checkpoint, task_name=task_name,
                  model_cfg=model_cfg, task_cfg=task_cfg, seed=int(seed) if seed is not None else None,
                  train_languages=train, meta=meta, dictionary=dictionary)


def incompatibility(anchors: Sequence[Anchor], scope: str = "all") -> Optional[str]:
    """Why the checkpoints cannot be combined (one line), or None."""
    from ..analysis.interpolation import combinable

    first = anchors[0]
    for other in anchors[1:]:
        pair = f"{first.name} ({first.path.name}) and {other.name} ({other.path.name})"
        if other.task_name != first.task_name:
            return f"different tasks: {first.name} is {first.task_name}, {other.name} is {other.task_name}"
        kinds = first.meta.get("kind"), other.meta.get("kind")
        if kinds[0] and kinds[1] and kinds[0] != kinds[1]:
            return f"different tasks: {first.name} was trained on {kinds[0]} data, {other.name} on {kinds[1]}"
        if other.model_cfg.get("_name") != first.model_cfg.get("_name"):
            return (f"different architectures: {first.name} is {first.model_cfg.get('_name')}, "
                    f"{other.name} is {other.model_cfg.get('_name')}")
        for key in sorted(set(first.model_cfg) | set(other.model_cfg)):
            if key in TRAINING_ONLY_MODEL_KEYS or key == "_name":
                continue
            if first.model_cfg.get(key) != other.model_cfg.get(key):
                return (f"different architectures: {key} is {first.model_cfg.get(key)!r} in {first.name}, "
                        f"{other.model_cfg.get(key)!r} in {other.name}")
        if first.dictionary and other.dictionary and first.dictionary != other.dictionary:
            return f"different dictionaries: {pair} were fine-tuned on data encoded with other dictionaries"
        labels = first.meta.get("labels"), other.meta.get("labels")
        if labels[0] is not None and labels[1] is not None and list(labels[0]) != list(labels[1]):
            return f"different label sets: {first.name} has {labels[0]}, {other.name} has {labels[1]}"
        for key in EVALUATION_TASK_KEYS:
            if first.task_cfg.get(key) != other.task_cfg.get(key):
                return (f"{pair} turn data into inputs differently: {key} is {first.task_cfg.get(key)!r} in "
                        f"{first.name}, {other.task_cfg.get(key)!r} in {other.name}")
    problem = combinable([anchor.state for anchor in anchors])
    if problem:
        names = ", ".join(anchor.name for anchor in anchors)
        numbered = problem
        for number, anchor in enumerate(anchors, start=1):
            numbered = numbered.replace(f"model {number}", anchor.name)
        return f"different parameters ({names}): {numbered}"
    return None


# --------------------------------------------------------------------------- the sweep


@dataclass
class SweepSpec:
    """Everything a sweep needs (:func:`run_sweep`)."""

    checkpoints: List[Path]
    out: Path
    alphas: Optional[List[float]] = None
    alphas2: Optional[List[float]] = None
    scope: str = "all"
    split: str = "dev"
    languages: Optional[List[str]] = None
    data: Optional[Path] = None
    batch_size: int = 64
    cpu: bool = False
    threads: Optional[int] = None
    shard: Optional[Tuple[int, int]] = None
    progress: bool = True
    #: called after each evaluated point with (number done in this run, point); tests stop a sweep with it
    on_point: Optional[Callable[[int, Tuple[float, ...]], None]] = None

    @property
    def mode(self) -> str:
        return "2d" if len(self.checkpoints) == 3 else "1d"

    def folder(self) -> Path:
        if self.shard is None:
            return self.out
        return self.out / f"shard-{self.shard[0]}-of-{self.shard[1]}"


ANCHOR_NAMES = {"1d": ("CKPT_A", "CKPT_B"), "2d": ("CKPT_A", "CKPT_B", "--plane")}


def _roles(mode: str, anchors: Sequence[Anchor], languages: Sequence[str]) -> Dict[str, str]:
    """source: A's training languages; target: B's (1D) or C's (2D) that A lacks; other: the rest."""
    source = set(anchors[0].train_languages)
    target = set(anchors[2].train_languages if mode == "2d" else anchors[1].train_languages) - source
    return {lang: "source" if lang in source else "target" if lang in target else "other" for lang in languages}


def _default_languages(anchors: Sequence[Anchor]) -> List[str]:
    return list(dict.fromkeys(lang for anchor in anchors for lang in anchor.train_languages))


def _config(spec: SweepSpec, anchors: Sequence[Anchor], points: Sequence[Tuple[float, ...]], languages: List[str],
            data_dir: str, kind: Optional[str], metrics: Sequence[str]) -> Dict[str, Any]:
    mode = spec.mode
    return {
        "format_version": FORMAT_VERSION, "mode": mode, "scope": spec.scope, "split": spec.split,
        "task": anchors[0].task_name, "kind": kind, "metrics": list(metrics),
        "primary_metric": PRIMARY_METRIC.get(kind or "", list(metrics)[0]),
        "data": str(Path(data_dir).resolve()), "languages": languages, "roles": _roles(mode, anchors, languages),
        "checkpoints": {name: anchor.identity() for name, anchor in zip(("A", "B", "C"), anchors)},
        "train_languages": {name: anchor.train_languages for name, anchor in zip(("A", "B", "C"), anchors)},
        "seeds": {name: anchor.seed for name, anchor in zip(("A", "B", "C"), anchors)},
        "formula": ("theta(alpha) = alpha*theta_B + (1-alpha)*theta_A" if mode == "1d" else
                    "theta(a1,a2) = theta_B + a1*(theta_A-theta_B) + a2*(theta_C-theta_B)"),
        "grid": [list(point) for point in points], "reference": list(reference_point(mode)),
        "batch_size": spec.batch_size,
    }


def _comparable(config: Dict[str, Any]) -> Dict[str, Any]:
    return {key: value for key, value in config.items() if key not in ("shard", "points")}


def read_journal(path: Path) -> Dict[str, Dict[str, Any]]:
    """The evaluated points of a journal, by point key; a torn last line (a killed write) is cut off."""
    done: Dict[str, Dict[str, Any]] = {}
    if not path.is_file():
        return done
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        cut = raw.rfind(b"\n") + 1
        with open(path, "r+b") as handle:
            handle.truncate(cut)
        raw = raw[:cut]
    for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise click.ClickException(f"{path}:{number}: not a JSON line; remove the file to start again") from None
        done[point_key(record["point"])] = record
    return done


def append_journal(path: Path, record: Dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def run_sweep(spec: SweepSpec) -> Dict[str, Any]:
    """Evaluate every missing point of the sweep; write the outputs; return the summary."""
    import torch

    from ..analysis.interpolation import SCOPES, combine_into, paper_grid_1d, coarse_grid, weights_1d, weights_2d
    from ..user_dir.data.finetune_data import FinetuneDataError, available_languages
    from ..user_dir.tasks.finetune_base import CheckpointMismatchError, collect_predictions, load_finetuned_model
    from .fairseq_runner import quiet_loggers

    if spec.scope not in SCOPES:
        raise click.BadParameter(f"unknown scope {spec.scope!r}", param_hint="--scope")
    mode = spec.mode
    names = ANCHOR_NAMES[mode]
    anchors = [load_anchor(path, name, spec.data) for path, name in zip(spec.checkpoints, names)]
    problem = incompatibility(anchors, spec.scope)
    if problem:
        raise click.ClickException(f"cannot combine the checkpoints: {problem}")
    default = paper_grid_1d() if mode == "1d" else coarse_grid()
    alphas = spec.alphas or default
    points = grid_points(mode, alphas, spec.alphas2)
    mine = shard_points(points, spec.shard, mode)

    first = anchors[0]
    shallow = dict(first.checkpoint, model=dict(first.checkpoint["model"]))  # fairseq's upgrade edits the dict
    try:
        with quiet_loggers():
            model, cfg, task = load_finetuned_model(shallow, str(first.path))
    except (FinetuneDataError, CheckpointMismatchError) as error:
        raise click.ClickException(str(error)) from None
    split_file = "test" if spec.split == "test" else "dev"
    available = available_languages(task.meta, split_file)
    languages = list(spec.languages) if spec.languages else [
        lang for lang in _default_languages(anchors) if lang in available]
    unknown = [lang for lang in languages if lang not in available]
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)} has no {spec.split} split in {task.data_dir}",
                                 param_hint="--languages")
    if not languages:
        raise click.BadParameter(f"no language of the checkpoints has a {spec.split} split in {task.data_dir}",
                                 param_hint="--languages")
    config = _config(spec, anchors, points, languages, task.data_dir, task.meta.get("kind"), task.metric_names())

    folder = spec.folder()
    config_path, journal_path = folder / "sweep.json", folder / "points.jsonl"
    if config_path.is_file():
        saved = json.loads(config_path.read_text(encoding="utf-8"))
        if _comparable(saved) != _comparable(config):
            differing = sorted(k for k in set(_comparable(saved)) | set(_comparable(config))
                               if saved.get(k) != config.get(k))
            raise click.ClickException(f"{folder} holds another sweep (it differs in {', '.join(differing)}): "
                                       "choose another --out or remove it")
    config = dict(config, shard=list(spec.shard) if spec.shard else None, points=[list(p) for p in mine])
    done = read_journal(journal_path)
    missing = [point for point in mine if point_key(point) not in done]

    if missing:
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(config_path, config)
        targets = model.state_dict(keep_vars=True)
        tensor_names = [name for name, value in targets.items() if isinstance(value, torch.Tensor)]
        absent = [name for name in tensor_names if name not in first.state]
        if absent:
            raise click.ClickException(f"{first.path}: the model has tensor {absent[0]} that the checkpoint lacks")
        use_cuda = torch.cuda.is_available() and not spec.cpu
        if use_cuda:
            model = model.cuda()
            targets = model.state_dict(keep_vars=True)
        targets = {name: targets[name] for name in tensor_names}
        order = [anchors[0].state, anchors[1].state] if mode == "1d" else [
            anchors[1].state, anchors[0].state, anchors[2].state]
        if spec.split == "test":
            task.test_languages = languages
        else:
            task.valid_languages = languages
        criterion = task.build_criterion(cfg.criterion)
        try:
            with quiet_loggers():
                dataset = task.load_dataset("test" if spec.split == "test" else "valid")
        except FinetuneDataError as error:
            raise click.ClickException(str(error)) from None
        previous_threads = torch.get_num_threads()
        if spec.threads:
            torch.set_num_threads(spec.threads)
        try:
            for number, point in enumerate(missing, start=1):
                started = time.perf_counter()
                weights = weights_1d(point[0]) if mode == "1d" else weights_2d(point[0], point[1])
                combine_into(targets, order, weights, spec.scope)
                with quiet_loggers():
                    items = collect_predictions(task, model, criterion, dataset, spec.batch_size, use_cuda)
                scores = task.score_items(items)
                record = {"point": list(point), "scores": {lang: scores[lang] for lang in languages},
                          "seconds": round(time.perf_counter() - started, 3)}
                append_journal(journal_path, record)
                done[point_key(point)] = record
                if spec.progress:
                    click.echo(f"  [{len(done)}/{len(mine)}] {point_key(point)}: " + ", ".join(
                        f"{lang} {scores[lang][config['primary_metric']]:.2f}" for lang in languages), err=True)
                if spec.on_point is not None:
                    spec.on_point(number, point)
        finally:
            torch.set_num_threads(previous_threads)
    records = [done[point_key(point)] for point in mine]
    geometry = sweep_geometry(mode, anchors, spec.scope)
    return write_outputs(folder, config, records, geometry)


def sweep_geometry(mode: str, anchors: Sequence[Anchor], scope: str) -> Dict[str, Any]:
    """‖θ_B − θ_A‖ (1D); ‖δ_src‖, ‖δ_tgt‖, their ratio and angle (2D), in float64 over the scope's tensors."""
    from ..analysis.interpolation import delta_geometry, distance, unique_float_names

    names = unique_float_names(anchors[1].state, scope)
    if mode == "1d":
        return {"scope": scope, "distance_A_B": distance(anchors[0].state, anchors[1].state, names)}
    geometry = delta_geometry(anchors[1].state, anchors[0].state, anchors[2].state, names)
    return {"scope": scope, "norm_delta_src": geometry.norm_src, "norm_delta_tgt": geometry.norm_tgt,
            "norm_ratio": geometry.ratio, "cosine": geometry.cosine, "angle_degrees": geometry.angle_degrees}


# --------------------------------------------------------------------------- outputs


def tidy_rows(config: Dict[str, Any], records: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One row per (point, language, metric): the raw score and the score over the bilingual model's."""
    from ..analysis.confidence import normalised

    by_key = {point_key(record["point"]): record for record in records}
    reference = by_key.get(point_key(config["reference"]))
    if reference is None:
        raise click.ClickException("the bilingual model's point is missing from the sweep")
    rows = []
    axes = ("alpha",) if config["mode"] == "1d" else ("alpha1", "alpha2")
    for record in records:
        for lang in config["languages"]:
            for metric in config["metrics"]:
                score = float(record["scores"][lang][metric])
                base = float(reference["scores"][lang][metric])
                rows.append({**dict(zip(axes, record["point"])), "language": lang, "role": config["roles"][lang],
                             "metric": metric, "score": score, "normalised": normalised(score, base),
                             "mode": config["mode"], "scope": config["scope"], "split": config["split"]})
    return rows


def _json_number(value: float) -> Optional[float]:
    return value if isinstance(value, float) and math.isfinite(value) else (None if isinstance(value, float)
                                                                            else value)


def write_outputs(folder: Path, config: Dict[str, Any], records: Sequence[Dict[str, Any]],
                  geometry: Dict[str, Any]) -> Dict[str, Any]:
    """``scores.jsonl``, ``summary.json`` and ``summary.md`` of a complete (shard of a) sweep, atomically."""
    rows = tidy_rows(config, records)
    clean = [{key: _json_number(value) for key, value in row.items()} for row in rows]
    write_text_atomic(folder / "scores.jsonl", "".join(json.dumps(row, sort_keys=True) + "\n" for row in clean))
    summary = {"config": config, "geometry": {k: _json_number(v) for k, v in geometry.items()},
               "points": [{"point": record["point"], "scores": record["scores"]} for record in records],
               "rows": len(rows)}
    write_json_atomic(folder / "summary.json", summary)
    write_text_atomic(folder / "summary.md", summary_markdown(config, rows, geometry))
    return summary


def summary_markdown(config: Dict[str, Any], rows: Sequence[Dict[str, Any]], geometry: Dict[str, Any]) -> str:
    metric = config["primary_metric"]
    languages = config["languages"]
    lines = [f"Interpolation ({config['mode']}, scope {config['scope']}, {config['split']} {metric}; "
             f"{config['formula']}); in brackets: over the bilingual model's score", ""]
    axes = ("alpha",) if config["mode"] == "1d" else ("alpha1", "alpha2")
    header = list(axes) + [f"{lang} ({config['roles'][lang]})" for lang in languages]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table: Dict[Tuple[float, ...], Dict[str, Dict[str, Any]]] = {}
    for row in rows:
        if row["metric"] == metric:
            table.setdefault(tuple(row[a] for a in axes), {})[row["language"]] = row
    for point in sorted(table):
        cells = [f"{value:g}" for value in point]
        for lang in languages:
            row = table[point][lang]
            norm = row["normalised"]
            cells.append(f"{row['score']:.2f} ({norm:.3f})" if norm is not None and math.isfinite(norm)
                         else f"{row['score']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(", ".join(f"{key} {value:.6g}" if isinstance(value, float) else f"{key} {value}"
                           for key, value in sorted(geometry.items())))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- shards


def merge_shards(out: Path) -> Dict[str, Any]:
    """Join ``OUT/shard-i-of-n`` (every shard complete, the same sweep) into ``OUT``'s outputs."""
    shards = sorted(out.glob("shard-*-of-*"))
    if not shards:
        raise click.BadParameter(f"{out} holds no shard-I-of-N folder", param_hint="OUT")
    configs, journals = [], {}
    counts = set()
    for folder in shards:
        path = folder / "sweep.json"
        if not (folder / "summary.json").is_file():
            raise click.ClickException(f"{folder} is not finished (no summary.json): run that shard again")
        config = json.loads(path.read_text(encoding="utf-8"))
        counts.add(int(config["shard"][1]))
        configs.append(config)
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        for record in read_journal(folder / "points.jsonl").values():
            journals.setdefault(point_key(record["point"]), record)
        geometry = summary["geometry"]
    if len(counts) != 1:
        raise click.ClickException(f"{out}: shards of different splits ({', '.join(map(str, sorted(counts)))})")
    count = counts.pop()
    indices = sorted(int(config["shard"][0]) for config in configs)
    if indices != list(range(count)):
        absent = sorted(set(range(count)) - set(indices))
        raise click.ClickException(f"{out}: shard(s) {', '.join(f'{i}/{count}' for i in absent)} missing")
    first = _comparable(configs[0])
    for folder, config in zip(shards, configs):
        if _comparable(config) != first:
            raise click.ClickException(f"{folder} is a shard of another sweep than {shards[0]}")
    points = [tuple(point) for point in configs[0]["grid"]]
    lacking = [point_key(point) for point in points if point_key(point) not in journals]
    if lacking:
        raise click.ClickException(f"{out}: point(s) {'; '.join(lacking)} missing from the shards")
    config = dict(configs[0], shard=None, points=[list(point) for point in points])
    records = [journals[point_key(point)] for point in points]
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "sweep.json", config)
    write_text_atomic(out / "points.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    return write_outputs(out, config, records, geometry)

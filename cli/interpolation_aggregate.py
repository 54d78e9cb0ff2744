"""Aggregating interpolation sweeps over seeds, language pairs and tasks (Wu et al. 2022, Fig. 2-5).

Every finished sweep (one seed of one language pair and task) is normalised by *its own*
bilingual model (the matching seed's θ_{src,tgt}): r = score(point) / score(B).  Then

* per experiment (task, source and target languages, mode, scope, split) and point, language
  role and metric: over the seeds, the mean of r, its sample variance (Fig. 5's normalised
  variance) and the 95% Student's t interval (:func:`xlint.analysis.confidence.t_interval`);
* pooled (Fig. 2): per mode, scope, split, point and role, over every experiment's seeds,
  the primary metric of each task (POS and XNLI accuracy, NER and QA F1): the mean of r with
  its t interval, and the mean over experiments of their normalised variances.

Geometry (Fig. 4): one (‖δ_src‖/‖δ_tgt‖, angle) per 2D sweep.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import click

from ..preprocess.textio import write_json_atomic, write_text_atomic


def _finite(value: float) -> Any:
    return value if math.isfinite(value) else None


def read_sweep(folder: Path) -> Dict[str, Any]:
    path = folder / "summary.json"
    if not path.is_file():
        raise click.BadParameter(f"{folder} is not a finished sweep (no summary.json)", param_hint="SWEEPS")
    summary = json.loads(path.read_text(encoding="utf-8"))
    if summary["config"].get("shard"):
        raise click.BadParameter(f"{folder} is one shard: merge the shards first (xlint interpolate merge)",
                                 param_hint="SWEEPS")
    summary["folder"] = str(folder)
    return summary


def experiment_key(config: Dict[str, Any]) -> Tuple[str, ...]:
    roles = config["roles"]
    source = ",".join(lang for lang in config["languages"] if roles[lang] == "source")
    target = ",".join(lang for lang in config["languages"] if roles[lang] == "target")
    return (config["task"], str(config.get("kind")), source, target, config["mode"], config["scope"],
            config["split"])


def _stats(values: Sequence[float], level: float) -> Dict[str, Any]:
    from ..analysis.confidence import t_interval

    clean = [v for v in values if math.isfinite(v)]
    if not clean:
        return {"n": 0, "mean": None, "variance": None, "ci_low": None, "ci_high": None}
    interval = t_interval(clean, level)
    return {"n": interval.n, "mean": interval.mean, "variance": _finite(interval.variance),
            "ci_low": _finite(interval.low), "ci_high": _finite(interval.high)}


def aggregate_sweeps(folders: Sequence[Path], level: float = 0.95) -> Dict[str, Any]:
    from ..analysis.confidence import normalised

    sweeps = [read_sweep(folder) for folder in folders]
    experiments: Dict[Tuple[str, ...], List[Dict[str, Any]]] = {}
    for sweep in sweeps:
        experiments.setdefault(experiment_key(sweep["config"]), []).append(sweep)
    per_experiment = []
    pooled_values: Dict[Tuple[Any, ...], List[float]] = {}
    pooled_variances: Dict[Tuple[Any, ...], List[float]] = {}
    for key, members in experiments.items():
        configs = [member["config"] for member in members]
        grids = {json.dumps(config["grid"]) for config in configs}
        if len(grids) != 1:
            raise click.ClickException(f"the sweeps of {'/'.join(key)} have different grids: "
                                       + ", ".join(member["folder"] for member in members))
        config = configs[0]
        seeds = [member["config"]["seeds"] for member in members]
        reference = json.dumps(config["reference"])
        values: Dict[Tuple[str, Tuple[float, ...], str, str], List[float]] = {}
        raw: Dict[Tuple[str, Tuple[float, ...], str, str], List[float]] = {}
        for member in members:
            points = {json.dumps(p["point"]): p["scores"] for p in member["points"]}
            base = points[reference]
            for point_text, scores in points.items():
                point = tuple(json.loads(point_text))
                for lang, metrics in scores.items():
                    role = member["config"]["roles"][lang]
                    for metric, score in metrics.items():
                        slot = (lang, point, metric, role)
                        values.setdefault(slot, []).append(normalised(float(score), float(base[lang][metric])))
                        raw.setdefault(slot, []).append(float(score))
        rows = []
        for (lang, point, metric, role), normal in sorted(values.items()):
            stats = _stats(normal, level)
            rows.append({"language": lang, "role": role, "point": list(point), "metric": metric,
                         "normalised": stats, "score": _stats(raw[(lang, point, metric, role)], level)})
            if metric == config["primary_metric"]:
                slot = (config["mode"], config["scope"], config["split"], point, role)
                pooled_values.setdefault(slot, []).extend(v for v in normal if math.isfinite(v))
                if stats["variance"] is not None:
                    pooled_variances.setdefault(slot, []).append(stats["variance"])
        geometry = [member["geometry"] for member in members]
        per_experiment.append({
            "task": key[0], "kind": key[1], "source": key[2], "target": key[3], "mode": key[4], "scope": key[5],
            "split": key[6], "primary_metric": config["primary_metric"], "seeds": seeds,
            "sweeps": [member["folder"] for member in members], "rows": rows, "geometry": geometry})
    pooled = []
    for (mode, scope, split, point, role), normal in sorted(pooled_values.items()):
        variances = pooled_variances.get((mode, scope, split, point, role), [])
        pooled.append({"mode": mode, "scope": scope, "split": split, "point": list(point), "role": role,
                       "normalised": _stats(normal, level),
                       "normalised_variance": sum(variances) / len(variances) if variances else None})
    geometry_points = [dict(g, experiment=f"{e['task']} {e['source']}->{e['target']}")
                       for e in per_experiment for g in e["geometry"] if "angle_degrees" in g]
    return {"level": level, "experiments": per_experiment, "pooled": pooled, "geometry": geometry_points,
            "sweeps": [sweep["folder"] for sweep in sweeps]}


def aggregate_paths(out: Path) -> Tuple[Path, Path]:
    prefix = out.with_suffix("") if out.suffix in (".json", ".md") else out
    return prefix.with_name(prefix.name + ".json"), prefix.with_name(prefix.name + ".md")


def aggregate_markdown(result: Dict[str, Any]) -> str:
    level = int(round(result["level"] * 100))
    lines = [f"Normalised score (over the matching bilingual model), mean [{level}% t-interval] and "
             "normalised variance, pooled over seeds, pairs and tasks (primary metric of each task)", ""]
    lines += ["| mode | scope | point | role | n | mean | CI | variance |", "|---|---|---|---|---|---|---|---|"]
    for row in result["pooled"]:
        stats = row["normalised"]
        ci = (f"[{stats['ci_low']:.3f}, {stats['ci_high']:.3f}]" if stats["ci_low"] is not None else "–")
        variance = f"{row['normalised_variance']:.2e}" if row["normalised_variance"] is not None else "–"
        mean = f"{stats['mean']:.3f}" if stats["mean"] is not None else "–"
        lines.append(f"| {row['mode']} | {row['scope']} | {', '.join(f'{v:g}' for v in row['point'])} | "
                     f"{row['role']} | {stats['n']} | {mean} | {ci} | {variance} |")
    if result["geometry"]:
        lines += ["", "| experiment | norm ratio | angle (deg) |", "|---|---|---|"]
        for g in result["geometry"]:
            ratio = f"{g['norm_ratio']:.3f}" if g.get("norm_ratio") is not None else "–"
            angle = f"{g['angle_degrees']:.1f}" if g.get("angle_degrees") is not None else "–"
            lines.append(f"| {g['experiment']} | {ratio} | {angle} |")
    return "\n".join(lines) + "\n"


def write_aggregate(result: Dict[str, Any], out: Path) -> List[Path]:
    json_path, md_path = aggregate_paths(out)
    write_json_atomic(json_path, result)
    write_text_atomic(md_path, aggregate_markdown(result))
    return [json_path, md_path]

"""Reports of ``xlint finetune`` and ``xlint evaluate``: seed aggregation (mean ± sample std) and
Markdown tables."""
from __future__ import annotations

import statistics
from typing import Any, Dict, Optional, Sequence


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

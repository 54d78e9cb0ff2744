"""Medians, quartiles and paired ratios of the measured log intervals."""
from __future__ import annotations

import statistics
from typing import Dict, List, Mapping, Optional, Sequence

#: one parsed ``train_inner`` line (``num_updates``, ``wps``, ``cpu_wps``, ...)
Interval = Dict[str, float]
#: one training run: its intervals and bookkeeping (see :func:`throughput.runs.parse_training_log`)
Run = Dict[str, object]
Spread = Dict[str, Optional[float]]


def spread(values: Sequence[float]) -> Spread:
    """Median, quartiles (q1, q3: the interquartile range) and min..max of ``values``, with their count."""
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "q1": None, "q3": None, "min": None, "max": None, "n": 0}
    q1 = q3 = values[0]
    if len(values) > 1:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {"median": statistics.median(values), "q1": q1, "q3": q3, "min": min(values), "max": max(values),
            "n": len(values)}


def measured(run: Run, warmup_updates: int) -> List[Interval]:
    """The run's log intervals that end after the warm-up."""
    return [iv for iv in run["intervals"] if iv["num_updates"] > warmup_updates]


def steady(run: Run, warmup_updates: int, key: str = "wps") -> Optional[float]:
    """Median of ``key`` over the log intervals after the warm-up."""
    values = [iv[key] for iv in measured(run, warmup_updates) if key in iv]
    return statistics.median(values) if values else None


def paired_ratios(runs: Sequence[Run], base_runs: Sequence[Run], warmup_updates: int, key: str) -> List[List[float]]:
    """Per repeat, ``key`` of each measured interval over the base's interval ending at the same update.

    With turns per interval (:mod:`throughput.runs`) the two intervals of a pair ran
    one right after the other, so a change of the machine's load hits both.
    """
    by_repeat = []
    for run, base in zip(runs, base_runs):
        base_values = {iv["num_updates"]: iv.get(key) for iv in measured(base, warmup_updates)}
        by_repeat.append([iv[key] / base_values[iv["num_updates"]] for iv in measured(run, warmup_updates)
                          if iv.get(key) and base_values.get(iv["num_updates"])])
    return by_repeat


def ratio_entries(runs: Sequence[Run], base_runs: Sequence[Run], warmup_updates: int,
                  key: str, name: str) -> Dict[str, Spread]:
    """``name``: spread of all paired interval ratios; ``name_by_repeat``: of each repeat's median."""
    by_repeat = paired_ratios(runs, base_runs, warmup_updates, key)
    return {name: spread([r for ratios in by_repeat for r in ratios]),
            f"{name}_by_repeat": spread([statistics.median(ratios) for ratios in by_repeat if ratios])}


def summarize(runs: Mapping[str, Sequence[Run]], warmup_updates: int, goals: Mapping[str, float],
              goal_key: str) -> Dict[str, Dict[str, object]]:
    """Per variant: throughput spreads over runs, paired ratios against ``roberta``, the goal verdict.

    ``goal_key`` is ``cpu_ratio`` (tokens per process CPU-second, on CPU) or ``ratio``
    (wall-clock ``wps``); the goal is met when that ratio's median reaches it.
    """
    base = runs["roberta"]
    summary: Dict[str, Dict[str, object]] = {}
    for variant, variant_runs in runs.items():
        wps = [r["steady_wps"] for r in variant_runs]
        entry: Dict[str, object] = {
            "wps": spread(wps),
            "wpb": statistics.median(iv["wpb"] for r in variant_runs for iv in measured(r, warmup_updates)),
            "cpu_wps": spread([r["steady_cpu_wps"] for r in variant_runs if r["steady_cpu_wps"]]),
            "cpu_over_wall": spread([r["busy"] for r in variant_runs]),
            "interval_wps": spread([iv["wps"] for r in variant_runs for iv in measured(r, warmup_updates)]),
        }
        if variant != "roberta":
            entry.update(ratio_entries(variant_runs, base, warmup_updates, "wps", "ratio"))
            entry["ratio_of_medians"] = statistics.median(wps) / statistics.median(r["steady_wps"] for r in base)
            if all(r["steady_cpu_wps"] for r in [*variant_runs, *base]):
                entry.update(ratio_entries(variant_runs, base, warmup_updates, "cpu_wps", "cpu_ratio"))
            goal = goals.get(variant)
            if goal is not None and goal_key in entry:
                entry.update(goal=goal, goal_basis=goal_key, meets_goal=entry[goal_key]["median"] >= goal)
        entry["params_logged"] = sorted({r["params_logged"] for r in variant_runs if r["params_logged"]})
        summary[variant] = entry
    return summary

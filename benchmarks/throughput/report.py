"""The Markdown report (stdout) and the JSON result (``--out``)."""
from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

from .stats import Run, Spread

Summary = Dict[str, Dict[str, object]]
Params = Dict[str, Dict[str, object]]
PARAMETER_ROWS = (("total", "total"), ("parameter tensors", "tensors"), ("language-specific", "language_specific"),
                  ("vocabulary rows", "vocab"), ("position rows", "positions"), ("LM head tied", "lm_head_tied"))


def fmt(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def version(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception:  # pragma: no cover - informative only
        return "?"


def environment() -> Dict[str, object]:
    return {"python": platform.python_version(), "torch": version("torch"), "fairseq": version("fairseq"),
            "cpus": os.cpu_count(), "machine": platform.machine()}


def spread_cell(s: Spread, digits: int) -> str:
    """``median`` | ``q1..q3`` | ``min..max``: three table cells."""
    if not s["n"]:
        return "- | - | -"
    return (f"{fmt(s['median'], digits)} | {fmt(s['q1'], digits)}..{fmt(s['q3'], digits)} | "
            f"{fmt(s['min'], digits)}..{fmt(s['max'], digits)}")


def verdict(entry: Mapping[str, object]) -> str:
    """The goal and PASS/FAIL: two table cells."""
    goal = entry.get("goal")
    if goal is None:
        return "- | "
    return f">= {goal:.2f} | {'PASS' if entry['meets_goal'] else 'FAIL'}"


def header(args: argparse.Namespace) -> List[str]:
    shape = (f"{args.layers} layers, d={args.dim}, ffn={args.ffn_dim}, {args.heads} heads, "
             f"{args.tokens_per_sample} tokens/sample, --max-tokens {args.max_tokens}, "
             f"break mode {args.sample_break_mode}, dropout {args.dropout}")
    schedule = ("the runs of a repeat take turns, one interval each" if args.interleave == "interval"
                else "one run after another")
    return [f"## xlm_adapter vs roberta pretraining throughput ({args.device})", "",
            f"Shape: {shape}.  {args.updates} updates per run, intervals of {args.log_interval} updates, "
            f"first {args.warmup_updates} updates dropped; {args.repeats} repeats ({schedule}).  "
            f"torch {version('torch')}, fairseq {version('fairseq')}, {os.cpu_count()} CPUs"
            + (f", {args.threads} threads" if args.threads else "") + ".  Ratios: variant/roberta of the "
            "intervals that end at the same update of the same repeat (median, interquartile range, min..max); "
            "'by repeat': the spread of the repeats' medians.", ""]


def ratio_table(args: argparse.Namespace, summary: Summary, params: Params, key: str, title: str) -> List[str]:
    """One row per variant: throughput over runs, the paired interval ratio, the repeats' medians, the goal."""
    value_key, ratio_key = ("wps", "ratio") if key == "wps" else ("cpu_wps", "cpu_ratio")
    lines = [title, "",
             f"| variant | params | tokens/batch | {value_key} median | IQR | min..max | ratio median | IQR | "
             "min..max | by repeat min..max | goal | |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for variant in args.variant_list:
        entry = summary[variant]
        count = params.get(variant, {}).get("total") or (entry["params_logged"] or [0])[0]
        if variant == "roberta":
            ratio_cells = "1.000 | - | - | - | - | "
        elif ratio_key in entry:
            by_repeat = entry[f"{ratio_key}_by_repeat"]
            ratio_cells = (f"{spread_cell(entry[ratio_key], 3)} | {by_repeat['min']:.3f}..{by_repeat['max']:.3f} | "
                           + (verdict(entry) if entry.get("goal_basis") == ratio_key else "- | "))
        else:
            ratio_cells = "- | - | - | - | - | "
        lines.append(f"| {variant} | {fmt(count)} | {fmt(entry['wpb'])} | {spread_cell(entry[value_key], 0)} | "
                     f"{ratio_cells} |")
    return lines


def parameter_table(variants: Sequence[str], params: Params) -> List[str]:
    groups = sorted({g for rep in params.values() for g in rep["groups"]})
    lines = ["", "Parameters (built in-process from the same arguments):", "",
             "| group | " + " | ".join(variants) + " |", "|---|" + "---:|" * len(variants)]
    for group in groups:
        lines.append(f"| {group} | " + " | ".join(fmt(params[v]["groups"].get(group, 0)) for v in variants) + " |")
    for label, key in PARAMETER_ROWS:
        lines.append(f"| {label} | " + " | ".join(
            str(params[v][key]) if isinstance(params[v][key], bool) else fmt(params[v][key]) for v in variants) + " |")
    if "joint" in params and params["joint"]["total"] != params["roberta"]["total"]:
        lines += ["", f"WARNING: joint has {params['joint']['total']:,} parameters, "
                      f"roberta {params['roberta']['total']:,}: shapes differ."]
    return lines


def markdown(args: argparse.Namespace, runs: Mapping[str, Sequence[Run]], summary: Summary, params: Params) -> str:
    lines = header(args) + ratio_table(args, summary, params, "wps", "Wall-clock training throughput (fairseq's wps):")
    if args.device == "cpu" and all(summary[v]["cpu_wps"]["n"] for v in args.variant_list):
        lines += [""] + ratio_table(
            args, summary, params, "cpu_wps",
            "Tokens per CPU-second of the training process (with one thread: wps on an idle core; it resists "
            "other load on the machine):")
        cpu_over_wall = " | ".join(f"{v} {summary[v]['cpu_over_wall']['median']:.2f}" for v in args.variant_list)
        lines += ["", f"CPU/wall, median per variant (below 1: the run waited for a core): {cpu_over_wall}."]
        busy = statistics.median(r["busy"] for v in args.variant_list for r in runs[v])
        if args.threads == 1 and busy < 0.9:
            lines += ["", f"NOTE: the training processes had a core only {busy:.0%} of the time (other load on "
                          "the machine); wall-clock wps ratios are noisy -- trust the CPU-second table."]
    if params:
        lines += parameter_table(args.variant_list, params)
    return "\n".join(lines)


def result_json(args: argparse.Namespace, commands: Mapping[str, List[str]], schedules: List[object],
                params: Params, runs: Mapping[str, Sequence[Run]], summary: Summary, prep_s: float,
                total_s: float, report: str) -> Dict[str, object]:
    return {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": environment(),
        "commands": {v: shlex.join(c) for v, c in commands.items()},
        "order": schedules,
        "params": params,
        "runs": runs,
        "summary": summary,
        "prep_s": round(prep_s, 1),
        "total_s": round(total_s, 1),
        "markdown": report,
    }

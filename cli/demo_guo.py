"""The demo's Guo et al. (2023) part: DF against FSF (fine-tuning slow and fast) on the Joint model.

Both methods fine-tune the demo's Joint (grc+tr+en) model on English POS (the Wang part's
data and budget: ``--finetune-epochs``, ``--finetune-examples``, lr 5e-4, batch 32), zero-shot
to Turkish and Greek (``xlint finetune --setting zero-shot``: validated on every language,
selected on English dev), with training curves (``--curve-interval``, ``--curve-examples``:
``RUN_DIR/curves.jsonl``, a point every ``CURVE_INTERVAL`` updates with the dev accuracy of a
fixed subset of each language and the gap P_src − mean P_tgt).

FSF uses a loss window of ``FSF_WINDOW`` updates instead of the paper's 100: the demo's runs
make about 126 updates, and the phase detector needs 2w losses before it can leave the fast
phase P1.

The table: per method, the selected checkpoint's English dev accuracy, its test accuracy on
every language, the test gap (en − mean of tr, grc) and the curve's gap at its last point,
below the majority-tag baseline of each test set.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .commands_demo import SOURCE_LANGUAGE, Baseline, FinetuneTask

CURVES_FILE = "curves.jsonl"

#: the zero-shot targets, in the table's order
GUO_TARGETS = ("tr", "grc")
CURVE_INTERVAL = 10
CURVE_EXAMPLES = 100
FSF_WINDOW = 20
#: (method, its MethodOptions fields, the table row)
GUO_METHODS = (("df", (), "DF"), ("fsf", (("window", FSF_WINDOW),), f"FSF (w = {FSF_WINDOW})"))


def curve_args(interval: int = CURVE_INTERVAL, examples: int = CURVE_EXAMPLES) -> tuple:
    """The fairseq-train task options that make a fine-tuning run write ``curves.jsonl``."""
    return ("--curve-interval", str(interval), "--curve-examples", str(examples))


def guo_task(method: str, options: tuple = ()) -> FinetuneTask:
    """English POS fine-tuning with ``method``, validated on the targets too (zero-shot), one seed."""
    return FinetuneTask(SOURCE_LANGUAGE, (SOURCE_LANGUAGE, *GUO_TARGETS), several_seeds=False,
                        setting="zero-shot", targets=GUO_TARGETS, method=method, method_options=options,
                        fairseq_args=curve_args(), label=f"guo-{method}")


def guo_tasks() -> List[FinetuneTask]:
    """DF and FSF, in the table's order."""
    return [guo_task(method, options) for method, options, _ in GUO_METHODS]


def method_row(method: str) -> str:
    return next(row for name, _, row in GUO_METHODS if name == method)


# --------------------------------------------------------------------------- curves


def curves_path(result: Mapping[str, Any]) -> Path:
    """``RUN_DIR/curves.jsonl`` of a fine-tuning job's result."""
    return Path(result["run_dir"]) / CURVES_FILE


def read_curves(result: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """The curve points of a fine-tuning job's run (``plots_guo.load_curves``), ``[]`` when it wrote none."""
    from .plots_guo import load_curves

    path = curves_path(result)
    return load_curves(path) if path.is_file() else []


def draw_guo_figures(results: Mapping[str, Mapping[str, Any]], figures: Path) -> List[Path]:
    """``guo2023_gap`` (the gap and the loss over updates, one line per method) and, for FSF,
    ``guo2023_fsf_phases`` (its phase, multipliers and loss from train.log); only from runs with curves."""
    from .plots_guo import draw_gap_curves, draw_phases

    runs = {method_row(method): [curves_path(result)] for method, result in results.items()
            if curves_path(result).is_file()}
    if not runs:
        return []
    paths = draw_gap_curves(runs, figures / "guo2023_gap",
                            title=f"Joint model, POS {SOURCE_LANGUAGE} -> {', '.join(GUO_TARGETS)} (zero-shot)")
    if "fsf" in results:
        paths += draw_phases(Path(results["fsf"]["run_dir"]) / "train.log", figures / "guo2023_fsf_phases")
    return paths


# --------------------------------------------------------------------------- the table


def gap_on_test(test: Mapping[str, Mapping[str, float]]) -> float:
    """Guo et al.'s gap on test: P_src − mean P_tgt (accuracy, points)."""
    return test[SOURCE_LANGUAGE]["acc"] - statistics.fmean(test[lang]["acc"] for lang in GUO_TARGETS)


def _cell(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.1f}"


def guo_table(results: Mapping[str, Mapping[str, Any]], curves: Mapping[str, Sequence[Mapping[str, Any]]],
              baselines: Mapping[str, Baseline]) -> str:
    """Markdown: one row per method (``results``: method -> fine-tuning job result), the majority tags first.

    Columns: en dev (the selected checkpoint's), en / tr / grc test accuracy, the test gap, and the
    gap of the curve's last point (dev subsets of ``CURVE_EXAMPLES`` sentences; – without curves).
    """
    languages = (SOURCE_LANGUAGE, *GUO_TARGETS)
    header = ["method", f"{SOURCE_LANGUAGE} dev", *(f"{lang} test" for lang in languages), "gap (test)",
              "gap at the end (curve)"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    majority = [f"{baselines[lang].accuracy:.1f} ({baselines[lang].tag})" for lang in languages]
    majority_gap = baselines[SOURCE_LANGUAGE].accuracy - statistics.fmean(baselines[lang].accuracy
                                                                           for lang in GUO_TARGETS)
    lines.append("| *majority tag of the test set* | – | " + " | ".join(majority) + f" | {majority_gap:.1f} | – |")
    for method, result in results.items():
        test = result["test"]
        last = curves.get(method) or []
        end_gap = last[-1].get("gap") if last else None
        cells = [method_row(method), _cell(result.get("dev_acc")), *(_cell(test[lang]["acc"]) for lang in languages),
                 _cell(gap_on_test(test)), _cell(end_gap)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def curve_summary(curves: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """One line per method: how many curve points, and the gap at the first and the last."""
    lines = []
    for method, points in curves.items():
        if not points:
            lines.append(f"{method_row(method)}: no training curve")
            continue
        first, last = points[0], points[-1]
        lines.append(f"{method_row(method)}: {len(points)} curve points (every {CURVE_INTERVAL} updates, "
                     f"{CURVE_EXAMPLES} dev sentences per language); gap {_cell(first.get('gap'))} at update "
                     f"{first['update']}, {_cell(last.get('gap'))} at update {last['update']}")
    return "\n".join(lines)

"""The tables, figures and closing lines of a finished ``xlint demo`` (every part it ran).

:func:`build_report` turns the job outcomes into the Markdown report (``results.md``) and the
JSON results (``results.json``); :func:`draw_figures` writes every figure the parts produce
into ``WORKDIR/figures/`` (PNG + PDF); :func:`closing_lines` says where all of it is.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from ..preprocess.demo_data import DemoData
from .commands_demo import (
    COLUMNS,
    DEMO_LANGUAGES,
    SOURCE_LANGUAGE,
    collect_scores,
    column_language,
    downstream_table,
    finetuning_job_name,
    majority_baselines,
    perplexity_table,
    projection_line,
    source_majority_baselines,
    zero_shot_verdict,
)
from .demo_analyses import compare_l0, draw_grad_sim_figures, grad_sim_table, l0_table
from .demo_guo import GUO_TARGETS, curve_summary, draw_guo_figures, guo_table, read_curves
from .demo_jobs import JobOutcome
from .demo_plan import DemoPlan
from .demo_wu import alpha_table, draw_wu_figure, geometry_line

FIGURES_DIR = "figures"


def guo_results(plan: DemoPlan, outcomes: Mapping[str, JobOutcome]) -> Dict[str, Dict[str, Any]]:
    """Method -> the result of its fine-tuning job."""
    return {finetune.task.method: outcomes[finetuning_job_name(finetune)].result for finetune in plan.guo}


def draw_figures(plan: DemoPlan, outcomes: Mapping[str, JobOutcome], workdir: Path) -> Tuple[List[Path],
                                                                                             Dict[str, Any]]:
    """Every figure of the parts that ran (PNG + PDF under ``workdir/figures``) and the L0 comparison."""
    for name in ("matplotlib", "PIL"):  # an in-process fairseq import may have put the root logger at DEBUG
        logging.getLogger(name).setLevel(logging.WARNING)
    figures = workdir / FIGURES_DIR
    figures.mkdir(parents=True, exist_ok=True)
    paths: List[Path] = []
    extra: Dict[str, Any] = {}
    if "wang2020" in plan.papers:
        paths += draw_grad_sim_figures(plan.joint, figures)
        if plan.l0:
            extra["l0"] = compare_l0(plan.l0, workdir, figures)
            paths += [Path(path) for path in extra["l0"]["figures"]]
    if plan.guo:
        paths += draw_guo_figures(guo_results(plan, outcomes), figures)
    if plan.wu:
        paths += draw_wu_figure(plan.wu.out, figures)
    return paths, extra


def build_report(data: DemoData, plan: DemoPlan, outcomes: Mapping[str, JobOutcome],
                 extra: Mapping[str, Any]) -> Tuple[str, Dict[str, Any]]:
    """The Markdown report and the JSON results of a finished demo (``extra``: :func:`draw_figures`'s)."""
    pretraining = {name: outcomes[f"pretrain:{name}"].result for name in plan.pretraining}
    parts = ["Validation perplexity per language (lower is better; shared vocabulary):\n",
             perplexity_table(pretraining, DEMO_LANGUAGES)]
    results: Dict[str, Any] = {"papers": list(plan.papers), "pretraining": pretraining,
                               "job_seconds": {name: round(o.seconds, 1) for name, o in outcomes.items()}}
    tested = sorted({column_language(column) for column in COLUMNS})
    baselines = majority_baselines(data.pos, tested) if plan.pos else {}
    if plan.wang:
        parts += wang_section(data, plan, outcomes, baselines, tested, results)
    if "wang2020" in plan.papers:
        parts += analyses_section(plan, extra, results)
    if plan.guo:
        methods = guo_results(plan, outcomes)
        curves = {method: read_curves(result) for method, result in methods.items()}
        parts += [f"\nGuo et al. 2023: DF and FSF, Joint model fine-tuned on {SOURCE_LANGUAGE} POS, zero-shot to "
                  f"{', '.join(GUO_TARGETS)} (accuracy %, one seed; gap = {SOURCE_LANGUAGE} − mean of "
                  f"{', '.join(GUO_TARGETS)}):\n", guo_table(methods, curves, baselines), "", curve_summary(curves)]
        results["guo2023"] = {"runs": methods, "curves": curves}
    if plan.wu:
        sweep = outcomes["wu:interpolation"].result
        parts += ["\nWu et al. 2022: θ(α) = α θ_{en,tr} + (1 − α) θ_en, dev accuracy % (in brackets: over "
                  "θ_{en,tr}'s; one seed):\n", alpha_table(sweep), geometry_line(sweep)]
        results["wu2022"] = sweep
    return "\n".join(part for part in parts if part is not None), results


def wang_section(data: DemoData, plan: DemoPlan, outcomes: Mapping[str, JobOutcome], baselines, tested,
                 results: Dict[str, Any]) -> List[str]:
    """The POS transfer table (mean ± std over the English seeds) beside both majority baselines."""
    scores = collect_scores(plan.wang, outcomes)
    source_baselines = source_majority_baselines(data.pos, SOURCE_LANGUAGE, tested)
    manifest = json.loads(data.manifest_path.read_text(encoding="utf-8"))
    seeds = max(len(values) for row in scores.values() for values in row.values())
    results["downstream"] = scores
    results["baselines"] = {"test_set_majority": {k: vars(v) for k, v in baselines.items()},
                            "source_train_majority": {k: vars(v) for k, v in source_baselines.items()}}
    results["projection"] = manifest["projection"]
    return [f"\nPOS test accuracy (%), fine-tuned on {SOURCE_LANGUAGE} (its columns: mean ± std over "
            f"{seeds} seeds) or on the language itself (within, one seed); baselines from each test set:\n",
            downstream_table(scores, baselines, source_baselines), "", zero_shot_verdict(scores, baselines),
            projection_line(manifest)]


def analyses_section(plan: DemoPlan, extra: Mapping[str, Any], results: Dict[str, Any]) -> List[str]:
    """Gradient similarity of the Joint run (total cosine per probe) and the L0 masks' cosines."""
    parts = []
    grad_sim = grad_sim_table(plan.joint)
    if grad_sim:
        parts += ["\nWang et al. 2020, Fig. 3: cosine of the shared parameters' gradients during the Joint "
                  "pretraining (pairs of languages; x-x: two probes of one language):\n", grad_sim]
    if "l0" in extra:
        comparison = extra["l0"]["comparison"]
        updates = sorted({run["num_updates"] for run in comparison["runs"]})
        parts += [f"\nWang et al. 2020, Fig. 4: L0 masks over the frozen Joint model ({comparison['num_gates']} "
                  f"row gates, {'/'.join(map(str, updates))} updates):\n", l0_table(comparison)]
        results["l0"] = comparison
    return parts


def closing_lines(workdir: Path, figures: Sequence[Path], seconds: float) -> str:
    """Where the tables, the figures and the logs are (the demo's last lines)."""
    pngs = [path for path in figures if path.suffix == ".png"]
    lines = [f"{seconds:.0f}s; tables: {workdir / 'results.md'} (numbers: {workdir / 'results.json'})"]
    if pngs:
        lines.append(f"figures (PNG + PDF) in {workdir / FIGURES_DIR}: " + ", ".join(path.stem for path in pngs))
    lines.append(f"logs: {workdir / 'runs'}/*/train.log, {workdir / 'downstream'}/*/job.log")
    return "\n".join(lines)

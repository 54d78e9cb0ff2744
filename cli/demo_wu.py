"""The demo's Wu et al. (2022) part: the 1D interpolation between θ_en and θ_{en,tr}.

* θ_en is the Wang part's English POS fine-tuning of the Joint model, seed 1 (the same job:
  it is never trained twice);
* θ_{en,tr} fine-tunes the same model, with the same seed (hence the same task-head
  initialisation), budget and learning rate, on English and Turkish mixed
  (``xlint finetune --setting bilingual``: ``--finetune-examples`` sentences of each, model
  selection on the mean of their dev accuracies);
* ``xlint interpolate θ_en θ_{en,tr} --alphas -0.5:1.5:0.25 --languages en,tr`` scores
  θ(α) = α θ_{en,tr} + (1 − α) θ_en on the whole en and tr dev sets (one subprocess, one
  thread; its folder resumes point by point).

Outputs: a table of the raw dev accuracy per α (and over the bilingual model's, α = 1) and
Wu et al.'s Fig. 2 (``cli/plots_interpolation.py``'s ``draw_1d``, one seed: no interval).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

import click

from .commands_demo import SOURCE_LANGUAGE, FinetunePlan, FinetuneTask, finetuning_job_name, xlint_script
from .demo_jobs import Job, command_job, keyed_dir, options_key, read_cached_result

WU_TARGET = "tr"
#: the α grid (``--alphas`` of ``xlint interpolate``): 9 points, θ_en at 0, θ_{en,tr} at 1
ALPHAS = "-0.5:1.5:0.25"
SWEEP_LANGUAGES = (SOURCE_LANGUAGE, WU_TARGET)
BILINGUAL_TASK = FinetuneTask(SOURCE_LANGUAGE, SWEEP_LANGUAGES, several_seeds=False, setting="bilingual",
                              targets=(WU_TARGET,), label=f"pos-{SOURCE_LANGUAGE}+{WU_TARGET}")


@dataclass(frozen=True)
class SweepPlan:
    """The interpolation between two fine-tuning jobs' selected checkpoints."""

    source: FinetunePlan  # θ_en
    bilingual: FinetunePlan  # θ_{en,tr}
    folder: Path
    key: str
    options: Dict[str, Any]

    @property
    def out(self) -> Path:
        return self.folder / "sweep"


def plan_sweep(source: FinetunePlan, bilingual: FinetunePlan, workdir: Path) -> SweepPlan:
    """The sweep's folder and key: both checkpoints' job keys, the grid, the languages and the split."""
    options = {"a": source.key, "b": bilingual.key, "alphas": ALPHAS, "languages": list(SWEEP_LANGUAGES),
               "split": "dev", "scope": "all"}
    key = options_key(options)
    return SweepPlan(source, bilingual, keyed_dir(workdir / "interpolation", "wu-1d", key), key, options)


def _checkpoint(plan: FinetunePlan) -> str:
    result = read_cached_result(plan.job_dir, plan.key)
    if result is None:
        raise click.ClickException(f"{plan.job_dir}: no fine-tuning result to interpolate")
    return str(result["checkpoint"])


def sweep_command(plan: SweepPlan) -> List[str]:
    """``xlint interpolate θ_en θ_{en,tr} ...`` (the checkpoints read from the finished jobs' results)."""
    return [xlint_script(), "interpolate", _checkpoint(plan.source), _checkpoint(plan.bilingual),
            "--out", str(plan.out), "--alphas", ALPHAS, "--languages", ",".join(SWEEP_LANGUAGES),
            "--split", "dev", "--cpu", "--threads", "1"]


def read_sweep_summary(plan: SweepPlan) -> Dict[str, Any]:
    path = plan.out / "summary.json"
    if not path.is_file():
        raise click.ClickException(f"{plan.out}: the sweep wrote no summary.json (log: {plan.folder / 'job.log'})")
    summary = json.loads(path.read_text(encoding="utf-8"))
    return {"points": summary["points"], "geometry": summary["geometry"], "out": str(plan.out)}


def sweep_summary_line(result: Mapping[str, Any]) -> str:
    rows = alpha_rows(result)
    ends = [row for row in rows if row["alpha"] in (0.0, 1.0)]
    return "dev acc " + "; ".join(f"α={row['alpha']:g}: " + ", ".join(f"{lang} {row[lang]:.1f}"
                                                                        for lang in SWEEP_LANGUAGES)
                                   for row in ends)


def sweep_job(plan: SweepPlan) -> Job:
    return command_job(name="wu:interpolation", label=f"interpolate θ_en and θ_{{en,{WU_TARGET}}} ({ALPHAS})",
                       folder=plan.folder, key=plan.key, options=plan.options, command=lambda: sweep_command(plan),
                       read_result=lambda: read_sweep_summary(plan), summary=sweep_summary_line,
                       depends_on=(finetuning_job_name(plan.source), finetuning_job_name(plan.bilingual)))


# --------------------------------------------------------------------------- table and figure


def alpha_rows(result: Mapping[str, Any], languages: Sequence[str] = SWEEP_LANGUAGES,
               metric: str = "acc") -> List[Dict[str, float]]:
    """Per α (sorted): the raw dev score of every language, and ``<lang>_normalised`` (over α = 1)."""
    points = {float(point["point"][0]): point["scores"] for point in result["points"]}
    if 1.0 not in points:
        raise click.ClickException("the sweep lacks the bilingual model's point (α = 1)")
    rows = []
    for alpha in sorted(points):
        row: Dict[str, float] = {"alpha": alpha}
        for lang in languages:
            score, reference = float(points[alpha][lang][metric]), float(points[1.0][lang][metric])
            row[lang] = score
            row[f"{lang}_normalised"] = score / reference if reference else math.nan
        rows.append(row)
    return rows


def alpha_name(alpha: float) -> str:
    return {0.0: "0 (θ_en)", 1.0: f"1 (θ_{{en,{WU_TARGET}}})"}.get(alpha, f"{alpha:g}")


def alpha_table(result: Mapping[str, Any]) -> str:
    """Markdown: α, then per language its dev accuracy and, in brackets, that over the bilingual model's."""
    header = ["α", *(f"{lang} dev ({'source' if lang == SOURCE_LANGUAGE else 'target'})"
                     for lang in SWEEP_LANGUAGES)]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for row in alpha_rows(result):
        cells = [alpha_name(row["alpha"]), *(f"{row[lang]:.1f} ({row[f'{lang}_normalised']:.3f})"
                                            for lang in SWEEP_LANGUAGES)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def draw_wu_figure(sweep_out: Path, figures: Path) -> List[Path]:
    """Wu et al. Fig. 2 from the one sweep: ``figures/wu2022_fig2_1d`` (aggregate over its one seed)."""
    from .interpolation_aggregate import aggregate_sweeps
    from .plots_interpolation import draw_1d

    return draw_1d(aggregate_sweeps([sweep_out]), figures / "wu2022_fig2_1d")


def geometry_line(result: Mapping[str, Any]) -> str:
    distance = result.get("geometry", {}).get("distance_A_B")
    return f"‖θ_{{en,{WU_TARGET}}} − θ_en‖ = {distance:.3f}" if isinstance(distance, (int, float)) else ""

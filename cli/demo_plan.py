"""Which jobs ``xlint demo --paper ...`` runs: the parts of the three papers and what each needs.

* ``wang2020``: the six pretrainings (the Joint one with gradient-similarity probes), the POS
  table's fine-tunings (every multilingual model: English with ``--finetune-seeds`` seeds, Greek
  and Turkish within-language with seed 1) and the L0 masks over the Joint model;
* ``guo2023``: the Joint pretraining and its DF and FSF English fine-tunings with curves;
* ``wu2022``: the Joint pretraining, the Wang part's English fine-tuning of it with seed 1
  (θ_en: only that run, not the table), the bilingual en+tr fine-tuning (θ_{en,tr}) and the
  interpolation sweep between them.

Parts that share a job share it (one name, one key, one folder): the job list holds each job
once, where it first appears. Its order is the order the runner starts ready jobs in: the
pretrainings (slowest first), then the chains that end the Guo and Wu parts, then the L0
masks, then the rest of the POS table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import click

from .commands_demo import (
    DEMO_RUNS,
    FINETUNE_TASKS,
    Corpus,
    DemoSettings,
    FinetunePlan,
    PosData,
    PretrainPlan,
    downstream_runs,
    finetuning_job,
    plan_finetuning,
    plan_pos_data,
    plan_pretraining,
    pos_data_job,
    pretraining_job,
)
from .demo_analyses import L0Plan, l0_job, plan_l0_jobs
from .demo_guo import guo_tasks
from .demo_jobs import Job
from .demo_wu import BILINGUAL_TASK, SweepPlan, plan_sweep, sweep_job
from ..preprocess.demo_data import DemoData

PAPERS = ("wang2020", "guo2023", "wu2022")
#: the pretrained model that the Guo and Wu parts and the analyses fine-tune or probe
JOINT = "joint"


def parse_papers(values: Sequence[str]) -> Tuple[str, ...]:
    """``--paper`` values (repeatable, each a comma list) as the chosen papers in canonical order; none: all."""
    chosen = [item.strip() for value in values for item in value.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in PAPERS]
    if unknown:
        raise click.BadParameter(f"unknown paper {unknown[0]!r} (choose from {', '.join(PAPERS)})",
                                 param_hint="--paper")
    return tuple(paper for paper in PAPERS if paper in chosen) if chosen else PAPERS


@dataclass
class DemoPlan:
    """Every planned piece of one demo run (``None`` / empty: the chosen papers do not need it)."""

    papers: Tuple[str, ...]
    pretraining: Dict[str, PretrainPlan]
    pos: Optional[PosData] = None
    wang: List[FinetunePlan] = field(default_factory=list)
    guo: List[FinetunePlan] = field(default_factory=list)
    wu: Optional[SweepPlan] = None
    l0: List[L0Plan] = field(default_factory=list)

    @property
    def joint(self) -> PretrainPlan:
        return self.pretraining[JOINT]

    def jobs(self, data: DemoData, corpus: Corpus) -> List[Job]:
        """The job list for :func:`~xlint.cli.demo_jobs.run_jobs` (dependencies before dependents), each
        job once: the POS data, the pretrainings, the Wu chain, Guo, the L0 masks, the POS table."""
        groups: List[List[Job]] = [[pos_data_job(data, corpus, self.pos)] if self.pos else [],
                                   [pretraining_job(plan) for plan in self.pretraining.values()]]
        if self.wu:
            groups.append([finetuning_job(self.wu.source), finetuning_job(self.wu.bilingual), sweep_job(self.wu)])
        groups += [[finetuning_job(plan) for plan in self.guo], [l0_job(plan) for plan in self.l0],
                   [finetuning_job(plan) for plan in self.wang]]
        unique: Dict[str, Job] = {}
        for job in (job for group in groups for job in group):
            unique.setdefault(job.name, job)
        return list(unique.values())


def plan_demo(papers: Sequence[str], data: DemoData, corpus: Corpus, settings: DemoSettings) -> DemoPlan:
    """The jobs of the chosen papers. ``settings.finetune_epochs == 0`` plans no fine-tuning at all (then
    the Guo and Wu parts are empty); ``settings.l0_updates == 0`` no L0 masks."""
    papers = tuple(papers)
    runs = DEMO_RUNS if "wang2020" in papers else [run for run in DEMO_RUNS if run.name == JOINT]
    plan = DemoPlan(papers, {run.name: plan_pretraining(corpus, run, settings) for run in runs})
    if "wang2020" in papers and settings.l0_updates > 0:
        plan.l0 = plan_l0_jobs(plan.joint, corpus, settings.l0_updates, settings.workdir)
    if settings.finetune_epochs == 0:
        return plan
    plan.pos = plan_pos_data(data, corpus, settings)

    def finetuning(run_name: str, task, seed: int) -> FinetunePlan:
        return plan_finetuning(plan.pretraining[run_name], task, seed, corpus, plan.pos, settings)

    if "wang2020" in papers:
        plan.wang = [finetuning(run.name, task, seed) for run in downstream_runs() for task in FINETUNE_TASKS
                     for seed in settings.seeds(task)]
    if "guo2023" in papers:
        plan.guo = [finetuning(JOINT, task, 1) for task in guo_tasks()]
    if "wu2022" in papers:
        source = finetuning(JOINT, FINETUNE_TASKS[0], 1)  # the Wang part's θ_en, seed 1
        plan.wu = plan_sweep(source, finetuning(JOINT, BILINGUAL_TASK, 1), settings.workdir)
    return plan

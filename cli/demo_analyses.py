"""The demo's Wang et al. (2020) analyses on its Joint model: gradient similarity (Fig. 3) and L0 masks (Fig. 4).

* Gradient similarity: the Joint pretraining runs with the probes of ``fairseq-train
  --grad-sim-interval`` (``GRAD_SIM_OPTIONS`` in :mod:`.commands_demo`; training is
  bit-identical with and without them), which write ``grad_sim.jsonl`` next to its
  checkpoints; the figure is ``xlint plot grad-sim``'s (:func:`~.plots_grad_sim.draw_grad_sim`).
* L0 masks: one ``xlint l0 train`` job per language (``L0_LANGUAGES``) and seed (1, 2: two
  seeds of one language are the within-language baseline) over the frozen Joint model, a few
  updates each (``--l0-updates``), then ``xlint l0 compare``'s numbers and figures
  (:mod:`.l0_compare`).
"""
from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

import click

from .commands_demo import Corpus, PretrainPlan, xlint_script
from .demo_jobs import Job, command_job, keyed_dir, options_key

L0_LANGUAGES = ("tr", "en")
L0_SEEDS = (1, 2)
L0_LAMBDA = 0.1
L0_LOG_INTERVAL = 10
GATES_FILE = "gates.json"


# --------------------------------------------------------------------------- gradient similarity


def draw_grad_sim_figures(pretrained: PretrainPlan, figures: Path) -> List[Path]:
    """``wang2020_fig3_grad_sim`` and its ``_layers`` heat map (tr-en) from the Joint run's probes
    (``[]`` when the run wrote none)."""
    from .plots_grad_sim import draw_grad_sim, load_run

    if not pretrained.grad_sim_file.is_file():
        return []
    run = load_run(pretrained.grad_sim_file, label=f"Joint ({','.join(pretrained.run.languages)})")
    pair = "tr-en" if "tr-en" in run.pairs else None
    return draw_grad_sim([run], "total", "update", pair, figures / "wang2020_fig3_grad_sim")


def grad_sim_table(pretrained: PretrainPlan) -> str:
    """Markdown: the total cosine of every pair (cross-language first, then within) at each probe."""
    from .plots_grad_sim import load_run, series

    if not pretrained.grad_sim_file.is_file():
        return ""
    run = load_run(pretrained.grad_sim_file)
    columns = {pair: dict(zip(*series(run, pair, "total", "update"))) for pair in run.pairs}
    updates = sorted({update for values in columns.values() for update in values})
    lines = ["| update | " + " | ".join(run.pairs) + " |", "|---" * (len(run.pairs) + 1) + "|"]
    for update in updates:
        cells = [f"{columns[pair][update]:+.2f}" if update in columns[pair] else "–" for pair in run.pairs]
        lines.append(f"| {update:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- L0 masks


@dataclass(frozen=True)
class L0Plan:
    language: str
    seed: int
    folder: Path
    key: str
    options: Dict[str, Any]
    pretrained: PretrainPlan
    corpus: Corpus

    @property
    def name(self) -> str:
        return f"l0:{self.language}-seed{self.seed}"

    @property
    def job_dir(self) -> Path:
        """Where ``xlint l0 train --save-dir FOLDER/masks`` puts this language's and seed's run."""
        return self.folder / "masks" / self.language / f"seed{self.seed}"

    @property
    def gates(self) -> Path:
        return self.job_dir / GATES_FILE


def plan_l0(pretrained: PretrainPlan, corpus: Corpus, language: str, seed: int, updates: int,
            workdir: Path) -> L0Plan:
    """One mask-learning job; its key covers the pretrained model, the corpus and every option."""
    options = {"pretrained": pretrained.key, "corpus": corpus.key, "language": language, "seed": seed,
               "max_update": updates, "lambda": L0_LAMBDA}
    key = options_key(options)
    return L0Plan(language, seed, keyed_dir(workdir / "l0", f"{language}-seed{seed}", key), key, options,
                  pretrained, corpus)


def plan_l0_jobs(pretrained: PretrainPlan, corpus: Corpus, updates: int, workdir: Path) -> List[L0Plan]:
    return [plan_l0(pretrained, corpus, lang, seed, updates, workdir)
            for lang, seed in itertools.product(L0_LANGUAGES, L0_SEEDS)]


def l0_command(plan: L0Plan) -> List[str]:
    updates = str(plan.options["max_update"])
    return [xlint_script(), "l0", "train", str(plan.pretrained.checkpoint), "--data", str(plan.corpus.path),
            "--languages", plan.language, "--seeds", str(plan.seed), "--save-dir", str(plan.folder / "masks"),
            "--lambda", str(L0_LAMBDA), "--max-update", updates, "--save-interval-updates", updates,
            "--log-interval", str(L0_LOG_INTERVAL), "--cpu", "--cpu-threads", "1"]


def read_gates(plan: L0Plan) -> Dict[str, Any]:
    if not plan.gates.is_file():
        raise click.ClickException(f"{plan.job_dir}: no {GATES_FILE} (log: {plan.folder / 'job.log'})")
    gates = json.loads(plan.gates.read_text(encoding="utf-8"))
    return {"gates": str(plan.gates), "num_updates": gates["num_updates"], "num_gates": len(gates["log_alpha"])}


def l0_job(plan: L0Plan) -> Job:
    return command_job(name=plan.name, label=f"L0 mask of {plan.language} over Joint, seed {plan.seed}",
                       folder=plan.folder, key=plan.key, options=plan.options, command=lambda: l0_command(plan),
                       read_result=lambda: read_gates(plan),
                       summary=lambda r: f"{r['num_gates']} gates after {r['num_updates']} updates",
                       depends_on=(f"pretrain:{plan.pretrained.run.name}",), log_file=plan.job_dir / "train.log",
                       total_updates=int(plan.options["max_update"]))


def compare_l0(plans: Sequence[L0Plan], workdir: Path, figures: Path) -> Dict[str, Any]:
    """``xlint l0 compare`` of the finished masks: ``workdir/l0/compare.json`` and its figures, moved to
    ``figures/wang2020_fig4{a,b}_l0.{png,pdf}``."""
    from .l0_compare import compare_runs, load_runs, plot_figures, write_comparison

    result = compare_runs(load_runs([plan.gates for plan in plans]), list(L0_LANGUAGES))
    write_comparison(result, workdir / "l0")
    moved = []
    for path in plot_figures(result, workdir / "l0"):
        target = figures / f"wang2020_{path.name}"
        os.replace(path, target)
        moved.append(str(target))
    return {"comparison": result, "figures": moved}


def l0_table(comparison: Mapping[str, Any]) -> str:
    """Markdown: the cosine of log α per sublayer (columns) and layer (``a / b``) for every compared pair."""
    entries = [(entry, "") for entry in comparison["between_languages"]]
    entries += [(entry, " (two seeds)") for entry in comparison["within_language"]]
    sublayers = sorted({sub for entry, _ in entries for sub in entry["per_layer"]})
    if not entries or not sublayers:
        return ""
    layers = sorted({layer for entry, _ in entries for table in entry["per_layer"].values() for layer in table},
                    key=int)
    lines = [f"| cosine of log α (layer {' / '.join(layers)}) | " + " | ".join(sublayers) + " |",
             "|---" * (len(sublayers) + 1) + "|"]
    for entry, note in entries:
        cells = [" / ".join(f"{entry['per_layer'].get(sub, {}).get(layer, float('nan')):.2f}" for layer in layers)
                 for sub in sublayers]
        lines.append(f"| {' – '.join(entry['languages'])}{note} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

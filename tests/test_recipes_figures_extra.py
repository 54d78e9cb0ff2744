"""The remaining figure recipes in their --smoke mode, end to end on tiny CPU models (slow):

* Wang et al. (2020) Fig. 1 (``wang2020_fig1_mono_vs_multi.sh``: Mono / JointPair NER within-language runs
  over the synthetic bilingual world, then ``xlint plot mono-vs-multi``) and Fig. 4 right
  (``wang2020_fig4c_mlm_loss.sh``: three pretraining rows with JSON logs, then ``xlint plot mlm-loss``);
* Wu et al. (2022) Figs 6-9 (``wu2022_fig6_9_per_task.sh``), 5 (``wu2022_fig5_variance.sh``) and 4
  (``wu2022_fig4_geometry.sh``) over one shared OUT, the later recipes reusing the first one's fine-tunings.

Each checks the figure files and that a re-run skips the finished steps.  The Wang recipes draw through
``xlint plot mono-vs-multi`` / ``mlm-loss``: where those subcommands are not registered yet, their tests
skip and say so.  The argument checks of the Wu recipes run against a stand-in xlint (fast).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

from conftest import REPO_ROOT, subprocess_env
from test_finetune_support import world

XLINT = str(Path(sys.executable).parent / "xlint")


def run_recipe(name: str, *args, cwd: Path, **env_extra: str) -> str:
    env: Dict[str, str] = dict(subprocess_env(threads=1), XLINT=XLINT, **env_extra)
    proc = subprocess.run(["bash", str(REPO_ROOT / "recipes" / name), "--smoke", *map(str, args)], env=env, cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc.stdout


def needs_plot(name: str) -> None:
    """Skip unless ``xlint plot NAME`` is registered (a line of cli/commands_plot.py's PLOTS)."""
    proc = subprocess.run([XLINT, "plot", name, "--help"], env=subprocess_env(), capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        pytest.skip(f"`xlint plot {name}` is not registered in cli/commands_plot.py's PLOTS yet")


def figure_written(stem: Path) -> None:
    for suffix in (".png", ".pdf"):
        assert stem.with_suffix(suffix).stat().st_size > 0, stem.with_suffix(suffix)


@pytest.mark.slow
def test_wang2020_fig1_mono_vs_multi_recipe_smoke(tmp_path_factory, tmp_path):
    needs_plot("mono-vs-multi")
    ft = world(tmp_path_factory)
    models = tmp_path / "pretrained"
    for row in ("mono", "jointpair"):  # the recipe only reads PRETRAINED/<row>/checkpoint_last.pt
        (models / row).mkdir(parents=True)
        os.symlink(ft.checkpoint, models / row / "checkpoint_last.pt")
    out = tmp_path / "fig1"
    log = run_recipe("wang2020_fig1_mono_vs_multi.sh", models, "fr", ft.converted["ner"], out, cwd=tmp_path)
    assert " plot mono-vs-multi " in log and "+ " in log
    for row in ("mono", "jointpair"):
        results = json.loads((out / "fr" / row / "ner-within" / "results.json").read_text(encoding="utf-8"))
        assert (results["setting"], results["source"]) == ("within", "fr")
    assert sorted(p.name for p in (out / "fr").iterdir()) == ["jointpair", "mono"]
    assert sorted(p.name for p in (out / "fr" / "mono").iterdir()) == ["ner-within"]  # no POS, no zero-shot
    figure_written(out / "fig1_mono_vs_multi")
    again = run_recipe("wang2020_fig1_mono_vs_multi.sh", models, "fr", ft.converted["ner"], out, cwd=tmp_path)
    assert again.count("done, skipped") == 2 and " finetune " not in again and " plot mono-vs-multi " in again


@pytest.mark.slow
def test_wang2020_fig4c_mlm_loss_recipe_smoke(tiny_mlm_data, tmp_path):
    needs_plot("mlm-loss")
    out = tmp_path / "fig4c"
    log = run_recipe("wang2020_fig4c_mlm_loss.sh", tiny_mlm_data.path, "fr", out, cwd=tmp_path)
    assert log.count(" pretrain ") == 3 and "--log-format json" in log
    for row, label in (("jointpair", "JointPair"), ("adapt", "+ adapt"), ("meta-adapt", "+ meta adapt")):
        assert (out / row / ".done").is_file()
        assert f"{label}: average loss after update 2: " in log and "(6 records)" in log  # 8 updates, 2 warm-up
    figure_written(out / "fig4c_mlm_loss")
    again = run_recipe("wang2020_fig4c_mlm_loss.sh", tiny_mlm_data.path, "fr", out, cwd=tmp_path)
    assert again.count("done, skipped") == 3 and " pretrain " not in again and " plot mlm-loss " in again


@pytest.mark.slow
def test_wu2022_figure_recipes_smoke(tmp_path_factory, tmp_path):
    """Figs 8 (POS; NER's Fig. 6 and XNLI's Fig. 9 are the same script), 5 and 4 over one OUT: the
    fine-tunings are made once (the later recipes are re-runs of those steps), the 1D sweeps
    evaluated once.  (The tiny NER models score F1 0 on the
    bilingual model, so its normalised scores would be undefined: POS is the smoke task.)"""
    ft = world(tmp_path_factory)
    out = tmp_path / "wu"
    args = (ft.converted["pos"], ft.checkpoint, out, "en-fr")
    first = run_recipe("wu2022_fig6_9_per_task.sh", "pos", *args, cwd=tmp_path)
    assert "--metric acc" in first  # POS models are selected on accuracy
    figure_written(out / "fig8_pos")
    aggregate = json.loads((out / "fig8_pos.json").read_text(encoding="utf-8"))
    assert [(e["kind"], e["source"], e["target"]) for e in aggregate["experiments"]] == [("pos", "en", "fr")]
    assert {row["role"] for row in aggregate["pooled"]} == {"source", "target"}
    journal = out / "pos" / "en-fr" / "sweeps" / "1d-seed1" / "points.jsonl"
    assert len(journal.read_text().splitlines()) == 3  # the smoke grid 0, 0.5, 1

    spec = f"pos={ft.converted['pos']}:en-fr"
    variance = run_recipe("wu2022_fig5_variance.sh", ft.checkpoint, out, spec, cwd=tmp_path)
    assert variance.count("reusing") == 6 and "fairseq-train" not in variance
    figure_written(out / "fig5")
    pooled = json.loads((out / "fig5.json").read_text(encoding="utf-8"))["pooled"]
    assert all(row["normalised_variance"] is not None for row in pooled)  # two smoke seeds
    assert len(journal.read_text().splitlines()) == 3  # nothing evaluated twice

    geometry = run_recipe("wu2022_fig4_geometry.sh", ft.checkpoint, out, spec, cwd=tmp_path)
    assert geometry.count("reusing") == 6 and "fairseq-train" not in geometry
    figure_written(out / "fig4")
    points = json.loads((out / "fig4.json").read_text(encoding="utf-8"))["geometry"]
    assert len(points) == 2 and all(p["norm_ratio"] > 0 and 0 < p["angle_degrees"] < 180 for p in points)
    assert len((out / "pos/en-fr/sweeps/geometry-seed1/points.jsonl").read_text().splitlines()) == 1  # theta_bi


STUB_XLINT = """#!/usr/bin/env bash
# a stand-in for xlint that logs its arguments
echo "$*" >>"$STUB_LOG"
"""


@pytest.fixture
def stub(tmp_path):
    path = tmp_path / "xlint"
    path.write_text(STUB_XLINT, encoding="utf-8")
    path.chmod(0o755)
    log = tmp_path / "calls.log"
    return dict(os.environ, XLINT=str(path), STUB_LOG=str(log)), log


def stub_recipe(name: str, env: Dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO_ROOT / "recipes" / name), *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_wu2022_multi_task_recipes_run_every_task_and_pair(stub, tmp_path):
    """Paper mode against a stand-in xlint: per task its selection metric, per pair the three models and one
    sweep per seed, all sweeps aggregated into one figure."""
    env, log = stub
    proc = stub_recipe("wu2022_fig5_variance.sh", env, "PRE.pt", str(tmp_path / "o"),
                       f"pos={tmp_path}/ft:pos:en-de,ar-fr", f"xnli={tmp_path}/ft-xnli:en-fr")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = log.read_text(encoding="utf-8").splitlines()
    finetunes = [c for c in calls if c.startswith("finetune ")]
    assert len(finetunes) == 3 * 3
    assert all(f"finetune {tmp_path}/ft:pos " in c and "--metric acc" in c for c in finetunes[:6])  # ':' in FT
    assert "--seeds 1,2,3" in finetunes[0] and "--save-dir " + str(tmp_path / "o/pos/ar-fr/theta_bi") in finetunes[5]
    sweeps = [c for c in calls if c.startswith("interpolate ") and "aggregate" not in c]
    assert len(sweeps) == 3 * 3 and all("--alphas=paper" in c and "--plane" not in c for c in sweeps)
    aggregate = next(c for c in calls if c.startswith("interpolate aggregate"))
    assert aggregate.count("/sweeps/1d-seed") == 9 and aggregate.endswith(f"--out {tmp_path}/o/fig5")
    assert calls[-1] == f"plot interpolation {tmp_path}/o/fig5.json --figure variance --out {tmp_path}/o/fig5"

    log.write_text("", encoding="utf-8")
    proc = stub_recipe("wu2022_fig4_geometry.sh", env, "PRE.pt", str(tmp_path / "o"), f"ner={tmp_path}/ft:en-fr")
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text(encoding="utf-8").splitlines()
    assert all("--metric f1" in c for c in calls if c.startswith("finetune "))
    sweeps = [c for c in calls if c.startswith("interpolate ") and "aggregate" not in c]
    assert len(sweeps) == 3 and all("--plane " in c and "--alphas=0 --alphas2=0" in c for c in sweeps)
    assert calls[-1].endswith("--figure geometry --out " + str(tmp_path / "o/fig4"))


@pytest.mark.parametrize("name,args,message", [
    ("wu2022_fig6_9_per_task.sh", ["parsing", "FT", "PRE", "OUT", "en-fr"], "Fig. 7 (dependency parsing)"),
    ("wu2022_fig6_9_per_task.sh", ["qa", "FT", "PRE", "OUT", "en-fr"], "unknown task 'qa'"),
    ("wu2022_fig6_9_per_task.sh", ["ner", "FT", "PRE", "OUT", "en_fr"], "expected a language pair SRC-TGT"),
    ("wu2022_fig5_variance.sh", ["PRE", "OUT", "ner:en-fr"], "expected TASK=FT:SRC-TGT"),
    ("wu2022_fig4_geometry.sh", ["PRE", "OUT", "ner=FT"], "expected TASK=FT:SRC-TGT"),
])
def test_wu2022_recipes_refuse_bad_arguments(stub, name, args, message):
    env, log = stub
    proc = stub_recipe(name, env, *args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not log.exists()  # refused before running anything


def test_fig5_recipe_refuses_a_single_seed(stub):
    env, log = stub
    proc = stub_recipe("wu2022_fig5_variance.sh", dict(env, SEEDS="1"), "PRE", "OUT", "ner=FT:en-fr")
    assert proc.returncode == 2 and "two seeds or more" in proc.stderr and not log.exists()


@pytest.mark.parametrize("name", ["wang2020_fig1_mono_vs_multi.sh", "wang2020_fig4c_mlm_loss.sh",
                                  "wu2022_fig4_geometry.sh", "wu2022_fig5_variance.sh", "wu2022_fig6_9_per_task.sh"])
def test_recipes_print_their_usage_without_arguments(name):
    proc = subprocess.run(["bash", str(REPO_ROOT / "recipes" / name)], capture_output=True, text=True)
    assert proc.returncode == 2 and "Usage:" in proc.stderr and "--smoke" in proc.stderr, name

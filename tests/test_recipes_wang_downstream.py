"""The downstream recipes of Wang et al. (2020) Tables 2, 3/7 and 6 in their --smoke mode, end to end:
`xlint finetune` for two rows over the synthetic bilingual world (en, fr), then `xlint report`.

The two rows' "pretrained models" are the world's tiny checkpoint under both row names (the recipe
only reads PRETRAINED/<row>/checkpoint_last.pt); what is checked is the recipe: the runs it makes,
the layout it writes, the table it reports, and that a re-run skips every finished fine-tuning.
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

from conftest import REPO_ROOT, subprocess_env
from test_finetune_support import world

from xlint.cli.report_tables import Axis, build_table, get_spec



@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    ft = world(tmp_path_factory)
    root = tmp_path_factory.mktemp("table2_pretrained")
    for row in ("mono", "jointpair"):
        (root / row).mkdir()
        os.symlink(ft.checkpoint, root / row / "checkpoint_last.pt")
    return ft, root


def run_recipe(name: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment: Dict[str, str] = dict(subprocess_env(threads=1), XLINT=str(Path(sys.executable).parent / "xlint"),
                                       **env)
    proc = subprocess.run(["bash", str(REPO_ROOT / "recipes" / name), "--smoke", *map(str, args)], env=environment,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc


@pytest.mark.slow
def test_table2_downstream_recipe_smoke(pretrained, tmp_path):
    """Zero-shot only here (within-language is the Table 3 smoke's), with Mono, which has no English to train on."""
    ft, models = pretrained
    out = tmp_path / "downstream"
    args = (models, "fr", ft.converted["ner"], ft.converted["pos"], out)
    rows = dict(ROWS="mono jointpair", TASKS="pos", SETTINGS="zero-shot")
    proc = run_recipe("wang2020_table2_downstream.sh", *args, **rows)
    results = json.loads((out / "fr/jointpair/pos-zero-shot/results.json").read_text(encoding="utf-8"))
    assert (results["setting"], results["source"], results["kind"]) == ("zero-shot", "en", "pos")
    assert set(results["test"]["summary"]) >= {"en", "fr"}
    assert not (out / "fr" / "mono").exists()  # a Mono model has no English: no zero-shot run
    assert " finetune " in proc.stdout and "+ " in proc.stdout  # the commands are printed
    table = json.loads((out / "wang2020_table2.json").read_text(encoding="utf-8"))
    filled = {(c["row"], c["column"]) for c in table["cells"] if c["text"]}
    assert filled == {("zero-shot/jointpair", "pos/fr")}
    fr = results["test"]["summary"]["fr"]["f1"]["mean"]
    assert f"| JointPair | | | | | | | | | {fr:.1f} [1] |" in proc.stdout.replace("|  |", "| |").replace("|  |", "| |")
    assert any("ar/mono/ner-within/results.json" in entry for entry in table["missing"])
    assert "| Mono (paper) | *89.2* |" in proc.stdout
    again = run_recipe("wang2020_table2_downstream.sh", *args, **rows)
    assert again.stdout.count("done, skipped") == 1 and " finetune " not in again.stdout


@pytest.mark.slow
def test_table3_and_7_tydiqa_recipe_smoke(pretrained, tmp_path):
    """Within-language only here, on the Mono row."""
    ft, models = pretrained
    out = tmp_path / "qa"
    proc = run_recipe("wang2020_table3_tydiqa.sh", models, "fr", ft.converted["qa"], out, ROWS="mono")
    results = json.loads((out / "fr/mono/tydiqa-within/results.json").read_text(encoding="utf-8"))
    assert (results["task"], results["setting"], results["source"]) == ("qa", "within", "fr")
    assert set(results["test"]["metrics"]) == {"f1", "em"}
    assert not (out / "fr/mono/tydiqa-zero-shot").exists()
    for number in ("3", "7"):
        assert (out / f"wang2020_table{number}.md").is_file()
    assert "| Mono (paper) | *74.2/62.5* |" in proc.stdout  # Table 7, within-language ar
    # TyDiQA has no fr column: Table 7's spec with an fr column reads the run's F1/EM
    spec = get_spec("wang2020", "7")
    with_fr = replace(spec, column_groups=(replace(spec.column_groups[0], items=(Axis("fr", "fr"),)),))
    cell = build_table(with_fr, [out]).cells[("within/mono", "qa/fr")]
    summary = results["test"]["summary"]["fr"]
    assert [stat.mean for stat in cell.stats] == [summary["f1"]["mean"], summary["em"]["mean"]]
    assert cell.source == str(out / "fr/mono/tydiqa-within/results.json")


@pytest.mark.slow
def test_table6_xnli_recipe_smoke(pretrained, tmp_path):
    ft, models = pretrained
    out = tmp_path / "xnli"
    proc = run_recipe("wang2020_table6_xnli.sh", models, "fr", ft.converted["xnli"], out, ROWS="mono jointpair")
    assert "mono: no en, no zero-shot XNLI; skipped" in proc.stdout
    table = json.loads((out / "wang2020_table6.json").read_text(encoding="utf-8"))
    fr = next(c for c in table["cells"] if (c["row"], c["column"]) == ("zero-shot/jointpair", "xnli/fr"))
    assert fr["text"] and fr["source"].endswith("fr/jointpair/xnli-zero-shot/results.json")
    assert fr["published"] == "73.5"


def test_recipes_print_their_usage_without_arguments():
    for name in ("wang2020_table2_downstream.sh", "wang2020_table3_tydiqa.sh", "wang2020_table6_xnli.sh"):
        proc = subprocess.run(["bash", str(REPO_ROOT / "recipes" / name)], capture_output=True, text=True)
        assert proc.returncode == 2 and "Usage:" in proc.stderr and "--smoke" in proc.stderr, name


STUB_XLINT = """#!/usr/bin/env bash
# a stand-in for xlint: `finetune ... --save-dir D` records its GPU and writes D/results.json; `report` is logged
set -eu
echo "$*" >>"$STUB_LOG"
if [ "$1" = finetune ]; then
  while [ $# -gt 1 ]; do if [ "$1" = --save-dir ]; then save=$2; fi; shift; done
  sleep 0.2
  echo "gpu=${CUDA_VISIBLE_DEVICES:-none}" >"$save/gpu"
  echo '{"test": {}}' >"$save/results.json"
fi
"""


def test_recipe_paper_mode_runs_one_job_per_gpu_and_skips_finished_runs(tmp_path):
    """Paper mode (no --smoke) with NGPUS=2: the grid and seeds are passed, runs go two at a time on GPUs 0
    and 1, the report runs after all of them; a re-run skips every finished run, a changed command does not."""
    stub = tmp_path / "xlint"
    stub.write_text(STUB_XLINT, encoding="utf-8")
    stub.chmod(0o755)
    log = tmp_path / "calls.log"
    env = dict(os.environ, XLINT=str(stub), STUB_LOG=str(log), NGPUS="2", ROWS="mono jointpair ffn")
    command = ["bash", str(REPO_ROOT / "recipes" / "wang2020_table2_downstream.sh"), str(tmp_path / "pre"), "ar",
               str(tmp_path / "ner"), str(tmp_path / "pos"), str(tmp_path / "out")]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = log.read_text(encoding="utf-8").splitlines()
    finetunes = [call for call in calls if call.startswith("finetune ")]
    # mono: within only (ner, pos); jointpair and ffn: within and zero-shot
    assert len(finetunes) == 2 + 4 + 4 and calls[-1].startswith("report --paper wang2020 --table 2 --published")
    assert all("--grid paper" in call and "--seeds 1,2,3" in call for call in finetunes)
    zero_shot = [call for call in finetunes if "--setting zero-shot" in call]
    assert len(zero_shot) == 4 and all("--source en --targets ar" in call for call in zero_shot)
    gpus = sorted((tmp_path / "out" / "ar").glob("*/*/gpu"))
    assert len(gpus) == 10 and {path.read_text().strip() for path in gpus} == {"gpu=0", "gpu=1"}
    assert (tmp_path / "out/ar/ffn/pos-zero-shot/recipe.log").is_file()
    log.write_text("", encoding="utf-8")
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.count("done, skipped") == 10
    assert [call.split()[0] for call in log.read_text(encoding="utf-8").splitlines()] == ["report"]
    log.write_text("", encoding="utf-8")
    changed = subprocess.run(command, env=dict(env, SEEDS="1,2"), capture_output=True, text=True, timeout=120)
    assert changed.returncode == 0 and "done, skipped" not in changed.stdout
    assert len([c for c in log.read_text(encoding="utf-8").splitlines() if c.startswith("finetune ")]) == 10
    log.write_text("", encoding="utf-8")
    # Table 5's low-resource model: its checkpoints PRE/<row>-ar_l, its runs OUT/ar_l/, the data's language ar
    suffixed = subprocess.run(command, env=dict(env, SEEDS="1", ROWS="mono", PRETRAINED_SUFFIX="-ar_l",
                                                LANG_DIR="ar_l"), capture_output=True, text=True, timeout=120)
    assert suffixed.returncode == 0
    finetunes = [c for c in log.read_text(encoding="utf-8").splitlines() if c.startswith("finetune ")]
    assert len(finetunes) == 2
    for task, call in zip(("ner", "pos"), finetunes):
        assert f"--pretrained {tmp_path}/pre/mono-ar_l/checkpoint_last.pt --setting within --source ar " in call
        assert call.endswith(f"--save-dir {tmp_path}/out/ar_l/mono/{task}-within")


def test_recipe_fails_when_a_background_run_fails(tmp_path):
    stub = tmp_path / "xlint"
    stub.write_text("#!/usr/bin/env bash\n[ \"$1\" = finetune ] && exit 3\nexit 0\n", encoding="utf-8")
    stub.chmod(0o755)
    env = dict(os.environ, XLINT=str(stub), NGPUS="2", ROWS="jointpair")
    proc = subprocess.run(["bash", str(REPO_ROOT / "recipes" / "wang2020_table6_xnli.sh"), str(tmp_path / "pre"),
                           "ar", str(tmp_path / "xnli"), str(tmp_path / "out")], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0 and "failed: see" in proc.stderr
    assert not (tmp_path / "out/ar/jointpair/xnli-zero-shot/recipe.command").exists()

"""Guo et al. (2023) Table 2's recipe in its --smoke mode: DF and fine-tuning slow and fast, zero-shot and
few-shot, on the synthetic bilingual world's NER data, then `xlint report --paper guo2023 --table 2`."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, subprocess_env
from test_finetune_support import world


@pytest.mark.slow
def test_guo2023_table2_recipe_smoke(tmp_path_factory, tmp_path):
    ft = world(tmp_path_factory)
    out = tmp_path / "guo"
    env = dict(subprocess_env(threads=1), XLINT=str(Path(sys.executable).parent / "xlint"), METHODS="df ours",
               FEW_SHOT="5")
    command = ["bash", str(REPO_ROOT / "recipes" / "guo2023_table2_methods.sh"), "--smoke", str(ft.checkpoint),
               "ner", str(ft.converted["ner"]), str(out)]
    proc = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    for method, cli_method in (("df", "df"), ("ours", "fsf")):
        for setting in ("zero-shot", "few-shot-5"):
            results = json.loads((out / method / f"ner-{setting}" / "results.json").read_text(encoding="utf-8"))
            assert results["setting"] == ("zero-shot" if setting == "zero-shot" else "few-shot")
            assert results["few_shot"] == (0 if setting == "zero-shot" else 5)
            assert "test" in results
            recipe_command = (out / method / f"ner-{setting}" / "recipe.command").read_text(encoding="utf-8")
            assert f"--method {cli_method}" in recipe_command
            assert ("--fsf-window" in recipe_command) == (cli_method == "fsf")
    table = json.loads((out / "guo2023_table2.json").read_text(encoding="utf-8"))
    filled = {(cell["row"], cell["column"]) for cell in table["cells"] if cell["text"]}
    assert len(filled) == 4, filled  # DF and ours, M = 0 and 5, in the NER columns
    again = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=600)
    assert again.returncode == 0 and again.stdout.count("done, skipped") == 4, again.stdout[-3000:]


@pytest.mark.slow
def test_guo2023_demo_pos_recipe_smoke(tmp_path_factory, tmp_path):
    """The demo's POS experiment: every method with curves, the per-language table and the gap figure."""
    ft = world(tmp_path_factory)
    out = tmp_path / "demo-pos"
    env = dict(subprocess_env(threads=1), XLINT=str(Path(sys.executable).parent / "xlint"), METHODS="df fs")
    command = ["bash", str(REPO_ROOT / "recipes" / "guo2023_demo_pos.sh"), "--smoke", str(ft.checkpoint),
               str(ft.converted["pos"]), str(out)]
    proc = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    for method in ("df", "fs"):
        recipe_command = (out / method / "pos-zero-shot" / "recipe.command").read_text(encoding="utf-8")
        assert "--curve-interval 1" in recipe_command
        assert ("--fsf-window" in recipe_command) == (method == "fs") and "--fsf-cka-interval" not in recipe_command
        curves = list((out / method / "pos-zero-shot").glob("*/seed1/curves.jsonl"))
        assert len(curves) == 1 and curves[0].read_text(encoding="utf-8").count("\n") >= 2
    table = json.loads((out / "guo2023_tablepos.json").read_text(encoding="utf-8"))
    filled = {(cell["row"], cell["column"]) for cell in table["cells"] if cell["text"]}
    assert {row for row, _ in filled} == {"method/df", "method/fs"}, filled  # the en column (the world has no tr, grc)
    assert (out / "guo2023_demo_gap.png").stat().st_size > 0 and (out / "guo2023_demo_gap.pdf").is_file()


@pytest.mark.slow
def test_guo2023_curve_figures_recipe_smoke(tmp_path_factory, tmp_path):
    """Fig. 4 (the last-k runs' gap curves) and then Fig. 6 (DF's CKA per layer) into one OUT: the DF run is
    made once; a FIG without curves is refused."""
    ft = world(tmp_path_factory)
    out = tmp_path / "curves"
    env = dict(subprocess_env(threads=1), XLINT=str(Path(sys.executable).parent / "xlint"))

    def recipe(fig: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(REPO_ROOT / "recipes" / "guo2023_figs_curves.sh"), "--smoke", fig,
                               str(ft.checkpoint), "pos", str(ft.converted["pos"]), str(out)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)

    four = recipe("4")
    assert four.returncode == 0, four.stdout[-4000:]
    for method in ("df", "last-1", "last-2", "last-3"):
        curves = list((out / method / "pos-zero-shot").glob("*/seed1/curves.jsonl"))
        assert len(curves) == 1
        rows = [json.loads(line) for line in curves[0].read_text(encoding="utf-8").splitlines()]
        assert rows[0]["update"] == 0 and all("cka" in row and row["gap"] is not None for row in rows)
    assert (out / "guo2023_fig4_pos.png").stat().st_size > 0
    six = recipe("6")
    assert six.returncode == 0 and "done, skipped" in six.stdout, six.stdout[-3000:]
    assert (out / "guo2023_fig6_pos.png").stat().st_size > 0 and (out / "guo2023_fig6_pos.pdf").is_file()
    bad = recipe("3")
    assert bad.returncode == 2 and "FIG must be 1, 2, 4, 5 or 6" in bad.stdout

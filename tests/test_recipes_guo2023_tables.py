"""Guo et al. (2023) Tables 1 and 3-8 and Fig. 3: every recipe in its --smoke mode, on the synthetic bilingual
world's NER data (a 2-layer model), all into ONE run root as the paper's layout has it, so that the DF and ours
runs are made once and reused (Table 2's recipe, which Tables 4 and 7 go through, makes the same commands).

Few methods per recipe (METHODS), 1 seed, 1 epoch.  ``xlint fsf`` and ``xlint plot guo-layers`` are run through
a wrapper ``xlint`` that adds them to the click groups where cli/main.py / cli/commands_plot.py do not list them
yet (the lead registers them)."""
from __future__ import annotations

import json
import random
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from conftest import REPO_ROOT, subprocess_env
from test_finetune_support import convert_files, tagged_sentence, world

from xlint.preprocess.task_formats import NliExample, write_nli_tsv

RECIPES = REPO_ROOT / "recipes"
OPTIONS_LINE = re.compile(r"^--fsf-s1 (\S+) --fsf-s2 (\S+) --fsf-v1 (\S+) --fsf-v2 (\S+)$")

WRAPPER = """#!{python}
# xlint with the fsf group and plot guo-layers added where the command tables do not list them yet
from xlint.cli.commands_fsf import fsf
from xlint.cli.commands_plot import plot
from xlint.cli.main import cli
from xlint.cli.plots_layer_sweep import guo_layers_plot

if cli.get_command(None, "fsf") is None:
    cli.add_command(fsf)
if plot.get_command(None, "guo-layers") is None:
    plot.add_command(guo_layers_plot)
cli(prog_name="xlint")
"""

#: (script, TASK, METHODS or None, the method dirs it runs) in run order
PLAN = (
    ("guo2023_fig3_layer_sweep.sh", "ner", None,
     ["df", "freeze-layer-1", "reinit-layer-1", "freeze-layer-2", "reinit-layer-2"]),
    ("guo2023_table1_layers.sh", "ner", "df last-1 enlarge-2-attn", ["df", "last-1", "enlarge-2-attn"]),
    ("guo2023_table6_reinit.sh", "ner", "df reinit-4-ffn", ["df", "reinit-4-ffn"]),
    ("guo2023_table5_hyper.sh", "ner", "c1-0 c2-5", ["c1-0"]),
    ("guo2023_table8_ablations.sh", "ner", "ours only-s2 v2-to-v1", ["ours", "only-s2"]),
    ("guo2023_table4_table7.sh", "ner", None, ["df", "ours"]),
    ("guo2023_table3_binary.sh", "qam", None, ["df", "ours"]),
)


def binary_data(world_, root: Path) -> Path:
    """A learnable binary pair task in the XNLI layout: entailment = the hypothesis is the premise's first three
    words, contradiction = the premise reversed (en train 48; en and fr dev/test 16)."""
    rng = random.Random(3)
    specs = []
    for lang, split, count in (("en", "train", 48), ("en", "dev", 16), ("en", "test", 16), ("fr", "dev", 16),
                               ("fr", "test", 16)):
        examples = []
        for number in range(count):
            premise = tagged_sentence(rng, lang).tokens
            positive = number % 2 == 0
            hypothesis = premise[:3] if positive else premise[::-1]
            examples.append(NliExample(" ".join(premise), " ".join(hypothesis),
                                       "entailment" if positive else "contradiction", lang))
        path = root / f"{lang}-{split}.tsv"
        write_nli_tsv(path, examples)
        specs.append(f"{lang}:{split}={path}")
    return convert_files(world_, "xnli", specs, root / "ft-binary")


@pytest.fixture(scope="module")
def guo(tmp_path_factory):
    """Every recipe run once (in PLAN's order) into one run root, then all of them again."""
    ft = world(tmp_path_factory)
    root = tmp_path_factory.mktemp("guo_tables")
    xlint = root / "xlint"
    xlint.write_text(WRAPPER.format(python=sys.executable), encoding="utf-8")
    xlint.chmod(0o755)
    data = {"ner": ft.converted["ner"], "qam": binary_data(ft, root)}
    out = root / "runs"

    def run_all() -> Dict[str, str]:
        outputs = {}
        for script, task, methods, _ in PLAN:
            env = dict(subprocess_env(threads=1), XLINT=str(xlint))
            env.pop("METHODS", None)
            if methods is not None:
                env["METHODS"] = methods
            command = ["bash", str(RECIPES / script), "--smoke", str(ft.checkpoint), task, str(data[task]), str(out)]
            proc = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  timeout=600)
            assert proc.returncode == 0, f"{script}:\n{proc.stdout[-4000:]}"
            outputs[script] = proc.stdout
        return outputs

    first = run_all()
    return {"out": out, "first": first, "again": run_all()}


def filled(out: Path, table: str) -> List[str]:
    """The (row, column) ids of a report's cells that hold our numbers."""
    cells = json.loads((out / f"guo2023_table{table}.json").read_text(encoding="utf-8"))["cells"]
    return sorted(f"{cell['row']} {cell['column']}" for cell in cells if cell["text"])


def recipe_command(out: Path, method: str, task: str = "ner") -> List[str]:
    """The xlint finetune command a run was made with (recipe.command is shell-quoted), as words."""
    return shlex.split((out / method / f"{task}-zero-shot" / "recipe.command").read_text(encoding="utf-8"))


def has_option(words: List[str], option: str) -> bool:
    name, value = option.split(" ")
    return any(words[i:i + 2] == [name, value] for i in range(len(words) - 1))


@pytest.mark.slow
def test_every_run_in_the_guo_layout(guo):
    out = guo["out"]
    for script, task, _, methods in PLAN:
        for method in methods:
            results = json.loads((out / method / f"{task}-zero-shot" / "results.json").read_text(encoding="utf-8"))
            assert results["setting"] == "zero-shot" and "test" in results, (script, method)
    # the methods' options: 2 layers, so the proportional rule gives TOP = BOTTOM = 1 and last-1 freezes layer 1
    expected = {"last-1": "--method df", "enlarge-2-attn": "--method df", "reinit-4-ffn": "--method df",
                "freeze-layer-2": "--method df", "c1-0": "--method fsf",
                "only-s2": "--method only-s2", "ours": "--method fsf"}
    extra = {"last-1": "--freeze embeddings,1:all", "enlarge-2-attn": "--lr-scale 2:attn=10",
             "reinit-4-ffn": "--reinit 1:ffn", "freeze-layer-2": "--freeze 2:all", "reinit-layer-1": "--reinit 1:all",
             "c1-0": "--fsf-c1 0"}
    for method, option in expected.items():
        assert has_option(recipe_command(out, method), option), method
    for method, option in extra.items():
        assert has_option(recipe_command(out, method), option), method
    assert "--fsf-window" not in recipe_command(out, "df") and "--fsf-window" in recipe_command(out, "ours")
    # NER: Policy IV is not applied, so no c2 and no V^II-to-V^I run
    assert not (out / "c2-5").exists() and not (out / "v2-to-v1").exists()
    assert "c2-5 ner: not run" in guo["first"]["guo2023_table5_hyper.sh"]


@pytest.mark.slow
def test_reports_fill_their_cells(guo):
    out = guo["out"]
    assert filled(out, "1") == ["dataset/ner method/df", "dataset/ner method/enlarge-2-attn",
                                "dataset/ner method/last-1"]
    assert filled(out, "6") == ["dataset/ner method/df", "dataset/ner method/reinit-4-ffn"]
    assert filled(out, "5") == ["dataset/ner c1/0"]
    assert filled(out, "8") == ["dataset/ner method/only-s2", "dataset/ner method/ours"]
    assert filled(out, "4") == ["dataset/ner df/non-source", "dataset/ner df/source", "dataset/ner ours/non-source",
                                "dataset/ner ours/source"]
    assert "Table 7 is XNLI's per-language table: not built for ner" in guo["first"]["guo2023_table4_table7.sh"]
    table3 = guo["first"]["guo2023_table3_binary.sh"]
    printed = table3[table3.index("== Table 3: df"):]  # the recipe's closing tables (each run also prints its own)
    assert printed.count("| target average |") == 2 and "== Table 3: ours" in printed


@pytest.mark.slow
def test_fig3_derives_the_sets_and_draws(guo):
    from xlint.cli.layer_sweep import derive_sets, read_layer_sweep

    out = guo["out"]
    printed = guo["first"]["guo2023_fig3_layer_sweep.sh"]
    saved = (out / "guo2023_fsf_sets_ner.txt").read_text(encoding="utf-8").splitlines()
    assert OPTIONS_LINE.match(saved[-1]) and saved[-1] in printed.splitlines()
    sweep = read_layer_sweep(out, "ner")
    assert sweep.num_layers == 2 and sorted(sweep.freeze) == sorted(sweep.reinit) == [1, 2] and not sweep.missing
    assert saved[-1] == derive_sets(sweep, 1.0, 0.0).options()
    for suffix in (".png", ".pdf"):
        assert (out / f"guo2023_fig3_ner{suffix}").stat().st_size > 0


@pytest.mark.slow
def test_rerun_skips_every_finished_run(guo):
    for script, _, _, methods in PLAN:
        again = guo["again"][script]
        assert "xlint finetune" not in again.replace("done, skipped", ""), (script, again[-2000:])
        assert again.count("done, skipped") == len(methods), (script, again[-2000:])
    # the runs shared between recipes were made once: Table 4's df and ours are Fig. 3's and Table 8's
    first = guo["first"]
    assert first["guo2023_table4_table7.sh"].count("done, skipped") == 2
    assert first["guo2023_table1_layers.sh"].count("done, skipped") == 1

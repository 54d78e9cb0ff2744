"""The analysis recipes of Wang et al. (2020), end to end in their --smoke mode (tiny models on CPU):
Fig. 2 (perplexity), Fig. 3 (gradient similarity), Table 4 (JointTri) and Table 5 (corpus size)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO_ROOT, subprocess_env
from xlint.preprocess.synthetic_corpus import CorpusSpec, build_synthetic_corpus

pytestmark = pytest.mark.slow


def run_recipe(name: str, *args, cwd: Path, **env_extra: str) -> str:
    env = dict(subprocess_env(threads=1), XLINT=str(Path(sys.executable).parent / "xlint"), SMOKE_UPDATES="4",
               **env_extra)
    proc = subprocess.run(["bash", str(REPO_ROOT / "recipes" / name), "--smoke", *map(str, args)], env=env,
                          cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc.stdout


def checkpoint_languages(save_dir: Path):
    state = torch.load(save_dir / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    return state["cfg"]["model"]["model_languages"].split(",")


def test_fig2_ppl_recipe_smoke(tiny_mlm_data, tmp_path):
    out = tmp_path / "fig2"
    log = run_recipe("wang2020_fig2_ppl.sh", tiny_mlm_data.path, "fr", out, cwd=tmp_path)
    assert "+ " in log and " pretrain " in log and " plot ppl " in log  # the commands are printed
    for run, languages in (("mono-fr", ["fr"]), ("mono-en", ["en"]), ("jointpair", ["fr", "en"])):
        assert checkpoint_languages(out / run) == languages
        assert (out / run / ".done").is_file()
    for suffix in (".png", ".pdf"):
        assert (out / f"fig2_ppl{suffix}").stat().st_size > 0
    again = run_recipe("wang2020_fig2_ppl.sh", tiny_mlm_data.path, "fr", out, cwd=tmp_path)
    assert again.count("done, skipped") == 3 and " pretrain " not in again


def test_fig3_grad_sim_recipe_smoke(tiny_mlm_data, tmp_path):
    out = tmp_path / "fig3"
    log = run_recipe("wang2020_fig3_grad_sim.sh", tiny_mlm_data.path, out, "fr", cwd=tmp_path)
    assert "--grad-sim-interval 2" in log
    rows = [json.loads(line) for line in (out / "fr-en" / "grad_sim.jsonl").read_text().splitlines()]
    assert sorted({r["update"] for r in rows}) == [0, 2]
    assert {r["pair"] for r in rows} == {"fr-en", "fr-fr", "en-en"}
    for stem in ("fig3_grad_sim", "fig3_grad_sim_layers"):
        assert (out / f"{stem}.png").stat().st_size > 0 and (out / f"{stem}.pdf").stat().st_size > 0


def test_table4_jointtri_recipe_smoke(tmp_path):
    spec = CorpusSpec.numbered(["fr", "es", "en"], 12, {"train": 120, "valid": 16, "test": 8, "metadev": 8},
                               seed=5)
    data = build_synthetic_corpus(spec, tmp_path / "DATA")
    out = tmp_path / "table4"
    run_recipe("wang2020_table4_jointtri.sh", data.path, "fr", "es", out, cwd=tmp_path)
    assert checkpoint_languages(out / "jointpair") == ["fr", "en"]
    assert checkpoint_languages(out / "jointtri") == ["fr", "es", "en"]


def test_table5_corpus_size_recipe_smoke(tiny_mlm_data, tmp_path):
    raw = Path(tiny_mlm_data.path).parent / "raw"
    out = tmp_path / "table5"
    log = run_recipe("wang2020_table5_corpus_size.sh", out, f"fr={raw / 'fr.train.txt'}",
                     f"en={raw / 'en.train.txt'}", cwd=tmp_path, SUBSAMPLE="40")
    assert "--subsample fr_l=40" in log
    metadata = json.loads((out / "data" / "metadata.json").read_text())
    assert metadata["splits"]["fr_l"]["train"]["sentences"] == 40
    assert metadata["splits"]["fr"]["train"]["sentences"] > 100
    for row, languages in (("mono-fr", ["fr"]), ("jointpair-fr", ["fr", "en"]), ("mono-fr_l", ["fr_l"]),
                           ("jointpair-fr_l", ["fr_l", "en"])):
        assert checkpoint_languages(out / row) == languages, row


def test_table5_recipe_rejects_inputs_without_the_pivot(tmp_path):
    proc = subprocess.run(["bash", str(REPO_ROOT / "recipes" / "wang2020_table5_corpus_size.sh"), "--smoke",
                           str(tmp_path / "o"), f"fr={tmp_path / 'x.txt'}"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=subprocess_env())
    assert proc.returncode == 2 and "en=FILE" in proc.stdout

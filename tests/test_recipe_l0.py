"""recipes/wang2020_fig4_l0.sh end to end in its --smoke mode (tiny models on CPU), and its re-run."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, subprocess_env

RECIPE = REPO_ROOT / "recipes" / "wang2020_fig4_l0.sh"


def run_recipe(data: Path, out: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(subprocess_env(threads=1), XLINT=str(Path(sys.executable).parent / "xlint"), SMOKE_UPDATES="2")
    return subprocess.run(["bash", str(RECIPE), "--smoke", str(data), "fr", str(out)], env=env, cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)


@pytest.mark.slow
def test_fig4_recipe_smoke_and_rerun(tiny_mlm_data, tmp_path):
    out = tmp_path / "fig4"
    proc = run_recipe(tiny_mlm_data.path, out, tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "+ " in proc.stdout and " l0 train " in proc.stdout and " l0 compare " in proc.stdout
    for lang in ("fr", "en"):
        for seed in (1, 2):
            gates = json.loads((out / "masks" / lang / f"seed{seed}" / "gates.json").read_text())
            assert gates["num_updates"] == 2 and gates["language"] == lang and gates["seed"] == seed
    result = json.loads((out / "fig4" / "compare.json").read_text())
    assert [e["languages"] for e in result["between_languages"]] == [["en", "fr"]]
    assert sorted(e["languages"][0] for e in result["within_language"]) == ["en", "fr"]
    assert result["extremes"]["languages"] == ["fr", "en"] and len(result["extremes"]["most_negative"]) == 10
    for stem in ("fig4a_l0", "fig4b_l0"):
        for suffix in (".png", ".pdf"):
            assert (out / "fig4" / f"{stem}{suffix}").stat().st_size > 1000

    again = run_recipe(tiny_mlm_data.path, out, tmp_path)
    assert again.returncode == 0, again.stdout[-4000:]
    assert "(done, skipped)" in again.stdout and "up to date, skipped" in again.stdout
    assert again.stdout.count(": done (2 updates") == 4 and "fairseq-train" not in again.stdout

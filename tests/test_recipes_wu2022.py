"""The Wu et al. (2022) recipes end to end in their --smoke mode (tiny POS models on CPU; slow)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, subprocess_env

from test_finetune_support import world


def recipe(name: str, ft, out: Path, cwd: Path) -> str:
    env = dict(subprocess_env(threads=1), XLINT=str(Path(sys.executable).parent / "xlint"))
    proc = subprocess.run(["bash", str(REPO_ROOT / "recipes" / name), "--smoke", str(ft.converted["pos"]),
                           str(ft.checkpoint), "en", "fr", str(out)],
                          env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc.stdout


@pytest.mark.slow
def test_wu2022_recipes_smoke(tmp_path_factory, tmp_path):
    ft = world(tmp_path_factory)
    out = tmp_path / "wu2022"
    first = recipe("wu2022_fig2_interpolation.sh", ft, out, tmp_path)
    assert "+ " in first and "interpolate aggregate" in first  # the commands are printed
    for figure in ("fig2", "fig5"):
        assert (out / f"{figure}.png").stat().st_size > 0 and (out / f"{figure}.pdf").is_file()
    aggregate = json.loads((out / "fig2.json").read_text())
    assert {row["role"] for row in aggregate["pooled"]} == {"source", "target"}
    assert all(row["normalised"]["n"] == 2 for row in aggregate["pooled"])  # two smoke seeds
    journal = out / "sweeps" / "1d-seed1" / "points.jsonl"
    assert len(journal.read_text().splitlines()) == 3

    plane = recipe("wu2022_fig3_plane.sh", ft, out, tmp_path)
    assert plane.count("reusing") == 6  # the fine-tuned models of the first recipe
    assert "interpolate merge" in plane and (out / "sweeps" / "2d-seed2" / "shard-1-of-2").is_dir()
    for figure in ("fig3", "fig4"):
        assert (out / f"{figure}.png").stat().st_size > 0
    assert len(json.loads((out / "fig3.json").read_text())["geometry"]) == 2

    again = recipe("wu2022_fig2_interpolation.sh", ft, out, tmp_path)
    assert again.count("reusing") == 6 and "fairseq-train" not in again
    assert len(journal.read_text().splitlines()) == 3  # nothing evaluated twice

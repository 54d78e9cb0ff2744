"""The paper-table recipes, run end to end in their --smoke mode (tiny models on CPU)."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO_ROOT, subprocess_env


@pytest.mark.slow
def test_table2_pretraining_recipe_smoke(tiny_mlm_data, tmp_path):
    env = dict(subprocess_env(threads=1), XLINT=str(Path(sys.executable).parent / "xlint"), SMOKE_UPDATES="2")
    out = tmp_path / "table2"
    proc = subprocess.run(["bash", str(REPO_ROOT / "recipes" / "wang2020_table2_pretrain.sh"), "--smoke",
                           str(tiny_mlm_data.path), "fr", str(out)],
                          env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:]
    rows = {"mono": ("joint", ["fr"]), "jointpair": ("joint", ["fr", "en"]), "ffn": ("ffn", ["fr", "en"]),
            "attn": ("attn", ["fr", "en"]), "adapt": ("adapter", ["fr", "en"]),
            "share-adapt": ("shared_adapter", ["fr", "en"]), "meta-adapt": ("adapter", ["fr", "en"])}
    for row, (variant, languages) in rows.items():
        state = torch.load(out / row / "checkpoint_last.pt", map_location="cpu", weights_only=False)
        model_cfg = state["cfg"]["model"]
        assert model_cfg["language_specific"] == variant, row
        assert model_cfg["model_languages"].split(",") == languages, row
        assert ("meta_state._extra_state" in state["model"]) == (row == "meta-adapt"), row
        assert state["cfg"]["task"]["_name"] == ("meta_mlm" if row == "meta-adapt" else "xlm_mlm"), row
        assert (out / row / "train.log").is_file()

"""`xlint evaluate`: strict loading of the task head and the output paths.

A fine-tuned checkpoint must hold exactly the head its task builds: fairseq's loading
(through the model's ``upgrade_state_dict_named``) would give it a new, random head
instead, which is what fine-tuning from a pretrained model needs and evaluation must not do.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import xlint.user_dir  # noqa: F401  (allow-lists fairseq's checkpoint globals)

from xlint.cli.evaluation import evaluation_paths
from xlint.cli.main import cli

from test_finetune_support import world

HEAD_WEIGHT = "heads.tagging.out_proj.weight"
HEAD_BIAS = "heads.tagging.out_proj.bias"


@pytest.fixture(scope="module")
def ft(tmp_path_factory):
    return world(tmp_path_factory)


@pytest.fixture(scope="module")
def tagger(ft, tmp_path_factory) -> Path:
    """``checkpoint_best.pt`` of a one-epoch POS run (fairseq-train)."""
    save_dir = tmp_path_factory.mktemp("tagger")
    result = CliRunner().invoke(cli, [
        "finetune", str(ft.converted["pos"]), "--save-dir", str(save_dir), "--pretrained", str(ft.checkpoint),
        "--setting", "within", "--source", "en", "--epochs", "1", "--lr", "1e-3", "--batch-size", "16",
        "--cpu", "--cpu-threads", "1", "--quiet", "--no-evaluate"])
    assert result.exit_code == 0, result.output[-4000:] + repr(result.exception)
    return save_dir / "bs16-lr0.001" / "seed1" / "checkpoint_best.pt"


def evaluate(checkpoint: Path, *args: str):
    return CliRunner().invoke(cli, ["evaluate", str(checkpoint), "--cpu", "--quiet", *args])


def edited_checkpoint(source: Path, destination: Path, edit) -> Path:
    state = torch.load(str(source), map_location="cpu", weights_only=False)
    edit(state["model"])
    torch.save(state, str(destination))
    return destination


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.slow
def test_a_checkpoint_without_its_head_is_refused(tagger, tmp_path):
    bad = edited_checkpoint(tagger, tmp_path / "no-bias.pt", lambda model: model.pop(HEAD_BIAS))
    assert_one_line_error(evaluate(bad, "--out", str(tmp_path / "eval")), str(bad),
                          f"missing task-head key(s) {HEAD_BIAS}")
    assert not (tmp_path / "eval.json").exists()
    headless = edited_checkpoint(tagger, tmp_path / "headless.pt",
                                 lambda model: [model.pop(key) for key in (HEAD_WEIGHT, HEAD_BIAS)])
    assert_one_line_error(evaluate(headless), f"missing task-head key(s) {HEAD_BIAS}, {HEAD_WEIGHT}")


@pytest.mark.slow
def test_a_checkpoint_with_another_head_is_refused(tagger, tmp_path):
    extra = edited_checkpoint(tagger, tmp_path / "extra.pt",
                              lambda model: model.update({"heads.qa.out_proj.weight": torch.zeros(2, 64)}))
    assert_one_line_error(evaluate(extra), "unexpected task-head key(s) heads.qa.out_proj.weight")


@pytest.mark.slow
def test_a_head_of_another_label_set_is_refused(ft, tagger):
    # the NER data has 5 labels, the POS tagger's head 7
    result = evaluate(tagger, "--data", str(ft.converted["ner"]))
    assert_one_line_error(result, f"{HEAD_WEIGHT} [7, 64] (the task builds [5, 64])",
                          f"{HEAD_BIAS} [7] (the task builds [5])")


@pytest.mark.slow
def test_out_may_name_the_json_file(tagger, tmp_path):
    result = evaluate(tagger, "--split", "dev", "--predictions", "--out", str(tmp_path / "eval.json"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json", "eval.md", "eval.predictions.jsonl"]
    assert set(json.loads((tmp_path / "eval.json").read_text(encoding="utf-8"))["scores"]) == {"en", "fr"}
    assert "| en (train) |" in (tmp_path / "eval.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("out,expected", [
    ("runs/eval.json", ("runs/eval.json", "runs/eval.md", "runs/eval.predictions.jsonl")),
    ("runs/eval.md", ("runs/eval.json", "runs/eval.md", "runs/eval.predictions.jsonl")),
    ("runs/eval", ("runs/eval.json", "runs/eval.md", "runs/eval.predictions.jsonl")),
    ("runs/eval.v2", ("runs/eval.v2.json", "runs/eval.v2.md", "runs/eval.v2.predictions.jsonl")),
])
def test_evaluation_paths(out, expected):
    paths = evaluation_paths(Path(out))
    assert (str(paths.json), str(paths.markdown), str(paths.predictions)) == expected

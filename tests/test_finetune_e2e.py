"""End-to-end fine-tuning on CPU: `xlint finetune` (real fairseq-train runs) and `xlint evaluate`.

Every task type trains for a few updates from a tiny pretrained adapter model; a
zero-shot run reports every target language and its model selection follows the
source dev set, which is constructed so that its best epoch is not the last one.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import xlint.user_dir  # noqa: F401  (allow-lists fairseq's checkpoint globals)
from fairseq import checkpoint_utils

from xlint.cli.commands_finetune import run_pos_transfer_demo
from xlint.cli.main import cli
from xlint.user_dir.finetune_data import read_records

from test_finetune_support import world

COMMON = ("--cpu", "--cpu-threads", "1", "--quiet")


@pytest.fixture(scope="module")
def ft(tmp_path_factory):
    return world(tmp_path_factory)


def finetune(data: Path, save_dir: Path, *args: str) -> dict:
    result = CliRunner().invoke(cli, ["finetune", str(data), "--save-dir", str(save_dir), *COMMON, *args])
    assert result.exit_code == 0, result.output[-4000:] + repr(result.exception)
    return json.loads((save_dir / "results.json").read_text(encoding="utf-8"))


def evaluate(checkpoint: Path, out: Path, *args: str) -> dict:
    result = CliRunner().invoke(cli, ["evaluate", str(checkpoint), "--out", str(out), "--cpu", "--quiet", *args])
    assert result.exit_code == 0, result.output[-4000:] + repr(result.exception)
    assert out.with_name(out.name + ".md").is_file()
    return json.loads(out.with_name(out.name + ".json").read_text(encoding="utf-8"))


def model_state(path: Path) -> dict:
    return checkpoint_utils.load_checkpoint_to_cpu(str(path))["model"]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def poison_dev(source: Path, destination: Path, lang: str) -> Path:
    """A copy of tagging data whose ``lang`` dev tags are all shifted to another tag: the better
    the tagger, the worse it scores there, so that dev set's best epoch comes early."""
    shutil.copytree(source, destination)
    labels = json.loads((destination / "meta.json").read_text(encoding="utf-8"))["labels"]
    shift = {tag: labels[(i + 1) % len(labels)] for i, tag in enumerate(labels)}
    path = destination / lang / "dev.jsonl"
    records = read_records(str(destination), lang, "dev")
    for record in records:
        record["tags"] = [shift[tag] for tag in record["tags"]]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return destination


def test_zero_shot_reports_every_target_and_selects_on_the_source_dev_set(ft, tmp_path):
    data = poison_dev(ft.converted["pos"], tmp_path / "poisoned", "en")
    save_dir = tmp_path / "zero-shot"
    results = finetune(data, save_dir, "--pretrained", str(ft.checkpoint), "--source", "en", "--epochs", "3",
                       "--lr", "2e-3", "--batch-size", "8", "--metric", "acc")
    assert results["selection"]["metric"] == "acc_en"
    scores = results["test"]["per_seed"]["1"]["scores"]
    assert set(scores) == {"en", "fr"} and all(set(s) == {"acc", "f1"} for s in scores.values())
    assert "fr" in (save_dir / "results.md").read_text(encoding="utf-8")

    run = json.loads((save_dir / "bs8-lr0.002" / "seed1" / "run.json").read_text(encoding="utf-8"))
    epochs = run["dev_by_epoch"]
    assert [int(e["epoch"]) for e in epochs] == [1, 2, 3]
    assert all(f"{m}_{lang}" in e for e in epochs for m in ("acc", "f1") for lang in ("en", "fr"))
    source = [e["acc_en"] for e in epochs]
    best_epoch = source.index(max(source)) + 1
    assert run["best_epoch"] == best_epoch != 3, source  # constructed: the last epoch is not the best
    run_dir = save_dir / "bs8-lr0.002" / "seed1"
    best = model_state(run_dir / "checkpoint_best.pt")
    assert same_weights(best, model_state(run_dir / f"checkpoint{best_epoch}.pt"))
    assert not same_weights(best, model_state(run_dir / "checkpoint_last.pt"))

    # `xlint evaluate` on dev reproduces the validation scores of the selected epoch
    dev = evaluate(run_dir / "checkpoint_best.pt", tmp_path / "eval-dev", "--split", "dev")
    for lang in ("en", "fr"):
        for metric in ("acc", "f1"):
            assert dev["scores"][lang][metric] == pytest.approx(epochs[best_epoch - 1][f"{metric}_{lang}"], abs=1e-3)
    assert results["test"]["per_seed"]["1"]["scores"] == evaluate(run_dir / "checkpoint_best.pt",
                                                                  tmp_path / "eval-test")["scores"]


def test_within_language_ner_over_two_seeds_with_sliding_windows(ft, tmp_path):
    args = ("--pretrained", str(ft.checkpoint), "--setting", "within", "--source", "fr", "--seeds", "1,2",
            "--epochs", "1", "--lr", "1e-3", "--batch-size", "16", "--max-length", "16")
    results = finetune(ft.converted["ner"], tmp_path / "ner", *args)
    assert results["selection"]["metric"] == "f1_fr" and results["test_languages"] == ["fr"]
    summary = results["test"]["summary"]["fr"]
    assert set(summary) == {"f1", "precision", "recall"}
    per_seed = [results["test"]["per_seed"][s]["scores"]["fr"]["f1"] for s in ("1", "2")]
    assert summary["f1"]["n"] == 2 and summary["f1"]["mean"] == pytest.approx(sum(per_seed) / 2)
    assert summary["f1"]["std"] == pytest.approx(abs(per_seed[0] - per_seed[1]) / 2 ** 0.5)
    assert "±" in (tmp_path / "ner" / "results.md").read_text(encoding="utf-8")
    log = (tmp_path / "ner" / "bs16-lr0.001" / "seed1" / "train.log").read_text(encoding="utf-8")
    assert "(max length 16)" in log

    rerun = CliRunner().invoke(cli, ["finetune", str(ft.converted["ner"]), "--save-dir", str(tmp_path / "ner"),
                                     "--cpu", "--cpu-threads", "1", *args])
    assert rerun.exit_code == 0 and rerun.output.count("reusing") == 2


def test_few_shot_mixes_target_examples_into_training(ft, tmp_path):
    results = finetune(ft.converted["pos"], tmp_path / "few", "--pretrained", str(ft.checkpoint), "--source", "en",
                       "--setting", "few-shot", "--few-shot", "4", "--epochs", "1", "--lr", "1e-3",
                       "--batch-size", "16")
    log = (tmp_path / "few" / "bs16-lr0.001" / "seed1" / "train.log").read_text(encoding="utf-8")
    assert "train: en 65, fr 4 examples" in log and "valid: en 25, fr 21 examples" in log
    assert set(results["test"]["per_seed"]["1"]["scores"]) == {"en", "fr"}


def test_xnli_with_separate_classifier_learning_rate(ft, tmp_path):
    results = finetune(ft.converted["xnli"], tmp_path / "xnli", "--pretrained", str(ft.checkpoint),
                       "--source", "en", "--epochs", "1", "--lr", "1e-4", "--head-lr", "1e-3", "--batch-size", "8")
    assert results["selection"]["metric"] == "acc_en"
    scores = results["test"]["per_seed"]["1"]["scores"]
    assert set(scores) == {"en", "fr"} and all(0 <= s["acc"] <= 100 for s in scores.values())
    state = checkpoint_utils.load_checkpoint_to_cpu(str(tmp_path / "xnli" / "bs8-lr0.0001-hlr0.001" / "seed1"
                                                         / "checkpoint_last.pt"))
    groups = state["last_optimizer_state"]["param_groups"]
    assert [g["lr_scale"] for g in groups] == [1.0, pytest.approx(10.0)]
    assert groups[1]["lr"] == pytest.approx(10 * groups[0]["lr"])


def test_extractive_qa_end_to_end(ft, tmp_path):
    results = finetune(ft.converted["qa"], tmp_path / "qa", "--pretrained", str(ft.checkpoint), "--source", "en",
                       "--epochs", "1", "--lr", "1e-3", "--batch-size", "8", "--max-length", "48")
    scores = results["test"]["per_seed"]["1"]["scores"]
    assert set(scores) == {"en", "fr"} and all(set(s) == {"f1", "em"} for s in scores.values())
    checkpoint = Path(results["chosen"]["runs"][0]["checkpoint"])
    out = tmp_path / "qa-eval"
    result = CliRunner().invoke(cli, ["evaluate", str(checkpoint), "--out", str(out), "--cpu", "--quiet",
                                      "--predictions", "--languages", "fr"])
    assert result.exit_code == 0, result.output
    predictions = [json.loads(line) for line in out.with_name("qa-eval.predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == len(read_records(str(ft.converted["qa"]), "fr", "test"))
    assert all(p["lang"] == "fr" and p["predicted"] for p in predictions)


def test_pos_transfer_demo_function(ft, tmp_path):
    paths = {lang: {split: ft.files["pos"][(lang, split)] for split in ("train", "dev", "test")}
             for lang in ("en", "fr")}
    table = run_pos_transfer_demo(ft.corpus, ft.checkpoint, paths, tmp_path / "demo", source="en", target="fr",
                                  max_epochs=1, lr=1e-3, batch_size=16, max_train_examples=32, cpu_threads=1)
    assert set(table["table"]) == {"en within", "fr zero-shot", "fr within"}
    assert all(set(v) == {"acc", "f1"} for v in table["table"].values())
    assert table["within_target"]["train_languages"] == ["fr"] and table["zero_shot"]["train_languages"] == ["en"]

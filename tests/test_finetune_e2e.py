"""End-to-end fine-tuning on CPU: `xlint finetune` (real fairseq-train runs) and `xlint evaluate`.

Every task type trains for a few updates from a tiny pretrained adapter model; a
zero-shot run reports every target language and its model selection follows the
source dev set, which is constructed so that its best epoch is not the last one.
XNLI and QA train on learnable toy data and must beat chance clearly; their
evaluation must equal the metric of the predictions it writes.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import xlint.user_dir  # noqa: F401  (allow-lists fairseq's checkpoint globals)
from fairseq import checkpoint_utils

from xlint.cli.main import cli
from xlint.metrics.xtreme import accuracy, squad_scores
from xlint.user_dir.data.finetune_data import read_records

from test_finetune_support import finetune_cli, learnable, poison_dev, world

#: every test runs `xlint finetune`, i.e. fairseq-train
pytestmark = pytest.mark.slow

COMMON = ("--cpu", "--cpu-threads", "1", "--quiet")


@pytest.fixture(scope="module")
def ft(tmp_path_factory):
    return world(tmp_path_factory)


def finetune(data: Path, save_dir: Path, *args: str) -> dict:
    return finetune_cli(data, save_dir, *COMMON, *args)


def evaluate(checkpoint: Path, out: Path, *args: str) -> dict:
    result = CliRunner().invoke(cli, ["evaluate", str(checkpoint), "--out", str(out), "--cpu", "--quiet", *args])
    assert result.exit_code == 0, result.output[-4000:] + repr(result.exception)
    assert out.with_name(out.name + ".md").is_file()
    return json.loads(out.with_name(out.name + ".json").read_text(encoding="utf-8"))


def model_state(path: Path) -> dict:
    return checkpoint_utils.load_checkpoint_to_cpu(str(path))["model"]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


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
    best_epoch = len(source) - source[::-1].index(max(source))  # fairseq keeps the last of tied best scores
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


def read_predictions(path: Path) -> list:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def evaluate_with_predictions(checkpoint: Path, out: Path, *args: str) -> tuple:
    """`xlint evaluate --predictions`: (its scores, its predictions grouped by language)."""
    result = evaluate(checkpoint, out, "--predictions", *args)
    by_lang: dict = {}
    for record in read_predictions(out.with_name(out.name + ".predictions.jsonl")):
        by_lang.setdefault(record["lang"], []).append(record)
    return result, by_lang


def test_xnli_learns_a_learnable_task_with_a_separate_classifier_learning_rate(ft, tmp_path):
    data = learnable(ft)["nli"]
    results = finetune(data, tmp_path / "xnli", "--pretrained", str(ft.checkpoint), "--source", "en",
                       "--epochs", "10", "--lr", "2e-3", "--head-lr", "4e-3", "--batch-size", "16")
    assert results["selection"]["metric"] == "acc_en"
    scores = results["test"]["per_seed"]["1"]["scores"]
    assert set(scores) == {"en", "fr"}
    assert scores["en"]["acc"] >= 80, scores  # chance: 33.3 (balanced labels); fr is another vocabulary
    run_dir = tmp_path / "xnli" / "bs16-lr0.002-hlr0.004" / "seed1"
    groups = checkpoint_utils.load_checkpoint_to_cpu(str(run_dir / "checkpoint_last.pt"))[
        "last_optimizer_state"]["param_groups"]
    assert [g["lr_scale"] for g in groups] == [1.0, pytest.approx(2.0)]
    assert groups[1]["lr"] == pytest.approx(2 * groups[0]["lr"])

    # the evaluation's scores are the metric of its written predictions, which follow the test files
    result, predictions = evaluate_with_predictions(run_dir / "checkpoint_best.pt", tmp_path / "eval")
    assert result["scores"] == scores
    for lang in ("en", "fr"):
        records = read_records(str(data), lang, "test")
        assert [p["id"] for p in predictions[lang]] == [r["id"] for r in records]
        assert [p["gold"] for p in predictions[lang]] == [r["label"] for r in records]
        assert result["scores"][lang]["acc"] == accuracy([p["gold"] for p in predictions[lang]],
                                                         [p["predicted"] for p in predictions[lang]])


def test_extractive_qa_learns_a_learnable_task_over_several_windows(ft, tmp_path):
    data = learnable(ft)["qa"]
    results = finetune(data, tmp_path / "qa", "--pretrained", str(ft.checkpoint), "--source", "en",
                       "--epochs", "2", "--lr", "1e-3", "--batch-size", "16", "--max-length", "32")
    log = (tmp_path / "qa" / "bs16-lr0.001" / "seed1" / "train.log").read_text(encoding="utf-8")
    inputs = int(log.split("train: en 240 examples, ")[1].split()[0])
    assert inputs > 240  # some contexts need several windows
    scores = results["test"]["per_seed"]["1"]["scores"]
    assert set(scores) == {"en", "fr"} and all(set(s) == {"f1", "em"} for s in scores.values())
    records = read_records(str(data), "en", "test")
    first_word = squad_scores([[a["text"] for a in r["answers"]] for r in records],
                              [r["context"].split()[0] for r in records])
    assert scores["en"]["em"] >= 60 and scores["en"]["em"] >= first_word.exact_match + 40, (scores, first_word)
    assert scores["en"]["f1"] >= 60, scores

    checkpoint = Path(results["chosen"]["runs"][0]["checkpoint"])
    result, predictions = evaluate_with_predictions(checkpoint, tmp_path / "qa-eval")
    assert result["scores"] == scores
    for lang in ("en", "fr"):
        records = read_records(str(data), lang, "test")
        assert [p["id"] for p in predictions[lang]] == [r["id"] for r in records]
        assert [p["gold"] for p in predictions[lang]] == [[a["text"] for a in r["answers"]] for r in records]
        written = squad_scores([p["gold"] for p in predictions[lang]], [p["predicted"] for p in predictions[lang]])
        assert result["scores"][lang] == {"f1": written.f1, "em": written.exact_match}
    only_fr, fr_predictions = evaluate_with_predictions(checkpoint, tmp_path / "qa-eval-fr", "--languages", "fr")
    assert set(only_fr["scores"]) == {"fr"} and fr_predictions.keys() == {"fr"}
    assert only_fr["scores"]["fr"] == scores["fr"]

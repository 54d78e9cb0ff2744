"""Fine-tuning bookkeeping against what fairseq-train really did.

* the run summary (best epoch and dev score, hence the grid choice) is the validation that
  ``checkpoint_best.pt`` holds, over the run's whole log, resumed or not, and with tied
  scores (fairseq keeps the last of them);
* the learning-rate schedule's length is the number of updates fairseq-train runs, counted
  by the task that builds the batches (windows, few-shot examples, ``--max-tokens``,
  ``--update-freq``, ``--distributed-world-size``).
"""
from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import xlint.user_dir  # noqa: F401  (allow-lists fairseq's checkpoint globals)
from fairseq import checkpoint_utils

from xlint.cli.fairseq_logs import validation_history
from xlint.cli.finetune_plan import FinetuneSpec, plan_runs
from xlint.cli.main import cli
from xlint.user_dir.tasks.finetune_base import count_train_updates, parse_train_args

from test_finetune_support import finetune_cli, poison_dev, relabel_dev, world

COMMON = ("--cpu", "--cpu-threads", "1", "--quiet", "--no-evaluate")


@pytest.fixture(scope="module")
def ft(tmp_path_factory):
    return world(tmp_path_factory)


def finetune(data: Path, save_dir: Path, *args: str) -> dict:
    return finetune_cli(data, save_dir, *COMMON, *args)


def run_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text(encoding="utf-8"))


def model_state(path: Path) -> dict:
    return checkpoint_utils.load_checkpoint_to_cpu(str(path))["model"]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def last_best_epoch(scores: list) -> int:
    """The epoch (from 1) of the last maximum, as fairseq's checkpoint_best keeps it."""
    return len(scores) - scores[::-1].index(max(scores))


def log_line(epoch: int, updates: int, score: float) -> str:
    record = {"epoch": epoch, "valid_f1_en": str(score), "valid_num_updates": str(updates)}
    return "2026-01-01 00:00:00 | INFO | valid | " + json.dumps(record)


# --------------------------------------------------------------------------- the run summary


def test_validation_history_keeps_the_latest_attempt():
    interrupted = [log_line(1, 10, 50.0), log_line(2, 20, 60.0), log_line(3, 30, 70.0)]  # died before saving 30
    resumed = [log_line(3, 30, 71.0), log_line(4, 40, 65.0)]  # resumed from the checkpoint at update 20
    history = validation_history(interrupted + ["| INFO | fairseq_cli.train | begin training"] + resumed)
    assert [(r["epoch"], r["valid_f1_en"]) for r in history] == [(1, "50.0"), (2, "60.0"), (3, "71.0"), (4, "65.0")]
    restarted = validation_history(interrupted + [log_line(1, 5, 40.0)])  # restarted from scratch
    assert [(r["epoch"], r["valid_num_updates"]) for r in restarted] == [(1, "5")]


@pytest.mark.slow
def test_a_resumed_run_is_summarised_over_its_whole_history(ft, tmp_path):
    data = poison_dev(ft.converted["pos"], tmp_path / "poisoned", "en")
    save_dir = tmp_path / "resumed"
    args = ("--pretrained", str(ft.checkpoint), "--setting", "within", "--source", "en", "--epochs", "3",
            "--lr", "2e-3", "--batch-size", "8", "--metric", "acc")
    finetune(data, save_dir, *args, "--", "--max-epoch", "2")  # an attempt that stopped after epoch 2
    results = finetune(data, save_dir, *args)  # the same run again: it resumes and trains epoch 3
    run_dir = save_dir / "bs8-lr0.002" / "seed1"
    log = (run_dir / "train.log").read_text(encoding="utf-8")
    assert f"Loaded checkpoint {run_dir / 'checkpoint_last.pt'}" in log  # the second attempt resumed

    run = run_summary(run_dir)
    assert [int(e["epoch"]) for e in run["dev_by_epoch"]] == [1, 2, 3]
    source = [e["acc_en"] for e in run["dev_by_epoch"]]
    best_epoch = last_best_epoch(source)
    assert run["best_epoch"] == best_epoch != 3, source  # constructed: the resumed epoch is not the best
    assert run["best_dev"] == pytest.approx(max(source), abs=1e-3)
    assert results["chosen"]["dev"]["mean"] == run["best_dev"]
    best = model_state(run_dir / "checkpoint_best.pt")
    assert same_weights(best, model_state(run_dir / f"checkpoint{best_epoch}.pt"))
    assert not same_weights(best, model_state(run_dir / "checkpoint3.pt"))


@pytest.mark.slow
def test_a_run_stopped_in_the_middle_of_an_epoch_resumes(ft, tmp_path):
    """The checkpoint of a mid-epoch stop holds the train meters (a PredictionsMeter among them)."""
    save_dir = tmp_path / "mid-epoch"
    args = ("--pretrained", str(ft.checkpoint), "--setting", "within", "--source", "en", "--epochs", "2",
            "--lr", "2e-3", "--batch-size", "8", "--metric", "acc")
    finetune(ft.converted["pos"], save_dir, *args, "--", "--max-update", "5")  # 9 updates an epoch
    finetune(ft.converted["pos"], save_dir, *args)
    run_dir = save_dir / "bs8-lr0.002" / "seed1"
    log = (run_dir / "train.log").read_text(encoding="utf-8")
    assert f"Loaded checkpoint {run_dir / 'checkpoint_last.pt'}" in log
    assert [int(e["epoch"]) for e in run_summary(run_dir)["dev_by_epoch"]][-2:] == [1, 2]


@pytest.mark.slow
def test_tied_best_scores_select_the_last_as_fairseq_does(ft, tmp_path):
    # no entity in the fr dev set: span F1 is 0 whatever the model predicts, a tie every epoch
    data = relabel_dev(ft.converted["ner"], tmp_path / "no-entities", "fr", lambda tags: ["O"] * len(tags))
    finetune(data, tmp_path / "tied", "--pretrained", str(ft.checkpoint), "--setting", "within", "--source", "fr",
             "--epochs", "2", "--lr", "1e-3", "--batch-size", "16")
    run_dir = tmp_path / "tied" / "bs16-lr0.001" / "seed1"
    run = run_summary(run_dir)
    assert [e["f1_fr"] for e in run["dev_by_epoch"]] == [0.0, 0.0]
    assert run["best_epoch"] == 2 and run["best_dev"] == 0.0
    best = model_state(run_dir / "checkpoint_best.pt")
    assert same_weights(best, model_state(run_dir / "checkpoint2.pt"))
    assert not same_weights(best, model_state(run_dir / "checkpoint1.pt"))


# --------------------------------------------------------------------------- the schedule's length


@pytest.mark.parametrize("name,args", [
    # windows of 8 subwords 2 apart, few-shot examples, two batches an update
    ("pos", ("--setting", "few-shot", "--few-shot", "4", "--max-length", "10",
             "--", "--window-stride", "2", "--update-freq", "2")),
    # QA windows 8 subwords apart, batches of at most 200 tokens, two batches an update
    ("qa", ("--max-length", "48", "--", "--doc-stride", "8", "--max-tokens", "200", "--update-freq", "2")),
])
@pytest.mark.slow
def test_the_schedule_lasts_exactly_the_updates_fairseq_train_makes(ft, tmp_path, name, args):
    results = finetune(ft.converted[name], tmp_path / name, "--pretrained", str(ft.checkpoint), "--source", "en",
                       "--epochs", "2", "--lr", "1e-3", "--batch-size", "8", *args)
    run_dir = tmp_path / name / "bs8-lr0.001" / "seed1"
    command = shlex.split(run_summary(run_dir)["command"])
    planned = int(command[command.index("--total-num-update") + 1])
    done = checkpoint_utils.load_checkpoint_to_cpu(str(run_dir / "checkpoint_last.pt"))["optimizer_history"][-1]
    assert done["num_updates"] == planned and results["train_updates"] == {"8": planned}
    assert int(command[command.index("--warmup-updates") + 1]) == round(0.1 * planned)


def test_the_count_follows_the_world_size_and_a_per_epoch_update_freq(ft, tmp_path):
    runs, _ = plan_runs(FinetuneSpec(data=ft.converted["pos"], pretrained=ft.checkpoint, save_dir=tmp_path,
                                     source="en", batch_sizes=[8], lrs=[1e-3], cpu=True, dry_run=True))
    argv = runs[0].command[1:]
    batches = count_train_updates(parse_train_args([*argv, "--max-epoch", "1"]))
    assert batches == math.ceil((64 + 1) / 8)  # en's 65 training sentences fit in one window each
    sharded = count_train_updates(parse_train_args([*argv, "--max-epoch", "3", "--distributed-world-size", "2",
                                                    "--update-freq", "3,1"]))
    per_worker = math.ceil(batches / 2)
    assert sharded == math.ceil(per_worker / 3) + per_worker + per_worker
    capped = count_train_updates(parse_train_args([*argv, "--max-epoch", "3", "--max-update", "10"]))
    assert capped == 10


def test_arguments_fairseq_train_would_refuse_are_one_line_errors(ft, tmp_path):
    for extra, message in ((("--foo", "1"), "unrecognized arguments: --foo 1"),
                           (("--update-freq", "x"), "argument --update-freq: invalid")):
        result = CliRunner().invoke(cli, ["finetune", str(ft.converted["pos"]), "--pretrained", str(ft.checkpoint),
                                          "--save-dir", str(tmp_path), "--source", "en", "--dry-run", "--", *extra])
        assert result.exit_code != 0
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], result.output


def test_the_bilingual_setting_trains_on_both_languages_and_selects_on_their_average(ft, tmp_path):
    runs, info = plan_runs(FinetuneSpec(data=ft.converted["pos"], pretrained=ft.checkpoint, save_dir=tmp_path,
                                        source="en", setting="bilingual", targets=["fr"], batch_sizes=[8],
                                        lrs=[1e-3], cpu=True, dry_run=True))
    argv = runs[0].command
    assert argv[argv.index("--train-languages") + 1] == "en,fr"
    assert argv[argv.index("--valid-languages") + 1] == "en,fr"
    assert argv[argv.index("--best-checkpoint-metric") + 1] == "f1_avg"
    assert info["train_languages"] == ["en", "fr"] and "bilingual" in info["selection"]["rule"]
    # the count of updates covers both training sets
    mono, _ = plan_runs(FinetuneSpec(data=ft.converted["pos"], pretrained=ft.checkpoint, save_dir=tmp_path / "m",
                                     source="en", batch_sizes=[8], lrs=[1e-3], cpu=True, dry_run=True))
    def total(command):
        return int(command[command.index("--total-num-update") + 1])

    assert total(argv) > total(mono[0].command)


@pytest.mark.parametrize("args,message", [
    (("--setting", "bilingual"), "name them"),
    (("--setting", "bilingual", "--targets", "fr", "--select", "target"), "select on source or average"),
])
def test_the_bilingual_setting_refuses_what_it_cannot_do(ft, tmp_path, args, message):
    result = CliRunner().invoke(cli, ["finetune", str(ft.converted["pos"]), "--pretrained", str(ft.checkpoint),
                                      "--save-dir", str(tmp_path / "out"), "--source", "en", "--cpu", "--dry-run",
                                      *args])
    assert result.exit_code != 0 and message in result.output, result.output
    assert not (tmp_path / "out").exists()

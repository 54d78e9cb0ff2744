"""Training curves of fine-tuning (Guo et al. 2023, Figs. 1, 2, 4-6): ``--curve-interval``.

Fast: the row of one point against the formula computed by hand, the bookkeeping of the loss
sums and of due points, the named controller states of ``xlint_adam`` (and the old key), the
option refusals.  Slow (real fairseq-train through ``xlint finetune`` on the synthetic world of
tests/test_finetune_support.py): a point at an epoch end equals fairseq's own validation of the
same model (whole dev set), its training loss is the logged per-update losses' mean in nats,
every layer's CKA is 1 at update 0 and below 1 later, the subset holds K examples per language,
and a resumed run writes the same file as an uninterrupted one.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import click
import pytest

from xlint.user_dir.tasks.training_curves import TrainingCurves, curve_point

COMMON = ("--cpu", "--cpu-threads", "1", "--quiet", "--no-evaluate", "--batch-size", "16", "--lr", "1e-3",
          "--max-train-examples", "32")
#: 2 updates per epoch, a log line per update
FAIRSEQ = ("--log-interval", "1", "--total-num-update", "6", "--warmup-updates", "1")


def test_curve_point_is_source_minus_mean_target_by_hand():
    scores = {"en": {"acc": 90.0, "f1": 1.0}, "tr": {"acc": 50.0}, "grc": {"acc": 40.0},
              "avg": {"acc": 60.0}, "tgt_avg": {"acc": 45.0}}
    row = curve_point(10, 0.5, "acc", {k: v for k, v in scores.items() if k not in ("avg", "tgt_avg")}, ["en"],
                      {0: 0.9, 1: 0.8})
    assert curve_point(10, 0.5, "acc", scores, ["en"])["target"] != row["target"]  # the caller drops averages
    assert row["source"] == 90.0 and row["target"] == pytest.approx((50 + 40) / 2)
    assert row["gap"] == pytest.approx(90 - 45)
    assert row["scores"] == {"en": 90.0, "tr": 50.0, "grc": 40.0}
    assert row["cka"] == {"1": 0.9, "2": 0.8} and row["update"] == 10 and row["train_loss"] == 0.5
    two_sources = curve_point(0, None, "acc", {"en": {"acc": 80.0}, "de": {"acc": 70.0}, "tr": {"acc": 30.0}},
                              ["en", "de"])
    assert two_sources["source"] == 75.0 and two_sources["gap"] == 45.0 and "cka" not in two_sources
    no_target = curve_point(0, None, "acc", {"en": {"acc": 80.0}}, ["en"])
    assert no_target["target"] is None and no_target["gap"] is None


def _config(**overrides):
    values = dict(curve_interval=3, curve_cka=False, curve_file="", curve_save_dir="/nonexistent")
    values.update(overrides)
    return SimpleNamespace(**values)


def test_loss_sums_are_the_mean_of_per_update_losses_and_points_are_due_once():
    curves = TrainingCurves(_config())
    assert curves.path == "/nonexistent/curves.jsonl"
    assert curves.mean_loss() is None
    updates = [[{"loss": 6.0, "sample_size": 3}, {"loss": 2.0, "sample_size": 1}],  # 8/4 = 2
               [{"loss": 1.0, "sample_size": 2}],  # 0.5
               [{"loss": 5.0, "sample_size": 0}]]  # nothing
    for logs in updates:
        curves.observe(logs)
    assert curves.mean_loss() == pytest.approx((2.0 + 0.5) / 2)
    state = curves.state_dict()
    again = TrainingCurves(_config())
    again.load_state_dict(state)
    assert again.mean_loss() == curves.mean_loss()
    assert [u for u in range(10) if curves.due(u)] == [0, 3, 6, 9]
    curves.record({"update": 3}, is_writer=False)
    assert not curves.due(3) and curves.due(6) and curves.mean_loss() is None
    assert not TrainingCurves(_config(curve_interval=0)).due(0)


def test_xlint_adam_saves_named_controller_states_and_reads_the_old_key():
    import torch
    from omegaconf import OmegaConf

    from xlint.user_dir.optim.adam_with_head_lr import CONTROLLER_STATE_KEY, XlintAdam, controller_state_key

    class Counter:
        def __init__(self, value=0):
            self.value = value

        def state_dict(self):
            return {"value": self.value}

        def load_state_dict(self, state):
            self.value = state["value"]

    def adam():
        cfg = OmegaConf.create({"lr": [1e-3], "adam_betas": "(0.9, 0.999)", "adam_eps": 1e-8, "weight_decay": 0.0,
                                "use_old_adam": False, "fp16_adam_stats": False, "tpu": False, "head_lr": -1.0})
        return XlintAdam(cfg, [torch.nn.Parameter(torch.zeros(2))])

    first = adam()
    first.attach_controller(Counter(3))
    first.attach_controller(Counter(7), "curves")
    state = first.state_dict()
    assert state[CONTROLLER_STATE_KEY] == {"value": 3} and state[controller_state_key("curves")] == {"value": 7}
    second = adam()
    second.load_state_dict(state)  # before the controllers attach: kept until they do
    late, curves = Counter(), Counter()
    second.attach_controller(curves, "curves")
    assert second.state_dict()[CONTROLLER_STATE_KEY] == {"value": 3}  # a pending state is saved again
    second.attach_controller(late)
    assert (late.value, curves.value) == (3, 7)


def test_curve_options_need_an_interval(tmp_path):
    from xlint.cli.finetune_plan import FinetuneSpec, curve_options

    spec = FinetuneSpec(data=tmp_path, pretrained=tmp_path / "p.pt", save_dir=tmp_path, source="en")
    assert curve_options(spec, tmp_path / "p.pt") == {}
    for field, value, hint in (("curve_cka", True, "--curve-cka"), ("curve_examples", 5, "--curve-examples")):
        with pytest.raises(click.BadParameter) as error:
            curve_options(FinetuneSpec(data=tmp_path, pretrained=tmp_path, save_dir=tmp_path, source="en",
                                       **{field: value}), tmp_path)
        assert hint in error.value.format_message() or error.value.param_hint == hint
    spec.curve_interval, spec.curve_cka = 100, True
    assert curve_options(spec, tmp_path / "p.pt") == {
        "curve_interval": 100, "curve_examples": None, "curve_cka": True,
        "slow_fast_reference": str(tmp_path / "p.pt")}


# --------------------------------------------------------------------------- real runs


@pytest.fixture(scope="module")
def ft(tmp_path_factory):
    from test_finetune_support import world

    return world(tmp_path_factory)


def _rows(run_dir: Path) -> list:
    return [json.loads(line) for line in (run_dir / "curves.jsonl").read_text(encoding="utf-8").splitlines()]


def _records(run_dir: Path, tag: str) -> list:
    from xlint.cli.fairseq_logs import parse_log_records

    return parse_log_records((run_dir / "train.log").read_text(encoding="utf-8").splitlines(), tag)


@pytest.mark.slow
def test_curves_match_validation_and_the_logged_loss_and_resume_writes_the_same_file(ft, tmp_path):
    from test_finetune_support import finetune_cli

    pos = ft.converted["pos"]
    args = ("--pretrained", str(ft.checkpoint), "--source", "en", *COMMON, "--curve-interval", "2",
            "--curve-examples", "0", "--curve-cka")
    whole = tmp_path / "whole"
    finetune_cli(pos, whole, *args, "--epochs", "3", "--", *FAIRSEQ)
    run = whole / "bs16-lr0.001" / "seed1"
    rows = _rows(run)
    assert [row["update"] for row in rows] == [0, 2, 4]  # update 6 is the end: no step after it
    assert rows[0]["train_loss"] is None and rows[0]["metric"] == "acc"
    # the point of an epoch end is fairseq's own validation of that model (whole dev set, same metric)
    valid = {int(r["valid_num_updates"]): r for r in _records(run, "valid")}
    for row in rows[1:]:
        for lang, value in row["scores"].items():
            # fairseq rounds logged values to 4 decimals
            assert value == pytest.approx(float(valid[row["update"]][f"valid_acc_{lang}"]), abs=1e-3), (row, lang)
        assert len(row["scores"]) >= 2 and "avg" not in row["scores"]
        assert row["gap"] == pytest.approx(row["source"] - row["target"])
    # the training loss: the mean of the updates' losses since the previous point, in nats
    bits = {int(r["num_updates"]): float(r["loss"]) for r in _records(run, "train_inner")}
    assert rows[1]["train_loss"] == pytest.approx((bits[1] + bits[2]) / 2 * math.log(2), rel=1e-3)
    assert rows[2]["train_loss"] == pytest.approx((bits[3] + bits[4]) / 2 * math.log(2), rel=1e-3)
    # CKA to the pretrained model: 1 before the first update, then below 1 in some layer
    assert all(value == pytest.approx(1.0, abs=1e-9) for value in rows[0]["cka"].values())
    assert len(rows[0]["cka"]) >= 2 and min(rows[2]["cka"].values()) < 1 - 1e-6

    # stopped after epoch 2 (update 4, whose point is not measured yet), then resumed: the same file
    resumed = tmp_path / "resumed"
    finetune_cli(pos, resumed, *args, "--epochs", "2", "--", *FAIRSEQ)
    second = resumed / "bs16-lr0.001" / "seed1"
    assert [row["update"] for row in _rows(second)] == [0, 2]
    with (second / "curves.jsonl").open("a", encoding="utf-8") as stale:  # a row measured after the checkpoint
        stale.write(json.dumps({"update": 4, "stale": True}) + "\n")
    finetune_cli(pos, resumed, *args, "--epochs", "3", "--", *FAIRSEQ)
    again = _rows(second)
    assert [row["update"] for row in again] == [0, 2, 4] and not any("stale" in row for row in again)
    # the same batches after the resumption (tasks seed the batch order independently of the epoch), so the
    # same parameters bit for bit
    import torch

    final = [torch.load(d / "checkpoint_last.pt", weights_only=False)["model"] for d in (run, second)]
    assert all(torch.equal(final[0][key], final[1][key]) for key in final[0])
    for a, b in zip(rows, again):
        assert a["scores"] == pytest.approx(b["scores"]) and a["cka"] == pytest.approx(b["cka"])
        assert (a["train_loss"] is None) == (b["train_loss"] is None)
        if a["train_loss"] is not None:
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)


@pytest.mark.slow
def test_curve_subset_is_fixed_and_k_examples_per_language(ft, tmp_path):
    from test_finetune_support import finetune_cli

    pos = ft.converted["pos"]
    save = tmp_path / "subset"
    finetune_cli(pos, save, "--pretrained", str(ft.checkpoint), "--source", "en", *COMMON, "--epochs", "1",
                 "--curve-interval", "1", "--curve-examples", "3", "--", *FAIRSEQ)
    run = save / "bs16-lr0.001" / "seed1"
    log = (run / "train.log").read_text(encoding="utf-8")
    subset = re.search(r"curve: (.*) examples, \d+ model inputs", log)
    assert subset is not None
    counts = dict(item.split() for item in subset.group(1).split(", "))
    assert len(counts) >= 2 and set(counts.values()) == {"3"}
    rows = _rows(run)
    assert [row["update"] for row in rows] == [0, 1]
    assert all(row["gap"] is not None for row in rows)

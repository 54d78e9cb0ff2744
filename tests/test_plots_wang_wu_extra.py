"""``xlint plot mono-vs-multi`` (Wang et al. 2020, Fig. 1) and ``xlint plot mlm-loss`` (Fig. 4 right):
the numbers they plot, from hand-written Table 2 results and fairseq JSON logs, and the figures drawn."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, Sequence

import click
import pytest
from click.testing import CliRunner

from xlint.cli.plots_mlm_loss import (
    LossRun,
    load_loss_run,
    logged_warmup,
    loss_after_warmup,
    mlm_loss_plot,
    train_history,
)
from xlint.cli.plots_mono_vs_multi import mono_vs_multi_bars, mono_vs_multi_plot


def write_results(path: Path, lang: str, scores: Dict[str, float], metric: str = "f1") -> None:
    """A results.json as `xlint finetune` writes it (the part Table 2 reads): test scores per seed."""
    path.mkdir(parents=True)
    per_seed = {seed: {"scores": {lang: {metric: value}}} for seed, value in scores.items()}
    (path / "results.json").write_text(json.dumps({"test": {"per_seed": per_seed}}), encoding="utf-8")


@pytest.fixture
def table2_runs(tmp_path):
    runs = tmp_path / "runs"
    write_results(runs / "fr/mono/ner-within", "fr", {"1": 80.0, "2": 82.0})
    write_results(runs / "fr/jointpair/ner-within", "fr", {"1": 70.0})
    write_results(runs / "ar/jointpair/ner-within", "ar", {"1": 60.0, "2": 64.0, "3": 68.0})
    write_results(runs / "fr/jointpair/ner-zero-shot", "fr", {"1": 10.0})  # zero-shot: not Fig. 1's
    write_results(runs / "fr/mono/pos-within", "fr", {"1": 90.0})
    return runs


def test_mono_vs_multi_bars_are_table2_within_language_cells(table2_runs):
    data = mono_vs_multi_bars([table2_runs], "ner")
    assert (data.task, data.metric) == ("ner", "f1")
    assert data.languages == ["ar", "fr"]  # Table 2's column order; ru, hi, sw, te have no run
    mono, joint = data.series
    assert (mono.label, joint.label) == ("Mono", "JointPair")
    assert mono.means == [None, 81.0] and mono.stds[0] is None and mono.stds[1] == pytest.approx(math.sqrt(2))
    assert joint.means == [pytest.approx(64.0), 70.0]
    assert joint.stds == [pytest.approx(4.0), None]  # sample std of 60, 64, 68; one seed: none
    pos = mono_vs_multi_bars([table2_runs], "pos")
    assert pos.languages == ["fr"] and pos.series[0].means == [90.0] and pos.series[1].means == [None]


def test_mono_vs_multi_published_bars_are_the_papers_table2(table2_runs):
    data = mono_vs_multi_bars([table2_runs], "ner", with_published=True)
    labels = [series.label for series in data.series]
    assert labels == ["Mono", "JointPair", "Mono (paper)", "JointPair (paper)", "XLM (paper)"]
    # Wang et al. (2020) Table 2, within-language NER: Mono ar 89.2 fr 88.0, JointPair 86.9 86.5, XLM 89.4 87.5
    assert [series.means for series in data.series[2:]] == [[89.2, 88.0], [86.9, 86.5], [89.4, 87.5]]
    assert all(series.published for series in data.series[2:]) and not data.series[0].published


def test_mono_vs_multi_refuses_runs_without_within_language_results(tmp_path):
    write_results(tmp_path / "fr/jointpair/ner-zero-shot", "fr", {"1": 10.0})
    with pytest.raises(click.BadParameter, match="no finished ner within-language run"):
        mono_vs_multi_bars([tmp_path], "ner")
    (tmp_path / "fr/mono/ner-within").mkdir(parents=True)
    (tmp_path / "fr/mono/ner-within/results.json").write_text('{"test": {}}', encoding="utf-8")  # no test scores
    with pytest.raises(click.BadParameter, match="mono/ner-within/results.json"):
        mono_vs_multi_bars([tmp_path], "ner")


def test_mono_vs_multi_command_draws_png_and_pdf(table2_runs, tmp_path):
    result = CliRunner().invoke(mono_vs_multi_plot, [str(table2_runs), "--published", "--out",
                                                     str(tmp_path / "fig1.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "fig1.png").stat().st_size > 0 and (tmp_path / "fig1.pdf").stat().st_size > 0
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(mono_vs_multi_plot, [str(empty), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "RUN_DIRS" in result.output and not (tmp_path / "x.png").exists()


# --------------------------------------------------------------------------- mlm-loss


def log_lines(points: Sequence[tuple], warmup: int = 2, key: str = "loss") -> list:
    """fairseq's log: the printed configuration, then one train_inner JSON record per (update, loss)."""
    lines = ["2026-01-01 | INFO | fairseq_cli.train | {'_name': None, 'lr_scheduler': {'_name': 'inverse_sqrt', "
             f"'warmup_updates': {warmup}, 'warmup_init_lr': 1e-07}}}}"]
    for update, loss in points:
        record = {"epoch": 1, key: f"{loss}", "num_updates": f"{update}", "lr": "0.001"}
        lines.append(f"2026-01-01 | INFO | train_inner | {json.dumps(record)}")
    lines.append('2026-01-01 | INFO | valid | {"epoch": 1, "valid_loss": "9", "valid_num_updates": "9"}')
    return lines


def write_log(folder: Path, lines: Sequence[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_train_history_drops_what_a_restart_superseded_and_reads_the_warmup():
    first = log_lines([(1, 9.0), (2, 8.0), (3, 7.0), (4, 6.0)], warmup=4000)
    resumed = log_lines([(3, 5.0), (4, 4.0), (5, 3.0)], warmup=2)  # resumed from the checkpoint at update 2
    assert train_history(first + resumed) == [(1, 9.0), (2, 8.0), (3, 5.0), (4, 4.0), (5, 3.0)]
    assert logged_warmup(first + resumed) == 2 and logged_warmup(["no config"]) is None
    assert train_history(log_lines([(1, 2.0)], key="loss_fr"), key="loss_fr") == [(1, 2.0)]


def test_loss_after_warmup_is_the_update_weighted_mean_after_n():
    # records every 2 updates, then one covering 4 updates: each averages the updates since the previous one
    run = LossRun("x", Path("x"), [(2, 10.0), (4, 8.0), (6, 6.0), (10, 3.0)], warmup=4)
    window = loss_after_warmup(run)  # after the logged warm-up (4): records 6 (weight 2) and 10 (weight 4)
    assert window.after == 4 and window.points == [(6, 6.0), (10, 3.0)]
    assert window.mean == pytest.approx((2 * 6.0 + 4 * 3.0) / 6)
    assert loss_after_warmup(run, after=0).mean == pytest.approx((2 * 10 + 2 * 8 + 2 * 6 + 4 * 3) / 10)
    assert loss_after_warmup(run, after=2, until=6).mean == pytest.approx(7.0)
    with pytest.raises(click.BadParameter, match="no train_inner record after update 10"):
        loss_after_warmup(run, after=10)
    with pytest.raises(click.BadParameter, match="give --after-update"):
        loss_after_warmup(LossRun("y", Path("y"), [(1, 1.0)], warmup=None))


def test_load_loss_run_refuses_a_log_without_train_inner_records(tmp_path):
    write_log(tmp_path / "simple", ["epoch 001:  10 / 20 loss=5.1, ppl=34"])
    with pytest.raises(click.BadParameter, match="--log-format json"):
        load_loss_run("simple", tmp_path / "simple")
    with pytest.raises(click.BadParameter, match="no train.log"):
        load_loss_run("none", tmp_path)


def test_mlm_loss_command_prints_the_averages_and_draws_both_panels(tmp_path):
    joint = write_log(tmp_path / "jointpair", log_lines([(1, 9.0), (2, 8.0), (3, 6.0), (4, 5.0)]))
    meta = write_log(tmp_path / "meta-adapt", log_lines([(1, 9.0), (2, 7.0), (3, 5.0), (4, 3.0)]))
    out = tmp_path / "fig4c"
    result = CliRunner().invoke(mlm_loss_plot, [f"JointPair={joint}", f"+ meta adapt={meta}", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "JointPair: average loss after update 2: 5.5000 (2 records)" in result.output
    assert "+ meta adapt: average loss after update 2: 4.0000" in result.output
    assert out.with_suffix(".png").stat().st_size > 0 and out.with_suffix(".pdf").stat().st_size > 0
    result = CliRunner().invoke(mlm_loss_plot, [str(joint), "--after-update", "0", "--out", str(out)])
    assert result.exit_code == 0 and "jointpair: average loss after update 0: 7.0000" in result.output
    for args, message in (([f"a={joint}", f"a={meta}"], "label 'a' given twice"),
                          ([f"a={tmp_path / 'missing'}"], "does not exist"),
                          ([str(joint), "--after-update", "3", "--until-update", "3"], "is not after")):
        result = CliRunner().invoke(mlm_loss_plot, [*args, "--out", str(tmp_path / "bad")])
        assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "bad.png").exists()

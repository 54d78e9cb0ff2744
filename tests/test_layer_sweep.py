"""Guo et al. (2023) Fig. 3's layer sweep: reading it (cli/layer_sweep.py), deriving the slow-fast sets,
``xlint fsf derive-sets`` / ``xlint fsf layers`` and ``xlint plot guo-layers`` (through CliRunner on the
command objects: the lead registers them in cli/main.py and cli/commands_plot.py).

The results.json fixtures are test_report.py's writer (the format ``xlint finetune`` writes); every
expected score is computed here by hand from the per-seed numbers."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import pytest
from click.testing import CliRunner

from test_report import write_results

from xlint.analysis.slow_fast_sets import parse_set_spec
from xlint.cli.commands_fsf import fsf
from xlint.cli.layer_sweep import (
    compress_layers,
    derive_sets,
    read_layer_sweep,
    sweep_from_scores,
)
from xlint.cli.plots_layer_sweep import guo_layers_plot


def write_run(sweep: Path, method: str, target: Dict[int, float], task: str = "ner", source: float = 90.0) -> Path:
    """A zero-shot NER run whose per-seed target (fr, de) F1s average to ``target[seed]``."""
    scores = {seed: {"en": {"f1": source}, "fr": {"f1": value - 1.0}, "de": {"f1": value + 1.0}}
              for seed, value in target.items()}
    return write_results(sweep / method / f"{task}-zero-shot" / "results.json", "ner", "zero-shot", "en", scores)


def write_sweep(root: Path, layers: int = 4, skip: tuple = (), df: Optional[Dict[int, float]] = None) -> Path:
    """DF at 60 (seeds 1, 2: 59 and 61); re-init of layers 1..L-1 drops, freezing layer 1 helps."""
    sweep = root / "sweep"
    write_run(sweep, "df", df if df is not None else {1: 59.0, 2: 61.0})
    for k in range(1, layers + 1):
        if ("freeze", k) not in skip:
            write_run(sweep, f"freeze-layer-{k}", {1: 62.0 if k == 1 else 58.0, 2: 64.0 if k == 1 else 58.0})
        if ("reinit", k) not in skip:
            write_run(sweep, f"reinit-layer-{k}", {1: 50.0 + k, 2: 52.0 + k} if k < layers else {1: 60.5, 2: 60.5})
    return sweep


# --------------------------------------------------------------------------- reading


def test_read_layer_sweep_means_seeds_of_the_target_average(tmp_path):
    sweep = read_layer_sweep(write_sweep(tmp_path), "ner")
    assert sweep.metric == "f1"
    assert sweep.baseline == pytest.approx(60.0)
    assert sweep.num_layers == 4
    assert sweep.reinit == pytest.approx({1: 52.0, 2: 53.0, 3: 54.0, 4: 60.5})
    assert sweep.freeze == pytest.approx({1: 63.0, 2: 58.0, 3: 58.0, 4: 58.0})
    assert sweep.missing == []


def test_read_layer_sweep_lists_missing_and_unreadable_runs(tmp_path):
    sweep_dir = write_sweep(tmp_path, skip=(("freeze", 3),))
    (sweep_dir / "freeze-layer-3").mkdir()  # a started run: its folder but no results
    (sweep_dir / "reinit-layer-2" / "ner-zero-shot" / "results.json").write_text("{torn", encoding="utf-8")
    write_results(sweep_dir / "reinit-layer-4" / "ner-zero-shot" / "results.json", "ner", "zero-shot", "en",
                  {1: {"en": {"f1": 1.0}, "fr": {"f1": 2.0}}}, evaluate=False)
    sweep = read_layer_sweep(sweep_dir, "ner")
    assert sorted(sweep.freeze) == [1, 2, 4] and sorted(sweep.reinit) == [1, 3]
    # in layer order, freeze before re-init
    assert sweep.missing[0].startswith("reinit-layer-2/ner-zero-shot/results.json: unreadable")
    assert sweep.missing[1] == "freeze-layer-3/ner-zero-shot/results.json: missing"
    assert sweep.missing[2] == "reinit-layer-4/ner-zero-shot/results.json: no test results (run without --no-evaluate)"
    assert len(sweep.missing) == 3


def test_read_layer_sweep_metric_and_other_tasks(tmp_path):
    sweep_dir = tmp_path / "sweep"
    write_run(sweep_dir, "df", {1: 60.0}, task="pos-like")
    write_run(sweep_dir, "freeze-layer-1", {1: 61.0}, task="pos-like")
    sweep = read_layer_sweep(sweep_dir, "pos-like")  # not a Guo dataset: the runs' first metric (NER: f1)
    assert sweep.metric == "f1" and sweep.baseline == pytest.approx(60.0)
    assert sweep.missing == ["reinit-layer-1/pos-like-zero-shot/results.json: missing"]
    other = read_layer_sweep(sweep_dir, "pos-like", metric="recall")  # written as 50.0 by the fixture writer
    assert other.baseline == pytest.approx(50.0)
    wrong = read_layer_sweep(sweep_dir, "pos-like", metric="acc")
    assert wrong.baseline is None and "no acc for tgt_avg" in wrong.missing[0]


def test_read_layer_sweep_of_nothing(tmp_path):
    empty = read_layer_sweep(tmp_path, "ner")
    assert empty.empty and empty.num_layers == 0
    assert empty.missing == ["df/ner-zero-shot/results.json: missing"]
    with pytest.raises(FileNotFoundError):
        read_layer_sweep(tmp_path / "absent", "ner")


# --------------------------------------------------------------------------- deriving the sets


def test_compress_layers():
    assert compress_layers([5, 1, 2, 3, 8, 7, 3], "all") == "1-3:all,5:all,7-8:all"
    assert compress_layers([4], "ffn") == "4:ffn"
    assert compress_layers([], "attn") == "none"


def paper_like(layers: int = 12) -> Dict[str, Dict[int, float]]:
    """Fig. 3's shape: re-init of layers 1-10 hurts (1-4 most), 11-12 do not; freezing 1-4 helps."""
    return {"reinit": {k: (40.0 if k <= 4 else 48.0) if k <= 10 else 49.8 for k in range(1, layers + 1)},
            "freeze": {k: 51.0 if k <= 4 else 49.0 for k in range(1, layers + 1)}}


def test_derive_sets_reads_the_papers_sets_off_a_paper_like_sweep():
    derived = derive_sets(sweep_from_scores("acc", 50.0, paper_like()), reinit_drop=1.0, freeze_gain=0.0)
    assert derived.options() == "--fsf-s1 1-10:all --fsf-s2 1-4:ffn --fsf-v1 11-12:all --fsf-v2 11-12:attn"
    assert derived.warnings == []
    for spec in derived.specs.values():
        parse_set_spec(spec, 12)  # valid set specs


def test_derive_sets_thresholds_are_strict():
    scores = {"reinit": {1: 49.0, 2: 48.9, 3: 50.0}, "freeze": {1: 50.5, 2: 50.4, 3: 51.0}}
    derived = derive_sets(sweep_from_scores("f1", 50.0, scores), reinit_drop=1.0, freeze_gain=0.4)
    # layer 1 drops exactly 1.0 (not more): not S^I; layer 2 drops 1.1; layer 3's freeze gain is outside S^I
    assert derived.s1_layers == [2] and derived.s2_layers == [] and derived.v_layers == [3]
    assert any("freezing layers 1, 3 helps" in w for w in derived.warnings)
    assert any("S^II is none" in w for w in derived.warnings)
    assert any("layers 1 lie below the highest S^I layer" in w for w in derived.warnings)


def test_derive_sets_when_no_layer_qualifies_says_so():
    scores = {"reinit": {1: 50.0, 2: 51.0}, "freeze": {1: 52.0, 2: 49.0}}
    derived = derive_sets(sweep_from_scores("f1", 50.0, scores), reinit_drop=1.0, freeze_gain=0.0)
    assert derived.options() == "--fsf-s1 none --fsf-s2 none --fsf-v1 none --fsf-v2 none"
    assert len(derived.warnings) == 1 and "S^I is empty" in derived.warnings[0]
    assert "plain fine-tuning" in derived.warnings[0]


def test_derive_sets_top_layer_in_s1_leaves_v_empty():
    scores = {"reinit": {1: 40.0, 2: 45.0}, "freeze": {1: 51.0, 2: 49.0}}
    derived = derive_sets(sweep_from_scores("f1", 50.0, scores), reinit_drop=1.0, freeze_gain=0.0)
    assert derived.options() == "--fsf-s1 1-2:all --fsf-s2 1:ffn --fsf-v1 none --fsf-v2 none"
    assert any("V^I and V^II are none" in w for w in derived.warnings)


def test_derive_sets_unscored_layers_do_not_qualify():
    sweep = sweep_from_scores("f1", 50.0, {"reinit": {1: 40.0, 3: 49.9}, "freeze": {1: 55.0}}, num_layers=3)
    derived = derive_sets(sweep, reinit_drop=1.0, freeze_gain=0.0)
    assert derived.s1_layers == [1] and derived.s2_layers == [1] and derived.v_layers == [2, 3]
    assert "layers 2 have no reinit score" in derived.warnings[1]
    assert "layers 2, 3 have no freeze score" in derived.warnings[0]


def test_derive_sets_needs_df():
    with pytest.raises(ValueError, match="no DF score"):
        derive_sets(sweep_from_scores("f1", None, paper_like()), 1.0, 0.0)


# --------------------------------------------------------------------------- commands


def test_fsf_derive_sets_prints_the_table_then_one_options_line(tmp_path):
    sweep_dir = write_sweep(tmp_path, skip=(("freeze", 4),))
    result = CliRunner().invoke(fsf, ["derive-sets", str(sweep_dir), "--task", "ner"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    # re-init drops 8, 7, 6 points on layers 1-3 (> 1.0), layer 4 gains: S^I 1-3, V 4; freezing helps layer 1 only
    assert lines[-1] == "--fsf-s1 1-3:all --fsf-s2 1:ffn --fsf-v1 4:all --fsf-v2 4:attn"
    assert lines[0] == "DF (f1, target average): 60.00"
    assert "| 1 | 63.00 | +3.00 | 52.00 | -8.00 |" in lines
    assert "| 4 | - | - | 60.50 | +0.50 |" in lines
    assert "- freeze-layer-4/ner-zero-shot/results.json: missing" in lines
    assert "warning: layers 4 have no freeze score" in result.stderr


def test_fsf_derive_sets_thresholds_change_the_sets(tmp_path):
    sweep_dir = write_sweep(tmp_path)
    result = CliRunner().invoke(fsf, ["derive-sets", str(sweep_dir), "--task", "ner", "--reinit-drop", "6.5",
                                      "--freeze-gain", "3.5"])
    assert result.exit_code == 0, result.output
    # only layers 1 (-8) and 2 (-7) drop more than 6.5; layer 1's +3 freeze gain is not more than 3.5
    assert result.stdout.splitlines()[-1] == "--fsf-s1 1-2:all --fsf-s2 none --fsf-v1 3-4:all --fsf-v2 3-4:attn"


def test_fsf_derive_sets_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(fsf, ["derive-sets", str(tmp_path), "--task", "ner"])
    assert result.exit_code == 1 and "no runs of ner" in result.output and str(tmp_path) in result.output
    sweep_dir = write_sweep(tmp_path)
    (sweep_dir / "df" / "ner-zero-shot" / "results.json").unlink()
    result = runner.invoke(fsf, ["derive-sets", str(sweep_dir), "--task", "ner"])
    assert result.exit_code == 1, result.output
    assert "df/ner-zero-shot/results.json: missing: no DF score" in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = runner.invoke(fsf, ["derive-sets", str(tmp_path / "absent"), "--task", "ner"])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_fsf_layers_counts_the_encoder_layers(tmp_path):
    torch = pytest.importorskip("torch")
    state = {f"encoder.layers.{k}.fc1.weight": torch.zeros(1) for k in range(3)}
    state["encoder.lm_head.weight"] = torch.zeros(1)
    torch.save({"model": state}, tmp_path / "xlm.pt")
    roberta = {f"encoder.sentence_encoder.layers.{k}.fc1.weight": torch.zeros(1) for k in range(5)}
    (tmp_path / "release").mkdir()
    torch.save({"model": roberta}, tmp_path / "release" / "model.pt")
    torch.save({"model": {"decoder.weight": torch.zeros(1)}}, tmp_path / "none.pt")
    runner = CliRunner()
    assert runner.invoke(fsf, ["layers", str(tmp_path / "xlm.pt")]).output == "3\n"
    assert runner.invoke(fsf, ["layers", str(tmp_path / "release")]).output == "5\n"
    result = runner.invoke(fsf, ["layers", str(tmp_path / "none.pt")])
    assert result.exit_code == 1 and "no encoder layers" in result.output


def test_guo_layers_plot_draws_png_and_pdf(tmp_path):
    sweep_dir = write_sweep(tmp_path, skip=(("reinit", 2),))
    out = tmp_path / "fig" / "fig3"
    result = CliRunner().invoke(guo_layers_plot, [str(sweep_dir), "--task", "ner", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for suffix, magic in ((".png", b"\x89PNG\r\n\x1a\n"), (".pdf", b"%PDF")):
        assert out.with_suffix(suffix).read_bytes().startswith(magic)
    assert "missing: reinit-layer-2/ner-zero-shot/results.json: missing" in result.stderr


def test_guo_layers_plot_without_layer_runs_is_one_line_error(tmp_path):
    sweep_dir = tmp_path / "sweep"
    write_run(sweep_dir, "df", {1: 60.0})
    result = CliRunner().invoke(guo_layers_plot, [str(sweep_dir), "--task", "ner", "--out", str(tmp_path / "f")])
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert "no freeze-layer-<k> or reinit-layer-<k> run" in result.output

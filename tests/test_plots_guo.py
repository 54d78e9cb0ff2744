"""Guo et al. (2023) figures (``plots_guo``): readers, seed aggregation, and each figure on small fixtures."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from xlint.cli.plots_guo import (
    aggregate_curves,
    chosen_curves,
    draw_layer_sweep,
    fast_spans,
    find_curves,
    gap_runs,
    guo_cka_plot,
    guo_gap_plot,
    guo_phases_plot,
    load_curves,
    read_phases,
)

PNG_MAGIC, PDF_MAGIC = b"\x89PNG\r\n\x1a\n", b"%PDF"
LAYERS = 4


def curve_point(update, gap, loss, cka_drop=None, metric="acc"):
    """A curves.jsonl point as the fine-tuning task writes it (source 90, target = source - gap)."""
    point = {"update": update, "train_loss": loss, "metric": metric,
             "scores": {"en": 90.0, "tr": 90.0 - gap}, "source": 90.0, "target": 90.0 - gap, "gap": gap}
    if cka_drop is not None:  # deeper layers drift further from the pretrained model
        point["cka"] = {str(layer): 1.0 - cka_drop * layer * update / 100 for layer in range(1, LAYERS + 1)}
    return point


def write_lines(path: Path, lines) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def write_seed(save_dir: Path, seed: int, gaps, losses, cka_drop=None, grid="bs32-lr5e-05") -> Path:
    points = [curve_point(100 * k, gap, loss, cka_drop) for k, (gap, loss) in enumerate(zip(gaps, losses))]
    return write_lines(save_dir / grid / f"seed{seed}" / "curves.jsonl", [json.dumps(p) for p in points])


def write_save_dir(save_dir: Path, shift: float = 0.0, cka: bool = False) -> Path:
    """Two seeds of a fine-tuning save dir, 6 points each; the gap rises fast first, then slowly (Fig. 2)."""
    for seed, noise in ((1, -1.0), (2, 1.0)):
        gaps = [0.0] + [shift + 10 * (1 - math.exp(-k)) + 0.5 * k + noise for k in range(1, 6)]
        losses = [None] + [1.1 * math.exp(-k) + 0.2 + 0.02 * noise for k in range(1, 6)]
        write_seed(save_dir, seed, gaps, losses, cka_drop=0.01 * (seed + 1) if cka else None)
    return save_dir


def assert_figures(stem: Path) -> None:
    assert stem.with_suffix(".png").read_bytes().startswith(PNG_MAGIC)
    assert stem.with_suffix(".pdf").read_bytes().startswith(PDF_MAGIC)


# ---------------------------------------------------------------- readers and aggregation

def test_aggregate_curves_averages_seeds_per_update_and_skips_missing_values():
    seed1 = [curve_point(0, 0.0, None), curve_point(100, 4.0, 1.0), curve_point(200, 6.0, 0.5)]
    seed2 = [curve_point(0, 2.0, None), curve_point(100, 8.0, 0.6)]  # a shorter run
    gap = aggregate_curves([seed1, seed2], "gap")
    assert gap.updates == [0.0, 100.0, 200.0]
    assert gap.mean == [1.0, 6.0, 6.0]
    assert (gap.low, gap.high, gap.seeds) == ([0.0, 4.0, 6.0], [2.0, 8.0, 6.0], [2, 2, 1])
    assert gap.std == pytest.approx([math.sqrt(2.0), math.sqrt(8.0), 0.0])  # sample std
    loss = aggregate_curves([seed1, seed2], "train_loss")  # null at update 0
    assert loss.updates == [100.0, 200.0] and loss.mean == pytest.approx([0.8, 0.5])


def test_aggregate_curves_reads_nested_layer_keys():
    seed1 = [curve_point(0, 0.0, None, cka_drop=0.1), curve_point(100, 1.0, 1.0, cka_drop=0.1)]
    seed2 = [curve_point(0, 0.0, None, cka_drop=0.3), curve_point(100, 1.0, 1.0, cka_drop=0.3)]
    series = aggregate_curves([seed1, seed2], "cka.3")
    assert series.updates == [0.0, 100.0]
    assert series.mean == pytest.approx([1.0, 1.0 - 0.2 * 3])
    assert aggregate_curves([seed1], "cka.9").updates == []


def test_load_curves_names_the_bad_line_and_keeps_a_resumed_runs_rewrite(tmp_path):
    path = write_lines(tmp_path / "curves.jsonl", [json.dumps(curve_point(0, 0.0, None)), "",
                                                   '{"update": 100, "ga'])
    with pytest.raises(click.ClickException, match=f"{path}:3: not JSON"):
        load_curves(path)
    write_lines(path, [json.dumps(curve_point(0, 0.0, None)), "[1, 2]"])
    with pytest.raises(click.ClickException, match=f"{path}:2: not a curve point"):
        load_curves(path)
    write_lines(path, [""])
    with pytest.raises(click.ClickException, match=f"{path}: no curve points"):
        load_curves(path)
    # stopped after update 200, resumed from the checkpoint at 100: the resumed points win
    points = [curve_point(0, 0.0, None), curve_point(100, 1.0, 1.0), curve_point(200, 2.0, 0.9),
              curve_point(200, 5.0, 0.8), curve_point(300, 6.0, 0.7)]
    write_lines(path, [json.dumps(p) for p in points])
    assert [(p["update"], p["gap"]) for p in load_curves(path)] == [(0, 0.0), (100, 1.0), (200, 5.0), (300, 6.0)]


def test_find_curves_and_the_chosen_grid_point(tmp_path):
    save = tmp_path / "save"
    write_save_dir(save)
    assert find_curves(save) == [save / "bs32-lr5e-05" / f"seed{k}" / "curves.jsonl" for k in (1, 2)]
    assert chosen_curves(save) == find_curves(save)
    write_seed(save, 1, [0.0, 1.0], [None, 1.0], grid="bs16-lr2e-05")
    with pytest.raises(click.ClickException, match="bs16-lr2e-05, bs32-lr5e-05"):
        chosen_curves(save)
    (save / "results.json").write_text(json.dumps({"chosen": {"name": "bs16-lr2e-05", "runs": []}}))
    assert chosen_curves(save) == [save / "bs16-lr2e-05" / "seed1" / "curves.jsonl"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(click.ClickException, match=f"{tmp_path / 'empty'}: no"):
        chosen_curves(tmp_path / "empty")


# ---------------------------------------------------------------- figures through the commands

def test_guo_gap_draws_each_label_with_its_seeds(tmp_path):
    df, ours = write_save_dir(tmp_path / "df"), write_save_dir(tmp_path / "ours", shift=-4.0)
    out = tmp_path / "figs" / "fig1"
    result = CliRunner().invoke(guo_gap_plot, [f"DF={df}", f"ours={ours}", "--out", str(out), "--title", "XNLI"])
    assert result.exit_code == 0, result.output
    assert_figures(out)
    assert result.output.count("wrote") == 2
    runs = gap_runs({"DF": find_curves(df), "ours": find_curves(ours)})
    assert [(run.label, run.seeds, run.metric) for run in runs] == [("DF", 2, "acc"), ("ours", 2, "acc")]
    assert runs[1].gap.mean[1] == pytest.approx(runs[0].gap.mean[1] - 4.0)  # the seeds' noise cancels
    assert runs[0].gap.low[1] == pytest.approx(runs[0].gap.mean[1] - 1.0)


@pytest.mark.parametrize("spec, message", [("nolabel", "expected LABEL=SAVE_DIR"), ("=dir", "expected LABEL"),
                                           ("a=", "expected LABEL"), ("a={missing}", "no such directory"),
                                           ("a={empty}", "no */seed*/curves.jsonl")])
def test_guo_gap_argument_errors_are_one_line_and_write_nothing(tmp_path, spec, message):
    (tmp_path / "empty").mkdir()
    spec = spec.format(missing=tmp_path / "missing", empty=tmp_path / "empty")
    result = CliRunner().invoke(guo_gap_plot, [spec, "--out", str(tmp_path / "fig")])
    assert result.exit_code != 0 and message in result.output
    assert len(result.output.strip().splitlines()[-1]) > 0 and "Traceback" not in result.output
    assert not list(tmp_path.glob("fig*"))


def test_guo_gap_refuses_a_repeated_label_and_a_missing_out(tmp_path):
    run = write_save_dir(tmp_path / "df")
    result = CliRunner().invoke(guo_gap_plot, [f"a={run}", f"a={run}", "--out", str(tmp_path / "fig")])
    assert result.exit_code == 2 and "'a' given twice" in result.output
    result = CliRunner().invoke(guo_gap_plot, [f"a={run}"])
    assert result.exit_code == 2 and "--out" in result.output
    result = CliRunner().invoke(guo_gap_plot, ["--out", str(tmp_path / "fig")])
    assert result.exit_code == 2 and "LABEL=SAVE_DIR" in result.output


def test_guo_cka_draws_one_line_per_layer(tmp_path):
    save = write_save_dir(tmp_path / "ours", cka=True)
    out = tmp_path / "fig6.png"
    result = CliRunner().invoke(guo_cka_plot, [str(save), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert_figures(out.with_suffix(""))
    plain = write_save_dir(tmp_path / "plain")
    result = CliRunner().invoke(guo_cka_plot, [str(plain), "--out", str(tmp_path / "f")])
    assert result.exit_code == 1 and "--curve-cka" in result.output and str(plain) in result.output
    result = CliRunner().invoke(guo_cka_plot, [str(tmp_path / "nope"), "--out", str(tmp_path / "f")])
    assert result.exit_code == 2 and str(tmp_path / "nope") in result.output
    assert not list(tmp_path.glob("f.*"))


def test_draw_layer_sweep_writes_the_figure_and_refuses_nothing(tmp_path):
    sweep = {"freeze": {k: 70.0 + (1.0 if k <= 4 else -0.5) for k in range(1, 13)},
             "reinit": {k: 70.0 - (8.0 if k <= 4 else 3.0 if k <= 10 else -0.3) for k in range(1, 13) if k != 7}}
    paths = draw_layer_sweep(sweep, 70.0, tmp_path / "fig3", "accuracy (target average)")
    assert paths == [tmp_path / "fig3.png", tmp_path / "fig3.pdf"]
    assert_figures(tmp_path / "fig3")
    with pytest.raises(click.ClickException, match="no layer sweep"):
        draw_layer_sweep({"freeze": {}}, None, tmp_path / "empty", "acc")


def inner_line(update, p1, loss, k_s1, k_v2, r, iv=1.0):
    record = {"epoch": 1, "loss": str(loss / math.log(2)), "num_updates": str(update), "fsf_loss": str(loss),
              "fsf_p1": str(p1), "fsf_phi": "0.9", "fsf_R": str(r), "fsf_policy_iv": str(iv),
              "fsf_K_S1": str(k_s1), "fsf_K_S2": str(r if p1 < 1 else 1.0), "fsf_K_V2": str(k_v2), "fsf_lr": "2e-05"}
    return f"2026-12-01 10:00:00 | INFO | train_inner | {json.dumps(record)}"


def write_fsf_log(run_dir: Path) -> Path:
    """A slow-fast run: P1 for 3 intervals, a mixed one, then P2; restarted from the checkpoint at 40."""
    lines = ["2026-12-01 10:00:00 | INFO | fairseq_cli.train | training on 1 devices"]
    for update in range(10, 90, 10):
        p1 = 1.0 if update <= 30 else 0.5 if update == 40 else 0.0
        k_s1 = 0.01 if p1 == 1.0 else 1.0
        lines.append(inner_line(update, p1, 1.5 * math.exp(-update / 20) + 0.1, k_s1, 10.0 if p1 == 0 else 1.0,
                                0.0 if p1 else 0.3 / (update / 40)))
    lines += [inner_line(50, 0.0, 0.2, 1.0, 10.0, 0.25, iv=0.0), "garbage | train_inner | {not json"]
    return write_lines(run_dir / "train.log", lines)


def test_read_phases_keeps_the_resumed_records_and_finds_the_multipliers(tmp_path):
    log = read_phases(write_fsf_log(tmp_path / "run"))
    updates, p1 = log.series["p1"]
    assert updates == [10.0, 20.0, 30.0, 40.0, 50.0] and p1 == [1.0, 1.0, 1.0, 0.5, 0.0]
    assert log.series["R"][1][-1] == 0.25 and log.series["policy_iv"][1][-1] == 0.0
    assert log.multipliers == ["K_S1", "K_S2", "K_V2"]
    assert fast_spans(updates, p1) == [(0.0, 40.0)]
    assert fast_spans([10.0, 20.0, 30.0, 40.0], [1.0, 0.0, 0.0, 1.0]) == [(0.0, 10.0), (30.0, 40.0)]


def test_guo_phases_draws_a_slow_fast_run_and_refuses_other_logs(tmp_path):
    run = write_fsf_log(tmp_path / "run").parent
    out = tmp_path / "phases"
    result = CliRunner().invoke(guo_phases_plot, [str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert_figures(out)
    (tmp_path / "nolog").mkdir()
    result = CliRunner().invoke(guo_phases_plot, [str(tmp_path / "nolog"), "--out", str(tmp_path / "f")])
    assert result.exit_code == 1 and str(tmp_path / "nolog" / "train.log") in result.output
    df = write_lines(tmp_path / "df" / "train.log",
                     ['x | INFO | train_inner | {"num_updates": "10", "loss": "1.2"}'])
    result = CliRunner().invoke(guo_phases_plot, [str(df), "--out", str(tmp_path / "f")])
    assert result.exit_code == 1 and "no fsf_p1" in result.output and str(df) in result.output
    assert not list(tmp_path.glob("f.*"))


def test_importing_the_module_loads_no_plotting_or_training_library():
    code = ("import sys; import xlint.cli.plots_guo; "
            "print(sorted(m for m in ('matplotlib', 'torch', 'fairseq') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"

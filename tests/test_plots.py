"""``xlint plot grad-sim`` (Fig. 3) and ``xlint plot ppl`` (Fig. 2) on tiny logs made here."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from xlint.cli.commands_plot import PLOTS, plot
from xlint.cli.figures import figure_stem
from xlint.cli.plots_grad_sim import load_run, series
from xlint.cli.plots_ppl import load_ppl_run

PNG_MAGIC, PDF_MAGIC = b"\x89PNG\r\n\x1a\n", b"%PDF"
GROUPS = ("total", "embeddings", "layer0.attention", "layer0.ffn", "layer1.attention", "layer1.ffn", "lm_head")


def grad_sim_row(update, epoch, lang_a, lang_b, group, dot, na=4.0, nb=1.0, finite=True):
    cos = dot / math.sqrt(na * nb) if finite else None
    return {"update": update, "epoch": epoch, "pair": f"{lang_a}-{lang_b}", "lang_a": lang_a, "lang_b": lang_b,
            "probe_a": 0, "probe_b": int(lang_a == lang_b), "group": group, "cos": cos,
            "dot": dot if finite else None, "sq_norm_a": na if finite else None, "sq_norm_b": nb if finite else None,
            "finite": finite}


def write_grad_sim_run(folder: Path, shift: float = 0.0) -> Path:
    folder.mkdir(parents=True)
    rows = []
    for update, epoch in ((0, 1), (10, 1), (20, 2), (30, 2)):
        for group in GROUPS:
            rows.append(grad_sim_row(update, epoch, "fr", "en", group, -0.5 + 0.04 * update + shift))
            rows.append(grad_sim_row(update, epoch, "en", "en", group, 1.0 + 0.01 * update))
            rows.append(grad_sim_row(update, epoch, "fr", "fr", group, 0.8, finite=update != 20))
    path = folder / "grad_sim.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"update": 40, "pa')  # a torn last line
    return path


def valid_line(epoch, updates, **ppl):
    record = {"epoch": epoch, "valid_loss": "9.0", "valid_num_updates": str(updates)}
    record.update({f"valid_ppl_{lang}": str(value) for lang, value in ppl.items()})
    return f"2026-12-01 10:00:00 | INFO | valid | {json.dumps(record)}\n"


def write_pretrain_run(folder: Path, languages, scale: float) -> Path:
    folder.mkdir(parents=True)
    lines = ["2026-12-01 10:00:00 | INFO | fairseq_cli.train | training on 1 devices\n"]
    for epoch, updates in ((1, 100), (2, 200), (3, 300)):
        lines.append(valid_line(epoch, updates, **{lang: scale * 1000 / epoch for lang in languages}))
    # a restart from the checkpoint at 200 validates update 300 again: the later record wins
    lines.append(valid_line(3, 300, **{lang: scale * 250 for lang in languages}))
    (folder / "train.log").write_text("".join(lines))
    return folder


def assert_figures(stem: Path) -> None:
    assert stem.with_suffix(".png").read_bytes().startswith(PNG_MAGIC)
    assert stem.with_suffix(".pdf").read_bytes().startswith(PDF_MAGIC)


def test_grad_sim_plot_writes_lines_and_layer_heat_map(tmp_path):
    write_grad_sim_run(tmp_path / "ar-en")
    write_grad_sim_run(tmp_path / "fr-en", shift=0.2)
    out = tmp_path / "figs" / "fig3"
    result = CliRunner().invoke(plot, ["grad-sim", str(tmp_path / "ar-en"), str(tmp_path / "fr-en"),
                                       "--out", str(out), "--pair", "fr-en"])
    assert result.exit_code == 0, result.output
    assert_figures(out)
    assert_figures(out.with_name("fig3_layers"))
    assert "wrote" in result.output


def test_grad_sim_series_skips_non_finite_and_reaggregates_epochs(tmp_path):
    run = load_run(write_grad_sim_run(tmp_path / "run"))
    assert run.pairs == ["fr-en", "en-en", "fr-fr"]
    xs, ys = series(run, "fr-fr", "total", "update")
    assert xs == [0.0, 10.0, 30.0]  # update 20 was not finite
    xs, ys = series(run, "fr-en", "total", "epoch")
    # epoch 1 = updates 0 and 10: (sum of dots) / sqrt(sum of |a|^2 * sum of |b|^2)
    assert xs == [1.0, 2.0]
    assert ys[0] == pytest.approx((-0.5 + -0.1) / math.sqrt(8.0 * 2.0))


def test_grad_sim_plot_errors_are_one_line_and_write_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "fig"
    result = CliRunner().invoke(plot, ["grad-sim", str(tmp_path / "empty"), "--out", str(out)])
    assert result.exit_code == 2 and "grad_sim.jsonl" in result.output and str(tmp_path / "empty") in result.output
    write_grad_sim_run(tmp_path / "run")
    result = CliRunner().invoke(plot, ["grad-sim", str(tmp_path / "run"), "--out", str(out), "--pair", "xx-en"])
    assert result.exit_code == 2 and "xx-en" in result.output
    result = CliRunner().invoke(plot, ["grad-sim", str(tmp_path / "run"), "--out", str(out), "--group", "nope"])
    assert result.exit_code == 2 and "nope" in result.output
    assert not list(tmp_path.glob("fig*"))


def test_ppl_plot_mono_against_jointpair(tmp_path):
    mono = write_pretrain_run(tmp_path / "mono", ["fr"], 1.0)
    joint = write_pretrain_run(tmp_path / "jointpair", ["fr", "en"], 1.2)
    out = tmp_path / "fig2.png"
    result = CliRunner().invoke(plot, ["ppl", str(mono), str(joint), "--out", str(out), "--x", "epoch"])
    assert result.exit_code == 0, result.output
    assert_figures(figure_stem(out))
    curves = load_ppl_run(joint).curves
    assert [p[0] for p in curves["fr"]] == [100.0, 200.0, 300.0]
    assert curves["fr"][-1][2] == pytest.approx(300.0)  # the superseding validation of update 300


def test_ppl_plot_errors(tmp_path):
    (tmp_path / "run").mkdir()
    result = CliRunner().invoke(plot, ["ppl", str(tmp_path / "run"), "--out", str(tmp_path / "f")])
    assert result.exit_code == 2 and "train.log" in result.output
    (tmp_path / "run" / "train.log").write_text("nothing here\n")
    result = CliRunner().invoke(plot, ["ppl", str(tmp_path / "run"), "--out", str(tmp_path / "f")])
    assert result.exit_code == 2 and "valid_ppl_" in result.output
    run = write_pretrain_run(tmp_path / "ok", ["fr"], 1.0)
    result = CliRunner().invoke(plot, ["ppl", str(run), "--out", str(tmp_path / "f"), "--languages", "de"])
    assert result.exit_code == 2 and "de" in result.output
    result = CliRunner().invoke(plot, ["ppl", str(run), "--out", str(tmp_path / "f"), "--label", "a", "--label", "b"])
    assert result.exit_code == 2
    assert not list(tmp_path.glob("f.*"))


def test_plot_group_is_lazy_and_lists_its_figures():
    assert {"grad-sim", "ppl"} <= set(PLOTS)  # other figures plug in with one line of PLOTS
    result = CliRunner().invoke(plot, ["--help"])
    assert result.exit_code == 0 and "grad-sim" in result.output and "ppl" in result.output
    code = ("import sys; import xlint.cli.commands_plot; "
            "print(sorted(m for m in ('matplotlib', 'torch', 'fairseq') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"

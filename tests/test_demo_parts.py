"""Tests of ``xlint demo --paper``: which jobs each part plans, their keys, the parts' tables and the report."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest

from xlint.cli import demo_jobs
from xlint.cli.commands_demo import (
    FINETUNE_TASKS,
    GRAD_SIM_OPTIONS,
    Baseline,
    Corpus,
    DemoSettings,
    finetuning_job_name,
    finetuning_label,
)
from xlint.cli.demo_analyses import L0_LANGUAGES, grad_sim_table, l0_command, l0_table
from xlint.cli.demo_guo import CURVE_INTERVAL, FSF_WINDOW, guo_table, gap_on_test
from xlint.cli.demo_jobs import command_job, options_key, run_jobs, write_cached_result
from xlint.cli.demo_plan import PAPERS, parse_papers, plan_demo
from xlint.cli.demo_report import closing_lines
from xlint.cli.demo_wu import alpha_rows, alpha_table, sweep_command
from xlint.preprocess.demo_data import POS_LANGUAGES, RAW_LANGUAGES, SPLITS, DemoData, write_conll

WANG_FINETUNES = 4 * (3 + 1 + 1)  # four multilingual models x (3 English seeds, grc, tr)


def _settings(tmp_path: Path, **changes: Any) -> DemoSettings:
    values = dict(workdir=tmp_path / "work", max_update=400, english_sentences=3000, vocab_size=8000,
                  finetune_epochs=2, finetune_examples=2000, finetune_seeds=3, jobs=2, l0_updates=60)
    values.update(changes)
    return DemoSettings(**values)


def _data(root: Path) -> DemoData:
    """Tiny POS files and pretraining text in the demo data's layout (their checksums enter the keys)."""
    raw = {lang: root / f"raw/{lang}.txt" for lang in RAW_LANGUAGES}
    pretrain = {lang: root / f"pretrain/{lang}.txt" for lang in RAW_LANGUAGES}
    pos = {lang: {split: root / f"pos/{lang}/{split}.tsv" for split in SPLITS} for lang in POS_LANGUAGES}
    for lang in RAW_LANGUAGES:
        for path in (raw[lang], pretrain[lang]):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{lang}\n", encoding="utf-8")
    for lang in POS_LANGUAGES:
        for split in SPLITS:
            write_conll(pos[lang][split], [[("w", "NOUN"), ("x", "VERB"), ("y", "NOUN")]])
    return DemoData(root, raw, pretrain, pos, root / "manifest.json", {})


@pytest.fixture()
def planned(tmp_path: Path):
    data = _data(tmp_path / "data")
    corpus = Corpus(tmp_path / "corpus", "c0rpus")

    def plan(papers=PAPERS, **changes: Any):
        demo = plan_demo(papers, data, corpus, _settings(tmp_path, **changes))
        return demo, demo.jobs(data, corpus)

    return plan


def _names(jobs) -> list[str]:
    return [job.name for job in jobs]


# --------------------------------------------------------------------------- --paper


def test_parse_papers_accepts_repeats_and_comma_lists_in_canonical_order() -> None:
    assert parse_papers(()) == PAPERS
    assert parse_papers(("wu2022,wang2020",)) == ("wang2020", "wu2022")
    assert parse_papers(("guo2023", "wu2022", "guo2023")) == ("guo2023", "wu2022")
    with pytest.raises(click.BadParameter, match="unknown paper 'guo2024'"):
        parse_papers(("wang2020,guo2024",))


def test_guo_part_needs_only_the_joint_model_and_two_finetunings(planned) -> None:
    demo, jobs = planned(("guo2023",))
    assert _names(jobs) == ["pos-data", "pretrain:joint", "guo-df-seed1:joint", "guo-fsf-seed1:joint"]
    assert demo.wang == [] and demo.wu is None and demo.l0 == []


def test_wu_part_reuses_the_english_seed_1_run_only(planned) -> None:
    demo, jobs = planned(("wu2022",))
    assert _names(jobs) == ["pos-data", "pretrain:joint", "pos-en-seed1:joint", "pos-en+tr-seed1:joint",
                            "wu:interpolation"]
    assert jobs[-1].depends_on == ("pos-en-seed1:joint", "pos-en+tr-seed1:joint")
    wang, _ = planned(("wang2020",))
    theta_en = next(plan for plan in wang.wang if finetuning_job_name(plan) == "pos-en-seed1:joint")
    assert (demo.wu.source.key, demo.wu.source.job_dir) == (theta_en.key, theta_en.job_dir)  # not retrained


def test_wang_part_plans_the_table_and_the_analyses(planned) -> None:
    demo, jobs = planned(("wang2020",))
    names = _names(jobs)
    assert names[:7] == ["pos-data", "pretrain:meta-adapter", "pretrain:joint", "pretrain:ffn", "pretrain:adapter",
                         "pretrain:mono-grc", "pretrain:mono-tr"]
    assert names[7:11] == [f"l0:{lang}-seed{seed}" for lang in L0_LANGUAGES for seed in (1, 2)]
    assert len(names) == 11 + WANG_FINETUNES and not any(n.startswith(("guo-", "wu:")) for n in names)
    assert all(job.depends_on == ("pretrain:joint",) for job in jobs[7:11])


def test_all_parts_hold_every_shared_job_once_dependencies_first(planned) -> None:
    _, jobs = planned()
    names = _names(jobs)
    assert len(names) == len(set(names)) == 11 + WANG_FINETUNES + 2 + 2  # + Guo's two, Wu's bilingual and sweep
    demo_jobs._check_graph(jobs)  # every dependency is an earlier job
    # the chains that end the Guo and Wu parts start before the rest of the POS table
    assert names.index("wu:interpolation") < names.index("guo-df-seed1:joint") < names.index("pos-en-seed2:joint")


def test_without_finetuning_or_l0_updates_those_jobs_are_not_planned(planned) -> None:
    demo, jobs = planned(finetune_epochs=0)
    assert not any(name.startswith(("pos", "guo", "wu")) for name in _names(jobs)) and demo.pos is None
    assert len([name for name in _names(jobs) if name.startswith("l0:")]) == 4
    _, jobs = planned(l0_updates=0)
    assert not any(name.startswith("l0:") for name in _names(jobs))


def test_only_the_joint_pretraining_probes_gradient_similarity(planned) -> None:
    demo, _ = planned(("wang2020",))
    for name, plan in demo.pretraining.items():
        probes = "--grad-sim-interval" in plan.command
        assert probes == (name == "joint"), name
    joint = demo.pretraining["joint"].command
    assert joint[joint.index("--grad-sim-interval") + 1] == str(GRAD_SIM_OPTIONS["grad_sim_interval"])
    assert demo.joint.grad_sim_file == demo.joint.run_dir / "checkpoints" / "grad_sim.jsonl"


# --------------------------------------------------------------------------- keys and payloads


def test_wang_finetuning_keys_are_those_of_plain_within_language_runs(planned) -> None:
    demo, _ = planned(("wang2020",))
    plan = demo.wang[0]
    assert FINETUNE_TASKS[0].extra_options() == {}
    expected = {"pretrained": demo.joint.key if plan.run.name == "joint" else plan.options["pretrained"],
                "pos_data": demo.pos.key, "source": "en", "tests": ["en", "grc", "tr"], "epochs": 2, "lr": 5e-4,
                "batch_size": 32, "max_train_examples": 2000, "seed": 1}
    assert plan.options == expected and plan.key == options_key(expected)
    assert plan.payload["setting"] == "within" and plan.payload["method"] == {} and plan.payload["fairseq_args"] == []


def test_guo_runs_differ_in_the_method_and_write_curves(planned) -> None:
    demo, _ = planned(("guo2023",))
    df, fsf = demo.guo
    assert df.key != fsf.key and df.job_dir != fsf.job_dir
    assert df.payload["setting"] == fsf.payload["setting"] == "zero-shot"
    assert df.payload["targets"] == ["tr", "grc"] and df.payload["test_languages"] == ["en", "tr", "grc"]
    assert df.payload["method"] == {} and fsf.payload["method"] == {"method": "fsf", "window": FSF_WINDOW}
    args = fsf.payload["fairseq_args"]
    assert args[args.index("--curve-interval") + 1] == str(CURVE_INTERVAL)
    assert fsf.options["method"] == {"method": "fsf", "window": FSF_WINDOW} and fsf.options["fairseq_args"] == args
    assert finetuning_label(fsf) == "POS en -> en,tr,grc (zero-shot, fsf) with Joint (grc+tr+en), seed 1"
    assert finetuning_label(df).startswith("POS en -> en,tr,grc (zero-shot, df) with")


def test_bilingual_run_trains_on_en_and_tr_with_the_same_seed_and_budget(planned) -> None:
    demo, _ = planned(("wu2022",))
    source, bilingual = demo.wu.source.payload, demo.wu.bilingual.payload
    assert bilingual["setting"] == "bilingual" and bilingual["targets"] == ["tr"]
    for field in ("seed", "epochs", "lr", "batch_size", "max_train_examples", "pretrained", "data"):
        assert bilingual[field] == source[field], field
    assert finetuning_label(demo.wu.source) == "POS en -> en,grc,tr with Joint (grc+tr+en), seed 1"  # Wang's run
    assert finetuning_label(demo.wu.bilingual).startswith("POS en+tr -> en,tr (bilingual, df) with")
    assert demo.wu.key != planned(("wu2022",), finetune_epochs=3)[0].wu.key  # the models' keys enter the sweep's


# --------------------------------------------------------------------------- jobs that are one subprocess


def test_command_job_runs_once_per_key_and_builds_its_command_when_it_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_run(command, log_file=None, echo=True, quiet=False, env=None) -> None:
        calls.append(list(command))
        assert env == demo_jobs.ONE_THREAD and log_file == tmp_path / "job" / "job.log"
        (tmp_path / "job" / "out.json").write_text('{"value": 3}', encoding="utf-8")

    monkeypatch.setattr(demo_jobs, "run_command", fake_run)
    state = {"argument": "early"}

    def job():
        return command_job(name="x", label="x", folder=tmp_path / "job", key="k1", options={"o": 1},
                           command=lambda: ["tool", state["argument"]],
                           read_result=lambda: json.loads((tmp_path / "job" / "out.json").read_text()),
                           summary=lambda result: str(result["value"]))

    state["argument"] = "late"
    assert run_jobs([job()], 1)["x"].result == {"value": 3}
    assert calls == [["tool", "late"]]
    assert run_jobs([job()], 1)["x"].reused and len(calls) == 1


def test_sweep_command_reads_both_checkpoints_from_the_finished_jobs(planned) -> None:
    demo, _ = planned(("wu2022",))
    with pytest.raises(click.ClickException, match="no fine-tuning result to interpolate"):
        sweep_command(demo.wu)
    for plan, name in ((demo.wu.source, "en.pt"), (demo.wu.bilingual, "bi.pt")):
        write_cached_result(plan.job_dir, plan.key, plan.options, {"checkpoint": f"/ckpt/{name}"})
    command = sweep_command(demo.wu)
    assert command[1:4] == ["interpolate", "/ckpt/en.pt", "/ckpt/bi.pt"]  # CKPT_B is the bilingual model
    assert command[command.index("--languages") + 1] == "en,tr"
    assert command[command.index("--out") + 1] == str(demo.wu.out)


def test_l0_command_learns_one_language_and_seed_over_the_joint_model(planned) -> None:
    demo, _ = planned(("wang2020",))
    plan = demo.l0[1]
    command = l0_command(plan)
    assert command[1:4] == ["l0", "train", str(demo.joint.checkpoint)]
    assert (command[command.index("--languages") + 1], command[command.index("--seeds") + 1]) == ("tr", "2")
    assert command[command.index("--max-update") + 1] == "60" and "--cpu" in command
    assert plan.gates == plan.folder / "masks" / "tr" / "seed2" / "gates.json"
    assert len({p.key for p in demo.l0}) == 4


# --------------------------------------------------------------------------- tables and the report


BASELINES = {"en": Baseline("VERB", 23.6), "tr": Baseline("NOUN", 50.9), "grc": Baseline("NOUN", 20.9)}


def _test_scores(en: float, tr: float, grc: float) -> dict:
    return {"en": {"acc": en}, "tr": {"acc": tr}, "grc": {"acc": grc}}


def test_guo_table_rows_gaps_and_baselines() -> None:
    results = {"df": {"dev_acc": 80.0, "test": _test_scores(79.0, 35.0, 29.0)},
               "fsf": {"dev_acc": 78.5, "test": _test_scores(78.0, 38.0, 24.0)}}
    curves = {"df": [{"update": 0, "gap": 1.0}, {"update": 120, "gap": 47.25}], "fsf": []}
    lines = guo_table(results, curves, BASELINES).splitlines()
    assert lines[0] == "| method | en dev | en test | tr test | grc test | gap (test) | gap at the end (curve) |"
    assert lines[2] == "| *majority tag of the test set* | – | 23.6 (VERB) | 50.9 (NOUN) | 20.9 (NOUN) | -12.3 | – |"
    assert lines[3] == "| DF | 80.0 | 79.0 | 35.0 | 29.0 | 47.0 | 47.2 |"
    assert lines[4] == f"| FSF (w = {FSF_WINDOW}) | 78.5 | 78.0 | 38.0 | 24.0 | 47.0 | – |"
    assert gap_on_test(_test_scores(90.0, 40.0, 20.0)) == 60.0


def _sweep_result() -> dict:
    def point(alpha: float, en: float, tr: float) -> dict:
        return {"point": [alpha], "scores": {"en": {"acc": en, "f1": 1.0}, "tr": {"acc": tr, "f1": 1.0}}}

    return {"points": [point(1.0, 80.0, 50.0), point(-0.5, 40.0, 10.0), point(0.0, 62.0, 25.0),
                       point(0.5, 70.0, 45.0)], "geometry": {"distance_A_B": 3.5}}


def test_alpha_table_sorts_the_points_and_normalises_by_the_bilingual_model() -> None:
    lines = alpha_table(_sweep_result()).splitlines()
    assert lines[0] == "| α | en dev (source) | tr dev (target) |"
    assert lines[2] == "| -0.5 | 40.0 (0.500) | 10.0 (0.200) |"
    assert lines[3] == "| 0 (θ_en) | 62.0 (0.775) | 25.0 (0.500) |"
    assert lines[5] == "| 1 (θ_{en,tr}) | 80.0 (1.000) | 50.0 (1.000) |"
    broken = {"points": [p for p in _sweep_result()["points"] if p["point"] != [1.0]]}
    with pytest.raises(click.ClickException, match="bilingual model's point"):
        alpha_rows(broken)


def test_l0_table_lists_pairs_then_seeds_per_layer() -> None:
    def entry(languages, attn, ffn):
        return {"languages": languages, "per_layer": {"attn": {"0": attn[0], "1": attn[1]},
                                                      "ffn": {"0": ffn[0], "1": ffn[1]}}}

    comparison = {"between_languages": [entry(["tr", "en"], (0.09, 0.15), (0.7, 0.72))],
                  "within_language": [entry(["en", "en"], (0.96, 0.955), (0.95, 0.94))]}
    lines = l0_table(comparison).splitlines()
    assert lines[0] == "| cosine of log α (layer 0 / 1) | attn | ffn |"
    assert lines[2] == "| tr – en | 0.09 / 0.15 | 0.70 / 0.72 |"
    assert lines[3] == "| en – en (two seeds) | 0.96 / 0.95 | 0.95 / 0.94 |"
    assert l0_table({"between_languages": [], "within_language": []}) == ""


def test_grad_sim_table_has_one_row_per_probe_and_one_column_per_pair(planned) -> None:
    demo, _ = planned(("wang2020",))
    assert grad_sim_table(demo.joint) == ""  # no probes written
    rows = [{"update": update, "pair": pair, "group": group, "lang_a": pair[:2], "lang_b": pair[-2:], "cos": cos}
            for update, pair, group, cos in ((50, "tr-en", "total", 0.25), (50, "en-en", "total", 0.9),
                                             (100, "tr-en", "total", -0.125), (100, "tr-en", "ffn", 0.5))]
    demo.joint.grad_sim_file.parent.mkdir(parents=True)
    demo.joint.grad_sim_file.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    lines = grad_sim_table(demo.joint).splitlines()
    assert lines[0] == "| update | tr-en | en-en |"
    assert lines[2:] == ["| 50 | +0.25 | +0.90 |", "| 100 | -0.12 | – |"]


def test_closing_lines_name_the_tables_figures_and_logs(tmp_path: Path) -> None:
    figures = [tmp_path / "figures" / name for name in ("guo2023_gap.png", "guo2023_gap.pdf", "wu2022_fig2_1d.png")]
    lines = closing_lines(tmp_path, figures, 312.4).splitlines()
    assert lines[0] == f"312s; tables: {tmp_path / 'results.md'} (numbers: {tmp_path / 'results.json'})"
    assert lines[1] == f"figures (PNG + PDF) in {tmp_path / 'figures'}: guo2023_gap, wu2022_fig2_1d"
    assert lines[2].startswith("logs: ")
    assert len(closing_lines(tmp_path, [], 1.0).splitlines()) == 2  # no figure line without figures


# --------------------------------------------------------------------------- the new kinds of job, for real


@pytest.mark.slow
def test_zero_shot_fsf_with_curves_and_bilingual_jobs_run_and_interpolate(tmp_path_factory, tmp_path: Path) -> None:
    """The payloads of the Guo and Wu parts train (tiny synthetic world), write curves, and θ_src and
    θ_{src,tgt} (same seed) are combinable by ``xlint interpolate``."""
    from click.testing import CliRunner
    from test_finetune_support import world

    from xlint.cli.demo_guo import curve_args, read_curves
    from xlint.cli.demo_jobs import finetune_job_payload, run_finetune_job
    from xlint.cli.main import cli

    ft = world(tmp_path_factory)
    common = dict(data=ft.converted["pos"], pretrained=ft.checkpoint, corpus=ft.corpus, source="en", epochs=1,
                  lr=5e-4, batch_size=8, max_train_examples=24, seed=1)
    fsf = run_finetune_job(finetune_job_payload(save_dir=tmp_path / "fsf", test_languages=["en", "fr"],
                                                setting="zero-shot", targets=["fr"],
                                                method={"method": "fsf", "window": 2},
                                                fairseq_args=curve_args(interval=1, examples=4), **common))
    curves = read_curves(fsf)
    assert curves[0]["update"] == 0 and set(curves[-1]["scores"]) == {"en", "fr"}
    assert set(fsf["test"]) == {"en", "fr"} and 0 <= fsf["dev_acc"] <= 100
    assert "fsf_p1" in (Path(fsf["run_dir"]) / "train.log").read_text(encoding="utf-8")
    source = run_finetune_job(finetune_job_payload(save_dir=tmp_path / "src", test_languages=["en"], **common))
    bilingual = run_finetune_job(finetune_job_payload(save_dir=tmp_path / "bi", test_languages=["en", "fr"],
                                                      setting="bilingual", targets=["fr"], **common))
    assert read_curves(source) == []
    out = tmp_path / "sweep"
    result = CliRunner().invoke(cli, ["interpolate", source["checkpoint"], bilingual["checkpoint"], "--out", str(out),
                                      "--alphas", "0,1", "--languages", "en,fr", "--cpu", "--quiet"])
    assert result.exit_code == 0, result.output[-3000:]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    rows = alpha_rows({"points": summary["points"]}, languages=("en", "fr"))
    assert [row["alpha"] for row in rows] == [0.0, 1.0] and rows[1]["en_normalised"] == 1.0


def test_l0_comparison_writes_its_numbers_and_the_wang_figures(planned, tmp_path: Path) -> None:
    import random

    demo, _ = planned(("wang2020",))
    keys = ["layer0.attn", "layer0.ffn", "layer1.attn", "layer1.ffn"] * 2
    rng = random.Random(0)
    for plan in demo.l0:
        plan.job_dir.mkdir(parents=True)
        gates = {"language": plan.language, "seed": plan.seed, "num_updates": 60,
                 "names": [f"g{i}" for i in range(len(keys))], "keys": keys,
                 "log_alpha": [rng.uniform(-3, 3) for _ in keys]}
        plan.gates.write_text(json.dumps(gates), encoding="utf-8")
    figures = tmp_path / "figures"
    figures.mkdir()
    from xlint.cli.demo_analyses import compare_l0

    result = compare_l0(demo.l0, demo.joint.run_dir.parents[1], figures)
    assert sorted(path.name for path in figures.iterdir()) == [
        "wang2020_fig4a_l0.pdf", "wang2020_fig4a_l0.png", "wang2020_fig4b_l0.pdf", "wang2020_fig4b_l0.png"]
    assert result["figures"] == [str(figures / "wang2020_fig4a_l0.png"), str(figures / "wang2020_fig4a_l0.pdf"),
                                 str(figures / "wang2020_fig4b_l0.png"), str(figures / "wang2020_fig4b_l0.pdf")]
    comparison = json.loads((demo.joint.run_dir.parents[1] / "l0" / "compare.json").read_text(encoding="utf-8"))
    assert [entry["languages"] for entry in comparison["between_languages"]] == [["en", "tr"]]
    assert l0_table(comparison).splitlines()[2].startswith("| en – tr | ")

"""Tests of ``xlint demo``'s machinery: option-keyed caching, side-by-side jobs, baselines, tables."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from xlint.cli import commands_demo, demo_jobs
from xlint.cli.commands_demo import (
    COLUMNS,
    Corpus,
    DemoSettings,
    PosData,
    downstream_table,
    majority_baselines,
    plan_finetuning,
    plan_pretraining,
    pretraining_job,
    source_majority_baselines,
    zero_shot_verdict,
)
from xlint.cli.demo_jobs import Job, LogProgress, options_key, read_cached_result, run_jobs, write_cached_result
from xlint.preprocess.demo_data import POS_LANGUAGES, RAW_LANGUAGES, SPLITS, DemoData, write_conll

RUNS = {run.name: run for run in commands_demo.DEMO_RUNS}


def _settings(tmp_path: Path, **changes: Any) -> DemoSettings:
    values = dict(workdir=tmp_path / "work", max_update=400, english_sentences=8000, vocab_size=8000,
                  finetune_epochs=2, finetune_examples=2000, finetune_seeds=3, jobs=2)
    values.update(changes)
    return DemoSettings(**values)


# --------------------------------------------------------------------------- keys and cached results


def test_options_key_ignores_order_and_sees_every_value() -> None:
    assert options_key({"a": 1, "b": [1, 2]}) == options_key({"b": [1, 2], "a": 1})
    assert options_key({"a": 1, "b": [1, 2]}) != options_key({"a": 1, "b": [2, 1]})
    assert options_key({"max_update": 400}) != options_key({"max_update": 401})
    assert len(options_key({})) == demo_jobs.KEY_LENGTH


def test_cached_result_is_read_back_only_with_its_key(tmp_path: Path) -> None:
    write_cached_result(tmp_path, "abc", {"max_update": 400}, {"valid_ppl_en": 12.5})
    assert read_cached_result(tmp_path, "abc") == {"valid_ppl_en": 12.5}
    assert read_cached_result(tmp_path, "abd") is None
    (tmp_path / "result.json").write_text("{not json", encoding="utf-8")
    assert read_cached_result(tmp_path, "abc") is None
    assert read_cached_result(tmp_path / "missing", "abc") is None


def test_pretraining_folders_and_keys_follow_the_options(tmp_path: Path) -> None:
    corpus = Corpus(tmp_path / "corpus", "c0rpus")
    base = plan_pretraining(corpus, RUNS["joint"], _settings(tmp_path))
    again = plan_pretraining(corpus, RUNS["joint"], _settings(tmp_path))
    longer = plan_pretraining(corpus, RUNS["joint"], _settings(tmp_path, max_update=800))
    other_corpus = plan_pretraining(Corpus(corpus.path, "other"), RUNS["joint"], _settings(tmp_path))
    assert (base.key, base.run_dir) == (again.key, again.run_dir)
    assert len({base.key, longer.key, other_corpus.key}) == 3
    assert len({base.run_dir, longer.run_dir, other_corpus.run_dir}) == 3
    assert "--max-update" in longer.command and "800" in longer.command
    assert str(longer.run_dir / "checkpoints") in longer.command  # resuming never crosses option sets
    # finishing a demo does not depend on where it was computed: the save dir is not part of the key
    assert "save_dir" not in json.dumps(base.options)
    meta = plan_pretraining(corpus, RUNS["meta-adapter"], _settings(tmp_path))
    assert meta.command[meta.command.index("--meta-dev-batch-size") + 1] == str(commands_demo.META_DEV_BATCH_SIZE)
    assert "--meta-dev-batch-size" not in base.command


class FakeTrainer:
    """Stands in for run_command: writes a fairseq JSON validation line, counts the runs."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []
        self.envs: list[dict[str, str]] = []

    def __call__(self, command: list[str], log_file: Path | None = None, echo: bool = True, quiet: bool = False,
                 env: dict[str, str] | None = None) -> None:
        self.commands.append(list(command))
        self.envs.append(dict(env or {}))
        assert log_file is not None
        updates = command[command.index("--max-update") + 1]
        record = {"epoch": 1, "valid_loss": "5.0", "valid_ppl_grc": updates, "valid_ppl_tr": "20.0"}
        log_file.write_text(f"2026-01-01 00:00:00 | INFO | valid | {json.dumps(record)}\n", encoding="utf-8")


def test_cached_pretraining_is_reused_only_for_the_same_options(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = FakeTrainer()
    monkeypatch.setattr(commands_demo, "run_command", trainer)
    corpus = Corpus(tmp_path / "corpus", "c0rpus")

    def pretrain(max_update: int) -> dict[str, float]:
        plan = plan_pretraining(corpus, RUNS["mono-grc"], _settings(tmp_path, max_update=max_update))
        return run_jobs([pretraining_job(plan)], parallel=2)["pretrain:mono-grc"].result

    assert pretrain(400)["valid_ppl_grc"] == 400.0
    assert len(trainer.commands) == 1 and trainer.envs[0]["OMP_NUM_THREADS"] == "1"
    assert pretrain(400)["valid_ppl_grc"] == 400.0 and len(trainer.commands) == 1  # reused
    assert pretrain(800)["valid_ppl_grc"] == 800.0 and len(trainer.commands) == 2  # other options: trained
    assert pretrain(400)["valid_ppl_grc"] == 400.0 and len(trainer.commands) == 2  # the first result is kept


def test_finetuning_keys_follow_the_epochs_the_model_and_the_data(tmp_path: Path) -> None:
    corpus = Corpus(tmp_path / "corpus", "c0rpus")
    pos = PosData(tmp_path / "pos", "p0s")
    settings = _settings(tmp_path)
    model = plan_pretraining(corpus, RUNS["joint"], settings)
    task = commands_demo.FINETUNE_TASKS[0]
    base = plan_finetuning(model, task, 1, corpus, pos, settings)
    more_epochs = plan_finetuning(model, task, 1, corpus, pos, _settings(tmp_path, finetune_epochs=3))
    other_model = plan_finetuning(plan_pretraining(corpus, RUNS["joint"], _settings(tmp_path, max_update=800)),
                                  task, 1, corpus, pos, settings)
    other_data = plan_finetuning(model, task, 1, corpus, PosData(pos.path, "other"), settings)
    other_seed = plan_finetuning(model, task, 2, corpus, pos, settings)
    plans = (base, more_epochs, other_model, other_data, other_seed)
    assert len({plan.key for plan in plans}) == len({plan.job_dir for plan in plans}) == 5
    assert settings.seeds(task) == [1, 2, 3] and settings.seeds(commands_demo.FINETUNE_TASKS[1]) == [1]
    assert base.payload["epochs"] == 2 and more_epochs.payload["epochs"] == 3
    assert base.payload["pretrained"] == str(model.checkpoint)
    assert base.payload["test_languages"] == ["en", "grc", "tr"]


def test_finetuning_job_runs_once_per_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_child(command: list[str], log_file: Path | None = None, echo: bool = True, quiet: bool = False,
                   env: dict[str, str] | None = None) -> None:
        calls.append(command)
        job = json.loads((Path(command[-1]) / "job.json").read_text(encoding="utf-8"))
        scores = {lang: {"acc": 50.0, "f1": 10.0} for lang in job["payload"]["test_languages"]}
        write_cached_result(Path(command[-1]), job["key"], job["options"], {"test": scores})

    monkeypatch.setattr(commands_demo, "run_command", fake_child)
    corpus, pos, settings = Corpus(tmp_path / "c", "c"), PosData(tmp_path / "p", "p"), _settings(tmp_path)
    model = plan_pretraining(corpus, RUNS["ffn"], settings)
    plan = plan_finetuning(model, commands_demo.FINETUNE_TASKS[0], 1, corpus, pos, settings)
    job = commands_demo.finetuning_job(plan)
    assert job.depends_on == ("pos-data", "pretrain:ffn")
    ready = [Job("pos-data", "pos", lambda: {}, str), Job("pretrain:ffn", "ffn", lambda: {}, str), job]
    assert run_jobs(ready, 2)[job.name].result["test"]["tr"]["acc"] == 50.0
    assert calls[0][1:3] == ["-m", "xlint.cli.demo_jobs"]
    run_jobs(ready, 2)
    assert len(calls) == 1


# --------------------------------------------------------------------------- running jobs side by side


def test_run_jobs_runs_independent_jobs_side_by_side_and_respects_dependencies() -> None:
    both_running = threading.Barrier(2, timeout=60)  # only passes if two jobs run at the same time
    lock = threading.Lock()
    running, most, order = [0], [0], []

    def work(name: str, meet: bool = False) -> dict[str, Any]:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            order.append(name)
        if meet:
            both_running.wait()
        with lock:
            running[0] -= 1
        return {"name": name}

    jobs = [Job("a", "a", lambda: work("a", True), str), Job("b", "b", lambda: work("b", True), str),
            Job("c", "c", lambda: work("c"), str, depends_on=("a",)),
            Job("d", "d", lambda: work("d"), str, depends_on=("c", "b"))]
    outcomes = run_jobs(jobs, parallel=2)
    assert set(outcomes) == {"a", "b", "c", "d"} and most[0] == 2
    assert order.index("c") > order.index("a") and order[-1] == "d"


def test_run_jobs_stops_after_a_failure_and_raises_it() -> None:
    ran: list[str] = []

    def fail() -> dict[str, Any]:
        raise RuntimeError("boom")

    jobs = [Job("a", "a", fail, str), Job("b", "b", lambda: ran.append("b") or {}, str, depends_on=("a",))]
    with pytest.raises(RuntimeError, match="boom"):
        run_jobs(jobs, parallel=2)
    assert ran == []


def test_run_jobs_rejects_a_dependency_listed_later() -> None:
    with pytest.raises(ValueError, match="depends on b, which is not an earlier job"):
        run_jobs([Job("a", "a", dict, str, depends_on=("b",)), Job("b", "b", dict, str)], 2)


def test_run_jobs_prints_a_start_and_a_result_line(capsys: pytest.CaptureFixture[str]) -> None:
    run_jobs([Job("a", "pretrain Mono (grc)", lambda: {"ppl": 3.0}, lambda r: f"ppl {r['ppl']}")], 1)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "[1/1] pretrain Mono (grc): started"
    assert lines[1].startswith("[1/1] pretrain Mono (grc): done in ") and lines[1].endswith(": ppl 3.0")


def _train_inner(updates: int, loss: float) -> str:
    record = {"epoch": 1, "update": 0.5, "loss": f"{loss:.3f}", "num_updates": str(updates)}
    return f"2026-12-01 00:00:00 | INFO | train_inner | {json.dumps(record)}\n"


def test_log_progress_reports_the_latest_training_record_once(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    progress = LogProgress(log, total_updates=400)
    assert progress.poll() is None  # no log yet
    log.write_text("some fairseq line\n" + _train_inner(20, 9.5) + _train_inner(40, 8.25), encoding="utf-8")
    assert progress.poll() == "update 40/400, epoch 1, loss 8.250"
    assert progress.poll() is None  # nothing new
    with open(log, "a", encoding="utf-8") as handle:
        line = _train_inner(60, 7.0)
        handle.write(line[:30])  # a line still being written is not read
        handle.flush()
        assert progress.poll() is None
        handle.write(line[30:])
    assert progress.poll() == "update 60/400, epoch 1, loss 7.000"


def test_a_running_job_prints_its_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(demo_jobs, "PROGRESS_SECONDS", 0.01)
    log = tmp_path / "train.log"
    written = threading.Event()

    def work() -> dict:
        log.write_text(_train_inner(10, 5.0), encoding="utf-8")
        written.wait(5.0)  # until the watcher has reported it
        return {}

    original = demo_jobs._say

    def say(message: str) -> None:
        original(message)
        if "update 10/" in message:
            written.set()

    monkeypatch.setattr(demo_jobs, "_say", say)
    run_jobs([Job("a", "pretrain Mono (grc)", work, lambda r: "ok", log_file=log, total_updates=400)], 1)
    lines = capsys.readouterr().err.splitlines()
    assert "[1/1] pretrain Mono (grc): update 10/400, epoch 1, loss 5.000" in lines
    assert lines[-1].startswith("[1/1] pretrain Mono (grc): done in ")


def test_finetune_job_entry_point_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo_jobs.main([str(tmp_path)]) == 2
    assert "usage: python -m xlint.cli.demo_jobs JOB_DIR" in capsys.readouterr().err


# --------------------------------------------------------------------------- data, baselines, tables


def _demo_data(root: Path) -> DemoData:
    raw = {lang: root / f"raw/{lang}.txt" for lang in RAW_LANGUAGES}
    pretrain = {lang: root / f"pretrain/{lang}.txt" for lang in RAW_LANGUAGES}
    pos = {lang: {split: root / f"pos/{lang}/{split}.tsv" for split in SPLITS} for lang in POS_LANGUAGES}
    for lang in RAW_LANGUAGES:
        for path in (raw[lang], pretrain[lang]):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{path.parent.name} {lang}\n", encoding="utf-8")
    test_sets = {"en": [[("In", "ADP"), ("the", "DET"), ("beginning", "NOUN"), ("was", "VERB")]],
                 "grc": [[("ἐδάκρυσεν", "VERB"), ("ὁ", "DET"), ("Ἰησοῦς", "NOUN")], [("Ἰησοῦς", "NOUN")]],
                 "tr": [[("Burda", "PRON"), ("da", "PRT"), ("yok", "VERB"), ("ev", "NOUN"), ("su", "NOUN")]]}
    for lang in POS_LANGUAGES:
        write_conll(pos[lang]["train"], [[("w", "VERB"), ("x", "VERB"), ("y", "NOUN")]])
        write_conll(pos[lang]["dev"], [[("w", "VERB")]])
        write_conll(pos[lang]["test"], test_sets[lang])
    return DemoData(root, raw, pretrain, pos, root / "manifest.json", {})


def test_preprocessing_reads_the_pretraining_text_not_the_raw_text(tmp_path: Path) -> None:
    data = _demo_data(tmp_path / "data")
    settings = _settings(tmp_path)
    command = commands_demo.preprocess_command(data, tmp_path / "corpus", settings)
    inputs = command[-len(commands_demo.DEMO_LANGUAGES):]
    assert inputs == [f"{lang}={data.pretrain[lang]}" for lang in commands_demo.DEMO_LANGUAGES]
    assert not any(str(path) in command for path in data.raw.values())
    key = options_key(commands_demo.preprocess_options(data, settings))
    data.pretrain["tr"].write_text("changed\n", encoding="utf-8")
    assert options_key(commands_demo.preprocess_options(data, settings)) != key


def test_majority_baselines_come_from_each_test_set(tmp_path: Path) -> None:
    data = _demo_data(tmp_path / "data")
    baselines = majority_baselines(data.pos, ["en", "grc", "tr"])
    assert (baselines["grc"].tag, baselines["grc"].accuracy) == ("NOUN", 50.0)
    assert (baselines["tr"].tag, baselines["tr"].accuracy) == ("NOUN", 40.0)
    source = source_majority_baselines(data.pos, "en", ["grc", "tr"])
    assert (source["tr"].tag, source["tr"].accuracy) == ("VERB", 20.0)  # en train's majority is VERB


def test_downstream_table_puts_the_baselines_beside_the_scores(tmp_path: Path) -> None:
    data = _demo_data(tmp_path / "data")
    baselines = majority_baselines(data.pos, ["en", "grc", "tr"])
    source = source_majority_baselines(data.pos, "en", ["en", "grc", "tr"])
    scores = {"Joint (grc+tr+en)": {"en within (silver)": [80.0, 82.0], "grc zero-shot": [55.0, 45.0],
                                    "tr zero-shot": [30.0, 50.0], "tr within": [61.0]}}
    lines = downstream_table(scores, baselines, source).splitlines()
    assert lines[0] == "| model | " + " | ".join(COLUMNS) + " |"
    assert lines[2].startswith("| *majority tag of the test set* | 25.0 (ADP) | 50.0 (NOUN) | 40.0 (NOUN) |")
    assert lines[3].startswith("| *always VERB (majority of en train)* | 25.0 (VERB) |")
    assert lines[4] == "| Joint (grc+tr+en) | 81.0 ± 1.4 | 50.0 ± 7.1 | 40.0 ± 14.1 | – | 61.0 |"
    verdict = zero_shot_verdict(scores, baselines).splitlines()
    assert verdict[0] == ("grc zero-shot: 0 of 1 models beat the majority baseline (NOUN 50.0) on average, "
                          "1 of 2 single runs; best run 55.0")
    assert verdict[1].startswith(
        "tr zero-shot: 0 of 1 models beat the majority baseline (NOUN 40.0) on average, 1 of 2")

"""`xlint interpolate` end to end on tiny fine-tuned POS models (Wu et al. 2022's θ_src, θ_tgt, θ_{src,tgt}).

The three models are fine-tuned by `xlint finetune` (real fairseq-train runs, so the module is
slow) from the synthetic world of tests/test_finetune_support.py: en is the source, fr the target.
The aggregation tests at the end are fast (hand-written sweep summaries).
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from scipy import stats

import xlint.user_dir  # noqa: F401  (allow-lists fairseq's checkpoint globals)

from xlint.cli.main import cli

from test_finetune_support import world

COMMON = ("--cpu", "--cpu-threads", "1", "--quiet")
SETTINGS = {
    "src": ("--setting", "zero-shot", "--source", "en", "--targets", "fr"),
    "tgt": ("--setting", "within", "--source", "fr"),
    "bi": ("--setting", "bilingual", "--source", "en", "--targets", "fr"),
}
TRAIN = ("--epochs", "1", "--lr", "2e-3", "--batch-size", "16", "--metric", "acc", "--seeds", "1", "--no-evaluate")


@pytest.fixture(scope="module")
def ft(tmp_path_factory):
    return world(tmp_path_factory)


@pytest.fixture(scope="module")
def models(ft, tmp_path_factory):
    """{src, tgt, bi} -> checkpoint_best.pt of one seed."""
    root = tmp_path_factory.mktemp("wu2022")
    paths = {}
    for name, setting in SETTINGS.items():
        save_dir = root / name
        result = CliRunner().invoke(cli, ["finetune", str(ft.converted["pos"]), "--save-dir", str(save_dir),
                                          "--pretrained", str(ft.checkpoint), *setting, *TRAIN, *COMMON])
        assert result.exit_code == 0, result.output[-4000:] + repr(result.exception)
        paths[name] = save_dir / "bs16-lr0.002" / "seed1" / "checkpoint_best.pt"
    return paths


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def sweep(out: Path, *args) -> dict:
    result = invoke("interpolate", *args, "--out", out, "--cpu", "--quiet")
    assert result.exit_code == 0, result.output[-4000:] + repr(result.exception)
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


def evaluate_dev(checkpoint: Path, out: Path) -> dict:
    result = invoke("evaluate", checkpoint, "--split", "dev", "--languages", "en,fr", "--out", out, "--cpu", "--quiet")
    assert result.exit_code == 0, result.output[-4000:]
    return json.loads(out.with_name(out.name + ".json").read_text(encoding="utf-8"))["scores"]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def scores_at(summary: dict, point) -> dict:
    return next(p["scores"] for p in summary["points"] if p["point"] == list(point))


@pytest.mark.slow
def test_the_three_settings_start_from_the_same_head(ft, tmp_path):
    """fairseq-train seeds torch, sets up the task and builds the model (head included) in this order
    (fairseq_cli/train.py); replayed for each setting's planned command, the heads are identical."""
    from fairseq import tasks, utils

    from xlint.cli.finetune_plan import FinetuneSpec, plan_runs
    from xlint.cli.fairseq_runner import quiet_loggers
    from xlint.user_dir.tasks.finetune_base import parse_train_args

    heads = {}
    for name, setting in SETTINGS.items():
        spec = FinetuneSpec(data=ft.converted["pos"], pretrained=ft.checkpoint, save_dir=tmp_path / name,
                            source=setting[3], setting=setting[1],
                            targets=[setting[5]] if len(setting) > 4 else None, seeds=[7], epochs=1,
                            batch_sizes=[16], lrs=[2e-3], cpu=True, dry_run=True, quiet=True)
        runs, _ = plan_runs(spec)
        with quiet_loggers():
            cfg = parse_train_args(runs[0].command[1:])
            utils.set_torch_seed(cfg.common.seed)
            task = tasks.setup_task(cfg.task)
            model = task.build_model(cfg.model)
        heads[name] = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("heads.")}
    assert heads["src"] and heads["src"].keys() == heads["tgt"].keys() == heads["bi"].keys()
    for key in heads["src"]:
        assert torch.equal(heads["src"][key], heads["tgt"][key]), key
        assert torch.equal(heads["src"][key], heads["bi"][key]), key


@pytest.mark.slow
def test_1d_endpoints_equal_xlint_evaluate_and_checkpoints_are_untouched(models, tmp_path, monkeypatch):
    from xlint.cli import interpolation_sweep

    loaded = []
    original = interpolation_sweep.load_anchor

    def recording(path, name, data):
        anchor = original(path, name, data)
        loaded.append((anchor, {k: v.clone() for k, v in anchor.state.items() if isinstance(v, torch.Tensor)}))
        return anchor

    monkeypatch.setattr(interpolation_sweep, "load_anchor", recording)
    hashes = {name: sha(path) for name, path in models.items()}
    summary = sweep(tmp_path / "line", models["src"], models["bi"], "--alphas", "0,0.5,1", "--languages", "en,fr")
    assert summary["config"]["roles"] == {"en": "source", "fr": "target"}
    assert scores_at(summary, [0.0]) == evaluate_dev(models["src"], tmp_path / "eval-src")
    assert scores_at(summary, [1.0]) == evaluate_dev(models["bi"], tmp_path / "eval-bi")
    assert scores_at(summary, [0.5]) != scores_at(summary, [0.0])
    # the loaded state dicts and the files are unchanged
    assert len(loaded) == 2
    for anchor, saved in loaded:
        assert all(torch.equal(anchor.state[k], v) for k, v in saved.items())
    assert hashes == {name: sha(path) for name, path in models.items()}
    # tidy rows: point x language x metric, normalised by the bilingual model (alpha = 1)
    rows = [json.loads(line) for line in (tmp_path / "line" / "scores.jsonl").read_text().splitlines()]
    assert len(rows) == 3 * 2 * 2 and summary["rows"] == 12
    for row in rows:
        reference = scores_at(summary, [1.0])[row["language"]][row["metric"]]
        assert row["normalised"] == pytest.approx(row["score"] / reference)
    assert summary["geometry"]["distance_A_B"] > 0
    assert "| 0.5 |" in (tmp_path / "line" / "summary.md").read_text()
    # the explicit spelling `interpolate sweep` gives the same files
    sweep(tmp_path / "explicit", "sweep", models["src"], models["bi"], "--alphas", "0,0.5,1", "--languages", "en,fr")
    assert (tmp_path / "explicit" / "scores.jsonl").read_bytes() == (tmp_path / "line" / "scores.jsonl").read_bytes()


@pytest.mark.slow
def test_a_killed_and_resumed_sweep_equals_an_uninterrupted_one(models, tmp_path):
    from xlint.cli.interpolation_sweep import SweepSpec, run_sweep

    args = dict(checkpoints=[models["src"], models["bi"]], alphas=[-0.5, 0.25, 0.75, 1.5], cpu=True, progress=False,
                scope="encoder")
    run_sweep(SweepSpec(out=tmp_path / "whole", **args))

    class Killed(Exception):
        pass

    def kill(number, point):
        if number == 2:
            raise Killed

    with pytest.raises(Killed):
        run_sweep(SweepSpec(out=tmp_path / "resumed", on_point=kill, **args))
    journal = tmp_path / "resumed" / "points.jsonl"
    assert len(journal.read_text().splitlines()) == 2 and not (tmp_path / "resumed" / "summary.json").exists()
    with open(journal, "a", encoding="utf-8") as handle:
        handle.write('{"point": [0.75], "scores": {"en"')  # a write torn by the kill
    evaluated = []
    run_sweep(SweepSpec(out=tmp_path / "resumed", on_point=lambda n, p: evaluated.append(p), **args))
    assert evaluated == [(0.75,), (1.5,), (1.0,)]  # only the missing points (the reference last)
    for name in ("scores.jsonl", "summary.json", "summary.md"):
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    # another sweep in the same folder is refused
    other = invoke("interpolate", models["src"], models["bi"], "--out", tmp_path / "whole", "--scope", "head",
                   "--cpu", "--quiet")
    assert other.exit_code != 0 and "holds another sweep" in other.output


@pytest.mark.slow
def test_2d_plane_shards_and_merge(models, tmp_path):
    plane = ("--plane", models["tgt"], "--alphas", "0,1", "--alphas2", "0,0.5,1", "--languages", "en,fr")
    whole = sweep(tmp_path / "whole", models["src"], models["bi"], *plane)
    assert len(whole["points"]) == 6 and whole["config"]["roles"] == {"en": "source", "fr": "target"}
    assert scores_at(whole, [1.0, 0.0]) == evaluate_dev(models["src"], tmp_path / "eval-src")
    assert scores_at(whole, [0.0, 1.0]) == evaluate_dev(models["tgt"], tmp_path / "eval-tgt")
    assert scores_at(whole, [0.0, 0.0]) == evaluate_dev(models["bi"], tmp_path / "eval-bi")
    geometry = whole["geometry"]
    assert 0 < geometry["angle_degrees"] < 180
    assert geometry["norm_ratio"] == pytest.approx(geometry["norm_delta_src"] / geometry["norm_delta_tgt"])

    sharded = tmp_path / "sharded"
    for index in range(2):
        result = invoke("interpolate", models["src"], models["bi"], *plane, "--shard", f"{index}/2", "--out", sharded,
                        "--cpu", "--quiet")
        assert result.exit_code == 0, result.output[-4000:]
    assert len(json.loads((sharded / "shard-0-of-2" / "summary.json").read_text())["points"]) == 3
    early = invoke("interpolate", "merge", tmp_path / "whole")
    assert early.exit_code != 0 and "no shard" in early.output
    merged = invoke("interpolate", "merge", sharded)
    assert merged.exit_code == 0, merged.output
    for name in ("scores.jsonl", "summary.md"):
        assert (sharded / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    shutil.rmtree(sharded / "shard-1-of-2")
    missing = invoke("interpolate", "merge", sharded)
    assert missing.exit_code != 0 and "1/2 missing" in missing.output


def edited_checkpoint(source: Path, destination: Path, edit) -> Path:
    state = torch.load(source, map_location="cpu", weights_only=False)  # the saved cfg is a plain dict
    edit(state)
    torch.save(state, destination)
    return destination


def edited_data(ft, destination: Path, edit) -> Path:
    shutil.copytree(ft.converted["pos"], destination)
    meta = json.loads((destination / "meta.json").read_text(encoding="utf-8"))
    edit(meta)
    (destination / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return destination


@pytest.mark.slow
def test_checkpoints_that_cannot_be_combined_are_refused_in_one_line(ft, models, tmp_path):
    def rename(state):
        state["model"]["heads.tagging.renamed.weight"] = state["model"].pop("heads.tagging.out_proj.weight")

    def reshape(state):
        state["model"]["encoder.layernorm_embedding.bias"] = torch.zeros(3)

    def relabel(meta):
        meta["labels"] = list(reversed(meta["labels"]))

    def redictionary(meta):
        meta["dictionary_sha256"] = "0" * 64

    def point_to(data):
        def edit(state):
            state["cfg"]["task"]["data"] = str(data)
        return edit

    cases = {
        "architecture": (lambda s: s["cfg"]["model"].__setitem__("activation_fn", "relu"),
                         "different architectures: activation_fn"),
        "names": (rename, "tensor heads.tagging.out_proj.weight is missing from CKPT_B"),
        "shapes": (reshape, "tensor encoder.layernorm_embedding.bias has shape"),
        "labels": (point_to(edited_data(ft, tmp_path / "relabelled", relabel)), "different label sets"),
        "dictionary": (point_to(edited_data(ft, tmp_path / "redict", redictionary)), "different dictionaries"),
        "task": (lambda s: s["cfg"]["task"].__setitem__("_name", "xlint_classification"), "different tasks"),
    }
    for name, (edit, message) in cases.items():
        other = edited_checkpoint(models["bi"], tmp_path / f"{name}.pt", edit)
        out = tmp_path / f"out-{name}"
        result = invoke("interpolate", models["src"], other, "--out", out, "--cpu", "--quiet")
        assert result.exit_code != 0, name
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and message in lines[0], (name, result.output)
        assert not out.exists(), name
    plane = invoke("interpolate", models["src"], models["bi"], "--plane", tmp_path / "shapes.pt",
                   "--out", tmp_path / "out-plane", "--cpu", "--quiet")
    assert plane.exit_code != 0 and "--plane" in plane.output and not (tmp_path / "out-plane").exists()


# --------------------------------------------------------------------------- aggregation (fast)


def fake_sweep(folder: Path, seed: int, scores: dict, source="en", target="fr", task="xlint_tagging") -> Path:
    """A finished 1D sweep summary: ``scores`` maps alpha -> (source acc, target acc)."""
    points = [{"point": [alpha], "scores": {source: {"acc": s}, target: {"acc": t}}} for alpha, (s, t) in
              scores.items()]
    config = {"mode": "1d", "scope": "all", "split": "dev", "task": task, "kind": "pos", "metrics": ["acc"],
              "primary_metric": "acc", "languages": [source, target], "roles": {source: "source", target: "target"},
              "grid": [[a] for a in scores], "reference": [1.0], "seeds": {"A": seed, "B": seed}, "shard": None}
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"config": config, "points": points,
                                                     "geometry": {"distance_A_B": 1.0}}))
    return folder


def test_aggregate_normalises_each_seed_by_its_bilingual_model_with_t_intervals(tmp_path):
    from xlint.cli.interpolation_aggregate import aggregate_sweeps

    seeds = {1: {0.0: (90.0, 40.0), 1.0: (92.0, 80.0)}, 2: {0.0: (88.0, 30.0), 1.0: (90.0, 75.0)},
             3: {0.0: (91.0, 50.0), 1.0: (91.0, 70.0)}}
    folders = [fake_sweep(tmp_path / f"s{s}", s, scores) for s, scores in seeds.items()]
    folders.append(fake_sweep(tmp_path / "other-pair", 1, {0.0: (80.0, 20.0), 1.0: (80.0, 60.0)}, target="de"))
    result = aggregate_sweeps(folders)
    assert len(result["experiments"]) == 2
    experiment = next(e for e in result["experiments"] if e["target"] == "fr")
    row = next(r for r in experiment["rows"] if r["language"] == "fr" and r["point"] == [0.0])
    ratios = [40 / 80, 30 / 75, 50 / 70]
    mean = sum(ratios) / 3
    variance = sum((r - mean) ** 2 for r in ratios) / 2
    half = stats.t.ppf(0.975, 2) * math.sqrt(variance / 3)
    assert row["role"] == "target" and row["normalised"]["mean"] == pytest.approx(mean)
    assert row["normalised"]["variance"] == pytest.approx(variance)
    assert row["normalised"]["ci_low"] == pytest.approx(mean - half)
    assert row["normalised"]["ci_high"] == pytest.approx(mean + half)
    pooled = next(p for p in result["pooled"] if p["role"] == "target" and p["point"] == [0.0])
    values = ratios + [20 / 60]
    pooled_mean = sum(values) / 4
    pooled_half = stats.t.ppf(0.975, 3) * math.sqrt(sum((v - pooled_mean) ** 2 for v in values) / 3 / 4)
    assert pooled["normalised"]["n"] == 4 and pooled["normalised"]["mean"] == pytest.approx(pooled_mean)
    assert pooled["normalised"]["ci_high"] == pytest.approx(pooled_mean + pooled_half)
    assert pooled["normalised_variance"] == pytest.approx(variance)  # the one-seed pair has no variance
    bilingual = next(p for p in result["pooled"] if p["role"] == "source" and p["point"] == [1.0])
    assert bilingual["normalised"]["mean"] == 1.0


def test_aggregate_cli_and_its_refusals(tmp_path):
    folder = fake_sweep(tmp_path / "s1", 1, {0.0: (90.0, 40.0), 1.0: (92.0, 80.0)})
    result = invoke("interpolate", "aggregate", folder, "--out", tmp_path / "agg")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "agg.json").read_text())["pooled"]
    assert "| 1d | all | 0 | target | 1 |" in (tmp_path / "agg.md").read_text()
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = invoke("interpolate", "aggregate", empty, "--out", tmp_path / "agg2")
    assert refused.exit_code != 0 and "not a finished sweep" in refused.output and not (tmp_path / "agg2.json").exists()


def fake_plane(folder: Path, seed: int) -> Path:
    axis = [0.0, 0.5, 1.0]
    points = [{"point": [a1, a2], "scores": {"en": {"acc": 90 - 10 * a2 + seed}, "fr": {"acc": 80 - 30 * a1}}}
              for a1 in axis for a2 in axis]
    config = {"mode": "2d", "scope": "all", "split": "dev", "task": "xlint_tagging", "kind": "pos", "metrics": ["acc"],
              "primary_metric": "acc", "languages": ["en", "fr"], "roles": {"en": "source", "fr": "target"},
              "grid": [p["point"] for p in points], "reference": [0.0, 0.0], "seeds": {"A": seed}, "shard": None}
    folder.mkdir(parents=True)
    geometry = {"norm_delta_src": 2.0, "norm_delta_tgt": 2.0 + seed, "norm_ratio": 2 / (2 + seed),
                "cosine": 0.5, "angle_degrees": 60.0 - seed}
    (folder / "summary.json").write_text(json.dumps({"config": config, "points": points, "geometry": geometry}))
    return folder


def test_every_figure_is_drawn_as_png_and_pdf(tmp_path):
    line = [fake_sweep(tmp_path / f"line{s}", s, {0.0: (90.0 + s, 40.0), 0.5: (91.0, 60.0 + s), 1.0: (92.0, 80.0)})
            for s in (1, 2)]
    plane = [fake_plane(tmp_path / f"plane{s}", s) for s in (1, 2)]
    assert invoke("interpolate", "aggregate", *line, "--out", tmp_path / "line.json").exit_code == 0
    assert invoke("interpolate", "aggregate", *plane, "--out", tmp_path / "plane").exit_code == 0
    for source, figure in (("line", "1d"), ("line", "variance"), ("plane", "2d"), ("plane", "geometry")):
        result = invoke("plot", "interpolation", tmp_path / f"{source}.json", "--figure", figure,
                        "--out", tmp_path / f"fig-{figure}")
        assert result.exit_code == 0, result.output
        assert (tmp_path / f"fig-{figure}.png").stat().st_size > 5000 and (tmp_path / f"fig-{figure}.pdf").is_file()
    wrong = invoke("plot", "interpolation", tmp_path / "line.json", "--figure", "2d", "--out", tmp_path / "x")
    assert wrong.exit_code != 0 and "no 2D sweep" in wrong.output and not (tmp_path / "x.png").exists()

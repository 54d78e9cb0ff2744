"""Gradient similarity (Wang et al. 2020, Fig. 3): the numeric core, the probes, the training hook.

The core is checked against numpy on gradients taken by separate plain backward passes;
the probe on the tiny ``xlm_adapter`` against one plain backward pass over each whole
probe batch (no micro-batches); the hook by real ``fairseq-train`` runs (slow): training
is bit-identical with and without it (``xlm_mlm`` and ``meta_mlm``), a resume leaves no
update twice in the JSONL file, and 2 gloo ranks give the cosines of one process.
"""
from __future__ import annotations

import json
import math
import re
from typing import Dict, List

import numpy as np
import pytest
import torch
import torch.nn as nn

import xlint.user_dir  # noqa: F401  (registers the task and model)
from fairseq import optim, options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

from conftest import USER_DIR, run_fairseq_train
from xlint.analysis.gradient_similarity import (
    GradientLayout,
    Similarity,
    aggregate_groups,
    combine,
    cosine,
    group_gram_matrices,
    pair_similarities,
    parameter_group,
)
from xlint.user_dir.data.update_rows import UpdateRowsLog, read_rows
from xlint.user_dir.tasks.grad_sim_probe import (
    micro_batch_seed,
    probe_pairs,
    probe_rows,
    shared_named_parameters,
    similarity_rows,
    total_cosines,
)
from xlint.user_dir.tasks.xlm_mlm import grad_sim_logging_output

# --------------------------------------------------------------------------- group naming


@pytest.mark.parametrize("name, group", [
    ("encoder.embed_tokens.weight", "embeddings"),
    ("encoder.embed_positions.weight", "embeddings"),
    ("encoder.layernorm_embedding.bias", "embeddings"),
    ("encoder.layers.0.self_attn.attention.k_proj.weight", "layer0.attention"),
    ("encoder.layers.11.ffn.fc2.bias", "layer11.ffn"),
    ("encoder.layers.1.self_attn_layer_norm.weight", "layer1.layer_norm"),
    ("encoder.layers.1.final_layer_norm.bias", "layer1.layer_norm"),
    ("encoder.layers.3.adapter_after_ffn.up.weight", "layer3.adapter"),
    ("encoder.lm_head.dense.weight", "lm_head"),
    ("encoder.lm_head.bias", "lm_head"),
    ("something.else", "other"),
])
def test_parameter_group(name, group):
    assert parameter_group(name) == group


def test_aggregate_groups():
    assert aggregate_groups("layer2.ffn") == ["layer2.ffn", "total", "layer2", "ffn"]
    assert aggregate_groups("embeddings") == ["embeddings", "total"]


def test_cosine_edge_cases():
    assert cosine(1.0, 1.0, 4.0) == pytest.approx(0.5)
    assert math.isnan(cosine(0.0, 0.0, 1.0))
    assert math.isnan(cosine(float("nan"), 1.0, 1.0))
    assert math.isnan(cosine(1.0, float("inf"), 1.0))


# --------------------------------------------------------------------------- the core against numpy


class TinyEncoder(nn.Module):
    """Parameter names like xlm_adapter's: embeddings, two layers (attention, FFN, norm), a head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed_tokens = nn.Embedding(11, 6)
        self.layers = nn.ModuleList()
        for _ in range(2):
            layer = nn.Module()
            layer.self_attn = nn.Linear(6, 6)
            layer.ffn = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 6))
            layer.final_layer_norm = nn.LayerNorm(6)
            self.layers.append(layer)
        self.lm_head = nn.Linear(6, 11)

    def forward(self, tokens):
        x = self.embed_tokens(tokens)
        for layer in self.layers:
            x = layer.final_layer_norm(x + layer.ffn(torch.tanh(layer.self_attn(x))))
        return self.lm_head(x)


def plain_gradients(model: nn.Module, tokens: torch.Tensor, targets: torch.Tensor) -> Dict[str, np.ndarray]:
    model.zero_grad()
    nn.functional.cross_entropy(model(tokens).reshape(-1, 11), targets.reshape(-1)).backward()
    return {name: p.grad.detach().numpy().astype(np.float64).ravel() for name, p in model.named_parameters()}


def numpy_cos(a: Dict[str, np.ndarray], b: Dict[str, np.ndarray], names: List[str]) -> float:
    va, vb = np.concatenate([a[n] for n in names]), np.concatenate([b[n] for n in names])
    return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))


def test_gram_matrices_against_numpy_on_separate_backward_passes():
    model = TinyEncoder()
    generator = torch.Generator().manual_seed(1)
    batches = [(torch.randint(0, 11, (4, 5), generator=generator), torch.randint(0, 11, (4, 5), generator=generator))
               for _ in range(3)]  # "en", "fr", and a second "en" batch
    grads = [plain_gradients(model, *batch) for batch in batches]
    named = list(model.named_parameters())
    layout = GradientLayout.of((name, p.shape) for name, p in named)
    flats = []
    for g in grads:
        flat = layout.zeros()
        layout.add_into(flat, [torch.from_numpy(g[name].reshape(p.shape)) for name, p in named])
        flats.append(flat)
    grams = group_gram_matrices(flats, layout, chunk=7)  # small chunks: the accumulation over slices
    sims = {(s.a, s.b, s.group): s for s in pair_similarities(grams, [(0, 1), (0, 2)])}
    all_names = [name for name, _ in named]
    expected_groups = {
        "total": all_names,
        "embeddings": ["embed_tokens.weight"],
        "lm_head": ["lm_head.weight", "lm_head.bias"],
        "layer1.ffn": [n for n in all_names if n.startswith("layers.1.ffn.")],
        "layer0": [n for n in all_names if n.startswith("layers.0.")],
        "attention": [n for n in all_names if ".self_attn." in n],
        "ffn": [n for n in all_names if ".ffn." in n],
        "layer_norm": [n for n in all_names if "layer_norm" in n],
    }
    for group, names in expected_groups.items():
        for a, b in ((0, 1), (0, 2)):
            got = sims[(a, b, group)]
            assert got.cos == pytest.approx(numpy_cos(grads[a], grads[b], names), rel=1e-6, abs=1e-9), group
            va = np.concatenate([grads[a][n] for n in names])
            assert got.sq_norm_a == pytest.approx(float(va @ va), rel=1e-6)
    # every leaf and aggregate group is reported, and aggregates re-aggregate from their leaves
    assert {s.group for s in sims.values()} >= set(expected_groups) | {"layer0.attention", "layer1.layer_norm"}
    leaves = [sims[(0, 1, g)] for g in layout.groups]
    assert combine(leaves, "total").cos == pytest.approx(sims[(0, 1, "total")].cos, rel=1e-12)


def test_layout_rejects_wrong_gradient_count_and_empty_models():
    layout = GradientLayout.of([("layers.0.ffn.weight", (2, 3))])
    with pytest.raises(ValueError):
        layout.add_into(layout.zeros(), [])
    with pytest.raises(ValueError):
        GradientLayout.of([])


def test_non_finite_gradients_give_nan_not_an_error():
    layout = GradientLayout.of([("embed_tokens.weight", (3,)), ("lm_head.bias", (2,))])
    flats = [torch.tensor([1.0, 2.0, 3.0, 1.0, 0.0]), torch.tensor([float("nan"), 1.0, 0.0, 1.0, 1.0])]
    sims = {s.group: s for s in pair_similarities(group_gram_matrices(flats, layout), [(0, 1)])}
    assert not sims["total"].finite and math.isnan(sims["total"].cos)
    assert sims["lm_head"].finite and sims["lm_head"].cos == pytest.approx(1 / math.sqrt(2))


# --------------------------------------------------------------------------- the probe on the tiny xlm_adapter


def build_task(data_dir, *extra: str):
    argv = [str(data_dir), "--user-dir", str(USER_DIR), "--task", "xlm_mlm", "--arch", "xlm_adapter_tiny",
            "--criterion", "masked_lm", "--optimizer", "adam", "--lr", "1e-3", "--max-tokens", "256",
            "--tokens-per-sample", "64", "--sample-break-mode", "eos", "--seed", "3", "--cpu",
            "--language-specific", "adapter", "--grad-sim-sentences", "24", *extra]
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))
    task = tasks.setup_task(cfg.task)
    task.load_dataset("train")
    model = task.build_model(cfg.model)
    return cfg, task, model, task.build_criterion(cfg.criterion)


@pytest.fixture(scope="module")
def tiny(tiny_mlm_data):
    return build_task(tiny_mlm_data.path)


def test_probe_against_one_plain_backward_pass_per_probe(tiny):
    cfg, task, model, criterion = tiny
    probe = task.gradient_similarity_probe(dropout=False, max_tokens=64)  # several micro-batches per probe
    update = 5
    probe.dataset.set_epoch(update + 1)
    probes, sims = probe.measure(model, criterion, update)
    assert len(probe.micro_batches(probe_rows(probe.candidate_rows(0), 24, 3, update, 0, 0))) > 2
    # the hand computation: each probe's rows in ONE batch, one plain backward of the mean loss
    shared = [name for name, _ in shared_named_parameters(model)]
    assert shared and not any(".per_language." in n for n in shared)
    model.eval()
    hand = []
    for lang_index in range(len(task.languages)):
        for k in (0, 1):
            rows = probe_rows(probe.candidate_rows(lang_index), 24, cfg.common.seed, update, lang_index, k)
            batch = probe.dataset.collater([probe.dataset[int(i)] for i in rows])
            model.zero_grad()
            loss, sample_size, _ = criterion(model, batch)
            (loss / sample_size).backward()
            params = dict(model.named_parameters())
            hand.append({n: params[n].grad.detach().double().numpy().ravel() for n in shared})
    model.zero_grad(set_to_none=True)
    rows = similarity_rows(probes, sims, update, 1)
    by_key = {(r["pair"], r["group"]): r for r in rows}
    groups = {"total": shared, "embeddings": [n for n in shared if "embed" in n],
              "layer1.attention": [n for n in shared if n.startswith("encoder.layers.1.self_attn.")],
              "ffn": [n for n in shared if ".ffn." in n]}
    pairs = {"en-fr": (0, 2), "en-en": (0, 1), "fr-fr": (2, 3)}
    for pair, (a, b) in pairs.items():
        for group, names in groups.items():
            got = by_key[(pair, group)]
            assert got["cos"] == pytest.approx(numpy_cos(hand[a], hand[b], names), abs=2e-5), (pair, group)
            va = np.concatenate([hand[a][n] for n in names])
            assert got["sq_norm_a"] == pytest.approx(float(va @ va), rel=1e-4), (pair, group)
            assert got["update"] == update and got["epoch"] == 1 and got["finite"]
    assert total_cosines(rows).keys() == {"grad_cos_en_fr", "grad_cos_en_en", "grad_cos_fr_fr"}


def test_probe_changes_no_gradient_generator_state_or_module_mode(tiny):
    _, task, model, criterion = tiny
    probe = task.gradient_similarity_probe()
    probe.dataset.set_epoch(1)
    marker = {name: torch.full_like(p, 0.25) for name, p in model.named_parameters()}
    for name, p in model.named_parameters():
        p.grad = marker[name].clone()
    model.train()
    model.encoder.layers[1].eval()  # a mixed state must come back as it was
    modes = [m.training for m in model.modules()]
    torch.manual_seed(123)
    state = torch.get_rng_state()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    first = probe.measure(model, criterion, 0)[1]
    assert torch.equal(torch.get_rng_state(), state)
    assert [m.training for m in model.modules()] == modes
    for name, p in model.named_parameters():
        assert torch.equal(p.grad, marker[name]), name
        assert torch.equal(p, before[name]), name
    second = probe.measure(model, criterion, 0)[1]
    assert [s.cos for s in first] == [s.cos for s in second]  # its own seeded streams: reproducible
    model.zero_grad(set_to_none=True)


def test_dropout_option_changes_the_probes(tiny):
    _, task, model, criterion = tiny
    with_dropout, without = task.gradient_similarity_probe(), task.gradient_similarity_probe(dropout=False)
    for probe in (with_dropout, without):
        probe.dataset.set_epoch(1)
    a = {(s.a, s.b, s.group): s.cos for s in with_dropout.measure(model, criterion, 0)[1]}
    b = {(s.a, s.b, s.group): s.cos for s in without.measure(model, criterion, 0)[1]}
    assert a.keys() == b.keys() and any(abs(a[k] - b[k]) > 1e-4 for k in a)


def test_task_option_selects_eval_mode(tiny_mlm_data):
    _, task, _, _ = build_task(tiny_mlm_data.path, "--grad-sim-no-dropout")
    assert task.gradient_similarity_probe().settings.dropout is False
    _, task, _, _ = build_task(tiny_mlm_data.path)
    assert task.gradient_similarity_probe().settings.dropout is True


def test_probe_rows_are_independent_and_reproducible():
    rows = np.arange(100, 160)
    a0, a1 = probe_rows(rows, 20, 1, 10, 0, 0), probe_rows(rows, 20, 1, 10, 0, 1)
    assert len(set(a0)) == 20 and set(a0) <= set(rows)
    assert not np.array_equal(a0, a1)
    assert np.array_equal(a0, probe_rows(rows, 20, 1, 10, 0, 0))
    assert not np.array_equal(a0, probe_rows(rows, 20, 1, 20, 0, 0))  # another update, other rows
    assert len(probe_rows(rows, 500, 1, 0, 0, 0)) == 60  # a small language: all its rows
    assert micro_batch_seed(1, 10, 0, 0, 3) != micro_batch_seed(1, 10, 0, 0, 4)
    assert probe_pairs(3) == [(0, 2), (0, 4), (2, 4), (0, 1), (2, 3), (4, 5)]


def test_non_finite_parameters_are_recorded_and_training_goes_on(tiny_mlm_data, tmp_path):
    cfg, task, model, criterion = build_task(tiny_mlm_data.path, "--grad-sim-interval", "1",
                                             "--grad-sim-file", str(tmp_path / "gs.jsonl"))
    with torch.no_grad():
        model.encoder.layers[0].ffn.fc1.weight[0, 0] = float("inf")
    optimizer = optim.build_optimizer(cfg.optimizer, [p for p in model.parameters() if p.requires_grad])
    dataset = task.dataset("train")
    sample = dataset.collater([dataset[int(i)] for i in dataset.language_rows(0)[:4]])
    loss, _, logging_output = task.train_step(sample, model, criterion, optimizer, 0)
    rows = read_rows(str(tmp_path / "gs.jsonl"))
    assert rows and any(not r["finite"] for r in rows)
    assert all(r["cos"] is None for r in rows if not r["finite"])
    assert all(json.dumps(r) for r in rows)  # valid JSON: no NaN literals
    assert "grad_cos_en_fr" not in logging_output  # a non-finite cosine is not averaged into the log


def test_logging_output_averages_over_ranks():
    from fairseq.logging import metrics

    from xlint.user_dir.tasks.xlm_mlm import reduce_grad_sim_metrics
    rows = [{"group": "total", "lang_a": "en", "lang_b": "fr", "cos": 0.25},
            {"group": "ffn", "lang_a": "en", "lang_b": "fr", "cos": 0.5},
            {"group": "total", "lang_a": "en", "lang_b": "en", "cos": None}]
    out = grad_sim_logging_output(rows)
    assert out["grad_cos_en_fr"] == 0.25 and "grad_cos_en_en" not in out
    with metrics.aggregate(new_root=True) as agg:
        reduce_grad_sim_metrics([out, out, {"loss": 1.0}])  # two ranks' identical values + another micro-batch
    assert agg["grad_cos_en_fr"].avg == pytest.approx(0.25)


def test_log_drops_redone_rows_and_skips_a_torn_line(tmp_path):
    log = UpdateRowsLog(str(tmp_path / "sub" / "gs.jsonl"))
    assert log.keep_before(5) == 0
    log.append([{"update": u, "group": "total"} for u in (0, 10, 20)])
    with open(log.path, "a") as f:
        f.write('{"update": 30, "gro')  # a crash in the middle of a line
    assert [r["update"] for r in log.read()] == [0, 10, 20]
    assert log.keep_before(20) == 1
    assert [r["update"] for r in log.read()] == [0, 10]
    assert open(log.path).read().endswith("\n")
    log.append([{"update": 20, "group": "total"}])
    assert [r["update"] for r in log.read()] == [0, 10, 20]


def test_similarity_is_symmetric_in_its_record():
    s = Similarity(0, 1, "total", 1.0, 4.0, 1.0)
    assert s.cos == 0.5 and s.finite


# --------------------------------------------------------------------------- fairseq-train (slow)

GRAD_SIM = ("--grad-sim-interval", "2", "--grad-sim-sentences", "40")


def model_tensors(path) -> Dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=False)
    return {k: v for k, v in state["model"].items() if torch.is_tensor(v)}


@pytest.mark.slow
@pytest.mark.parametrize("task, precision", [("xlm_mlm", ()), ("meta_mlm", ()),
                                             ("xlm_mlm", ("--fp16", "--fp16-no-flatten-grads"))],
                         ids=["xlm_mlm", "meta_mlm", "xlm_mlm-fp16"])
def test_training_is_bit_identical_with_and_without_the_analysis(tiny_mlm_data, tmp_path, task, precision):
    """fp16: the probe backpropagates the loss times fairseq's loss scale (FP16Optimizer)."""
    runs = {}
    for name, extra in (("off", ()), ("on", GRAD_SIM)):
        runs[name] = run_fairseq_train(tiny_mlm_data.path, tmp_path / name, "--task", task, *precision, *extra,
                                       max_update=4)
    off, on = model_tensors(tmp_path / "off" / "checkpoint_last.pt"), model_tensors(tmp_path / "on" /
                                                                                    "checkpoint_last.pt")
    assert off.keys() == on.keys()
    for key in off:
        assert torch.equal(off[key], on[key]), key
    train_off = [r["loss"] for r in runs["off"].json_records("train_inner")]
    assert train_off == [r["loss"] for r in runs["on"].json_records("train_inner")]
    logged = [float(r["grad_cos_en_fr"]) for r in runs["on"].json_records("train_inner")
              if r.get("grad_cos_en_fr") is not None]
    assert len(logged) == 2 and all(-1 <= c <= 1 for c in logged)
    rows = read_rows(str(tmp_path / "on" / "grad_sim.jsonl"))
    assert sorted({r["update"] for r in rows}) == [0, 2]
    assert {r["pair"] for r in rows} == {"en-fr", "en-en", "fr-fr"}
    assert all(r["finite"] and -1 <= r["cos"] <= 1 for r in rows)
    assert not (tmp_path / "off" / "grad_sim.jsonl").exists()


@pytest.mark.slow
def test_resume_leaves_no_update_twice(tiny_mlm_data, tmp_path):
    save = tmp_path / "ckpt"
    extra = ("--grad-sim-interval", "1", "--grad-sim-sentences", "16")
    run_fairseq_train(tiny_mlm_data.path, save, *extra, max_update=2)
    path = str(save / "grad_sim.jsonl")
    assert sorted({r["update"] for r in read_rows(path)}) == [0, 1]
    # an interrupted run measured updates 2 and 3 after the checkpoint at update 2
    UpdateRowsLog(path).append([{"update": u, "group": "total", "pair": "en-fr", "stale": True} for u in (2, 3)])
    run_fairseq_train(tiny_mlm_data.path, save, *extra, max_update=4)
    rows = read_rows(path)
    per_update = {}
    for r in rows:
        per_update.setdefault(r["update"], []).append(r)
    assert sorted(per_update) == [0, 1, 2, 3]
    assert len({len(v) for v in per_update.values()}) == 1  # as many rows for every update
    assert not any(r.get("stale") for r in rows)
    keys = [(r["update"], r["pair"], r["group"]) for r in rows]
    assert len(keys) == len(set(keys))


@pytest.mark.slow
def test_two_gloo_ranks_give_the_cosines_of_one_process(tiny_mlm_data, tmp_path):
    from test_distributed import Job, run_jobs

    # one process with --update-freq 2 trains on the batches of 2 ranks; probes at update 0 (dropout on)
    # and 2 (the same parameters up to float32 summation order: dropout off in training)
    options_ = (*GRAD_SIM, "--grad-sim-no-dropout", "--dropout", "0", "--attention-dropout", "0")
    jobs = [Job("one", 1, (*options_, "--update-freq", "2"), max_update=3),
            Job("two", 2, options_, max_update=3),
            Job("one-dropout", 1, (*GRAD_SIM, "--update-freq", "2"), max_update=1),
            Job("two-dropout", 2, GRAD_SIM, max_update=1)]
    run_jobs(tiny_mlm_data.path, tmp_path, jobs)
    for one, two in (("one", "two"), ("one-dropout", "two-dropout")):
        a = {(r["update"], r["pair"], r["group"]): r for r in read_rows(str(tmp_path / f"ckpt_{one}" /
                                                                          "grad_sim.jsonl"))}
        b = {(r["update"], r["pair"], r["group"]): r for r in read_rows(str(tmp_path / f"ckpt_{two}" /
                                                                          "grad_sim.jsonl"))}
        assert a.keys() == b.keys() and a
        assert {k[0] for k in a} == ({0, 2} if one == "one" else {0})
        for key in a:
            assert b[key]["cos"] == pytest.approx(a[key]["cos"], abs=1e-5), key
            assert b[key]["sq_norm_a"] == pytest.approx(a[key]["sq_norm_a"], rel=1e-4), key
            assert b[key]["tokens_a"] == a[key]["tokens_a"], key
    two_log = (tmp_path / "two_rank0.log").read_text()
    assert re.search(r'"grad_cos_en_fr": "-?[0-9.]+"', two_log)


@pytest.mark.slow
def test_offline_command_gives_the_rows_of_the_run_at_a_checkpoint(tiny_mlm_data, tmp_path):
    """`xlint grad-sim` on the checkpoint saved at update 2 = the run's own probe at update 2."""
    from click.testing import CliRunner

    from xlint.cli.commands_grad_sim import grad_sim

    save = tmp_path / "ckpt"
    run_fairseq_train(tiny_mlm_data.path, save, *GRAD_SIM, "--save-interval-updates", "2", max_update=3)
    out = tmp_path / "offline.jsonl"
    result = CliRunner().invoke(grad_sim, [str(save / "checkpoint_1_2.pt"), "--out", str(out), "--cpu"])
    assert result.exit_code == 0, result.output
    assert "update 2" in result.output
    online = {(r["pair"], r["group"]): r for r in read_rows(str(save / "grad_sim.jsonl")) if r["update"] == 2}
    offline = {(r["pair"], r["group"]): r for r in read_rows(str(out))}
    assert online.keys() == offline.keys() and online
    for key, row in online.items():
        assert offline[key]["cos"] == pytest.approx(row["cos"], abs=1e-6), key
        assert offline[key]["tokens_a"] == row["tokens_a"], key
    # bad input: one line naming the file, nothing written
    missing = CliRunner().invoke(grad_sim, [str(tmp_path / "nope.pt"), "--out", str(tmp_path / "x.jsonl")])
    assert missing.exit_code == 2 and "nope.pt" in missing.output and not (tmp_path / "x.jsonl").exists()

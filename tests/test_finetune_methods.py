"""``xlint finetune --method``: Guo et al. (2023)'s methods inside the fine-tuning tasks.

Fast: the method -> fairseq option mapping and its refusals, NoisyTune's noised checkpoint
(statistics against the uniform range, seeding, caching), the tasks' df default (no tag, no
multiplier, no log: the plain fine-tuning), the fsf tags on a fine-tuning model, and the Policy IV
probe against the frozen pretrained copy.  Slow (real fairseq-train through ``xlint finetune`` on
the synthetic world of tests/test_finetune_support.py): every update's logged group rate equals
the scheduled rate times K recomputed from the logged losses, Policy IV follows the logged CKA
probes, a resumed run equals an uninterrupted one bit for bit; a NoisyTune run starts from the
noised weights and its resumption does not noise again.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import click
import numpy as np
import pytest
import torch

from xlint.cli.finetune_methods import (
    MethodOptions,
    method_options,
    noised_checkpoint_path,
    write_noised_checkpoint,
)

from test_phase_detector import naive

LAMBDA = 0.15


# --------------------------------------------------------------------------- options


def test_methods_map_to_the_task_presets_and_df_adds_nothing(tmp_path):
    ckpt = tmp_path / "pre.pt"
    assert method_options(MethodOptions("df"), "pos", ckpt) == {}
    assert method_options(MethodOptions("noisytune", noisytune_lambda=0.1), "pos", ckpt) == {}
    fsf = method_options(MethodOptions("fsf", c1=0.1, window=5, s1="1-2:all"), "pos", ckpt)
    assert fsf == {"slow_fast_preset": "fsf", "slow_fast_c1": 0.1, "slow_fast_window": 5, "slow_fast_s1": "1-2:all",
                   "slow_fast_policy_iv": "auto", "slow_fast_reference": str(ckpt)}
    # the paper does not apply Policy IV to NER
    assert method_options(MethodOptions("fsf"), "ner", ckpt)["slow_fast_policy_iv"] == "off"
    assert method_options(MethodOptions("v2-to-v1", policy_iv="on"), "ner", ckpt) == {
        "slow_fast_preset": "v2_to_v1", "slow_fast_policy_iv": "on"}
    from xlint.user_dir.analysis.slow_fast_policy import PRESETS

    from xlint.cli.finetune_methods import METHODS

    assert {p for p in METHODS.values() if p} == set(PRESETS) - {"df"}
    from xlint.cli.finetune_methods import WITHOUT_POLICY_IV

    assert {m for m, p in METHODS.items() if p and "IV" not in PRESETS[p]} == set(WITHOUT_POLICY_IV)
    assert method_options(MethodOptions("fs", c1=0.5), "pos", ckpt) == {"slow_fast_preset": "fs", "slow_fast_c1": 0.5}


@pytest.mark.parametrize("options, hint", [
    (MethodOptions("df", c1=0.1), "--fsf-c1"),
    (MethodOptions("noisytune", policy_iv="on"), "--fsf-policy-iv"),
    (MethodOptions("fsf", noisytune_lambda=0.1), "--noisytune-lambda"),
    (MethodOptions("df", noisytune_lambda=0.1), "--noisytune-lambda"),
    (MethodOptions("nope"), "--method"),
    (MethodOptions("fs", policy_iv="on"), "--fsf-policy-iv"),
])
def test_options_of_another_method_are_refused(tmp_path, options, hint):
    with pytest.raises(click.BadParameter) as error:
        method_options(options, "pos", tmp_path / "pre.pt")
    assert error.value.param_hint == hint


# --------------------------------------------------------------------------- NoisyTune


def _checkpoint(path: Path) -> dict:
    generator = torch.Generator().manual_seed(0)
    state = {"model": {"encoder.w": torch.randn(64, 48, generator=generator) * 0.3,
                       "encoder.b": torch.randn(48, generator=generator),
                       "encoder.zero": torch.zeros(8), "encoder.count": torch.arange(4),
                       "encoder.version": torch.tensor([2.0]), "encoder._float_tensor": torch.tensor([1.0, 2.0])},
             "cfg": {"model": {"_name": "x"}}, "last_optimizer_state": {"big": 1}}
    state["model"]["decoder.tied"] = state["model"]["encoder.w"]  # tied weights: noised once
    torch.save(state, path)
    return state


def test_noised_checkpoint_is_uniform_per_tensor_seeded_and_written_once(tmp_path):
    from scipy import stats

    source = tmp_path / "pre.pt"
    original = _checkpoint(source)
    path = noised_checkpoint_path(tmp_path / "runs", source, LAMBDA, seed=3)
    assert path.parent == tmp_path / "runs" / "noisytune"
    assert path != noised_checkpoint_path(tmp_path / "runs", source, LAMBDA, seed=4)
    assert path != noised_checkpoint_path(tmp_path / "runs", source, 0.1, seed=3)
    assert write_noised_checkpoint(source, path, LAMBDA, 3)
    noised = torch.load(path, weights_only=False)
    assert "last_optimizer_state" not in noised and noised["cfg"] == original["cfg"]
    for name in ("encoder.w", "encoder.b"):
        before = original["model"][name].double()
        delta = (noised["model"][name].double() - before) / before.std()
        half = LAMBDA / 2
        assert delta.abs().max() <= half * (1 + 1e-5)
        # the noise is U(-lambda/2, lambda/2) * std(W): Kolmogorov-Smirnov against that law
        assert stats.kstest(delta.flatten().numpy(), "uniform", args=(-half, LAMBDA)).pvalue > 1e-3
    assert noised["model"]["decoder.tied"].data_ptr() == noised["model"]["encoder.w"].data_ptr()
    for name in ("encoder.zero", "encoder.count", "encoder.version", "encoder._float_tensor"):
        assert torch.equal(noised["model"][name], original["model"][name]), name
    stamp = path.stat().st_mtime_ns
    assert not write_noised_checkpoint(source, path, LAMBDA, 3)  # cached: not written again
    assert path.stat().st_mtime_ns == stamp
    again = tmp_path / "again.pt"
    write_noised_checkpoint(source, again, LAMBDA, 3)
    assert torch.equal(torch.load(again, weights_only=False)["model"]["encoder.w"], noised["model"]["encoder.w"])
    other = tmp_path / "other.pt"
    write_noised_checkpoint(source, other, LAMBDA, 4)
    assert not torch.equal(torch.load(other, weights_only=False)["model"]["encoder.w"], noised["model"]["encoder.w"])
    assert not list(path.parent.glob("*.partial-*"))


def test_unreadable_checkpoint_is_one_line_and_writes_nothing(tmp_path):
    source = tmp_path / "broken.pt"
    source.write_text("not a checkpoint")
    target = tmp_path / "out" / "noised.pt"
    with pytest.raises(click.ClickException) as error:
        write_noised_checkpoint(source, target, LAMBDA, 1)
    assert "broken.pt" in error.value.message and "\n" not in error.value.message
    assert not target.exists()


# --------------------------------------------------------------------------- the task (in process)


ADAPTER = ("--arch", "xlm_adapter", "--model-languages", "en")
ROBERTA = ("--arch", "xlint_roberta", "--max-positions", "64")


def _tagging_task(tmp_path: Path, arch=ADAPTER, **overrides):
    """An xlint_tagging task on a tiny hand-written data folder, and its 4-layer xlm_adapter model."""
    from omegaconf import OmegaConf

    import xlint.user_dir  # noqa: F401
    from fairseq import tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq import options

    data = tmp_path / "ft"
    if not data.exists():
        data.mkdir()
        words = [f"w{i}" for i in range(20)]
        (data / "dict.txt").write_text("".join(f"{w} 1\n" for w in words), encoding="utf-8")
        rng = np.random.default_rng(0)
        records = []
        for i in range(12):
            n = int(rng.integers(3, 7))
            ids = [int(x) for x in rng.integers(4, 24, size=n)]
            records.append({"id": i, "tokens": ids, "word_starts": list(range(n)),
                            "tags": ["A" if j % 2 else "B" for j in ids]})
        meta = {"format_version": 1, "task": "tagging", "kind": "pos", "labels": ["A", "B"],
                "splits": {"en": {"train": 12, "dev": 12}}}
        (data / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        (data / "en").mkdir()
        for split in ("train", "dev"):
            (data / "en" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    argv = [str(data), "--task", "xlint_tagging", *arch, "--encoder-layers", "4",
            "--encoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32", "--encoder-attention-heads", "2",
            "--criterion", "xlint_tagging", "--optimizer", "xlint_adam", "--lr", "1e-3",
            "--cpu", "--seed", "1"]
    for key, value in overrides.items():
        argv += ["--" + key.replace("_", "-"), str(value)]
    parser = options.get_training_parser()
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(parser, argv))
    OmegaConf.set_struct(cfg, False)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    return task, model, cfg


def test_df_is_plain_finetuning(tmp_path):
    try:
        task, model, cfg = _tagging_task(tmp_path)
    except Exception as error:  # the hand-written folder must follow finetune_data's format
        pytest.fail(f"tiny tagging task: {error}")
    assert not task.slow_fast.enabled
    tags = {getattr(p, "param_group", None) for n, p in model.named_parameters() if not n.startswith("heads.")}
    assert tags == {None}
    assert {p.param_group for p in model.heads[task.HEAD_NAME].parameters()} == {"head"}

    class Refuses:
        def __getattr__(self, name):
            raise AssertionError(f"df touched the optimizer: {name}")

    logged = []
    task.slow_fast._log_scalar = lambda *args, **kwargs: logged.append(args)
    assert task.slow_fast.before_update(Refuses(), 1) == {}
    assert task.slow_fast.observe_loss(3.0, 2.0) is None and not logged
    assert not task.slow_fast.wants_cka_probe(100)


@pytest.mark.parametrize("arch, prefix", [(ADAPTER, "encoder.layers"), (ROBERTA, "encoder.sentence_encoder.layers")],
                         ids=["xlm_adapter", "xlint_roberta"])
def test_fsf_tags_the_sets_of_a_finetuning_model_after_its_head_and_freezing(tmp_path, arch, prefix):
    task, model, _ = _tagging_task(tmp_path, arch=arch, slow_fast_preset="fsf")
    by_name = {n: getattr(p, "param_group", "") for n, p in model.named_parameters()}
    # 4 layers, proportional rule: V = top 1 layer, S^II = bottom round(4/3) = 1 layer's FFN, S^I = layers 1-3
    layer = {k: [t for n, t in by_name.items() if n.startswith(f"{prefix}.{k}.")] for k in range(4)}
    assert set(layer[0]) == {"fsf.I", "fsf.I+fsf.II"} and set(layer[1]) == {"fsf.I"} == set(layer[2])
    assert set(layer[3]) == {"fsf.III", "fsf.III+fsf.IV"}
    assert {t for n, t in by_name.items() if n.startswith("heads.")} == {"head"}
    assert task.slow_fast.trainable_tags == {"fsf.I", "fsf.I+fsf.II", "fsf.III", "fsf.III+fsf.IV"}


def test_policy_iv_probe_compares_with_the_pretrained_weights_and_loads_them_from_the_reference(tmp_path):
    task, model, cfg = _tagging_task(tmp_path, slow_fast_preset="fsf", slow_fast_cka_interval=2)
    dataset = task.load_dataset("train")
    sample = dataset.collater([dataset[i] for i in range(4)])
    criterion = task.build_criterion(cfg.criterion)
    from fairseq import optim

    optimizer = optim.build_optimizer(cfg.optimizer, [p for p in model.parameters() if p.requires_grad])
    task.train_step(sample, model, criterion, optimizer, 0)  # update 0 of a fresh run: the copy is taken
    model.zero_grad()
    assert task.cka_probe(model, sample) == pytest.approx(1.0, abs=1e-9)
    with torch.no_grad():
        for param in model.encoder.layers[3].parameters():
            if param.dim() == 2:
                param.copy_(torch.randn_like(param))
    moved = task.cka_probe(model, sample)
    assert moved < 0.999 and len(task.slow_fast.policy_iv.state_dict()["probes"]) == 2
    # a resumed run: the reference comes from the pretrained checkpoint, not from the current weights
    reference = tmp_path / "pre.pt"
    pretrained = copy.deepcopy(model)
    with torch.no_grad():
        for param in pretrained.encoder.layers[3].parameters():
            if param.dim() == 2:
                param.copy_(torch.randn_like(param))
    torch.save({"model": pretrained.state_dict(), "cfg": cfg, "extra_state": {},
                "optimizer_history": [{"criterion_name": "x", "optimizer_name": "y", "num_updates": 0,
                                       "lr_scheduler_state": {"best": None}}]}, reference)
    task2, model2, _ = _tagging_task(tmp_path, slow_fast_preset="fsf", slow_fast_reference=reference)
    model2.load_state_dict(model.state_dict())
    frozen = task2.cka_reference(model2)
    assert all(torch.equal(a, b) for a, b in zip(frozen.state_dict().values(), pretrained.state_dict().values()))
    assert not any(p.requires_grad for p in frozen.parameters()) and not frozen.training
    task3, model3, _ = _tagging_task(tmp_path, slow_fast_preset="fsf")
    with pytest.raises(RuntimeError, match="--slow-fast-reference"):
        task3.cka_reference(model3)  # resumed (no copy taken at update 0) and no reference


# --------------------------------------------------------------------------- fairseq-train through xlint finetune

COMMON = ("--cpu", "--cpu-threads", "1", "--quiet", "--no-evaluate", "--batch-size", "16", "--lr", "1e-3",
          "--max-train-examples", "32")
#: 2 updates per epoch; the schedule is fixed, so a run stopped early is the same run's prefix
FAIRSEQ = ("--log-interval", "1", "--total-num-update", "6", "--warmup-updates", "1")
FSF = ("--method", "fsf", "--fsf-window", "1", "--fsf-threshold", "0", "--fsf-policy-iv", "auto",
       "--fsf-cka-interval", "2")


def train_inner(run_dir: Path) -> list:
    from xlint.cli.fairseq_logs import parse_log_records

    return parse_log_records((run_dir / "train.log").read_text(encoding="utf-8").splitlines(), "train_inner")


def expected_k(label: str, phase: int, big_r: float, policy_iv: bool, c1: float = 0.01, c2: float = 10.0) -> float:
    """Eq. 2 for the fsf preset's groups, by hand (the head and the body keep K = 1)."""
    if phase == 1:
        return c1 if label in ("I", "I_II") else 1.0
    return {"I_II": big_r, "III_IV": c2 if policy_iv else 1.0}.get(label, 1.0)


@pytest.fixture(scope="module")
def ft(tmp_path_factory):
    from test_finetune_support import world

    return world(tmp_path_factory)


def check_rates(records: list) -> list:
    """Every update's group rates are the scheduled rate times K from the logged losses (Eq. 1-3, by
    hand) and the Policy IV switch fed the logged probes; return the updates probed before."""
    from xlint.user_dir.analysis.slow_fast_policy import PolicyIVSwitch

    assert [int(r["num_updates"]) for r in records] == list(range(1, 7))
    losses = [float(r["fsf_loss"]) for r in records]
    switch = PolicyIVSwitch("auto", 3, 0.0)
    probes = []
    for t, record in enumerate(records):
        if record.get("fsf_cka") is not None:  # the probe before this update decides its Policy IV
            probes.append(t)
            assert 0.0 < float(record["fsf_cka"]) <= 1.0 + 1e-9
            switch.observe(float(record["fsf_cka"]))
        assert float(record["fsf_policy_iv"]) == (1.0 if switch.active else 0.0), t
        phase, _, big_r = naive(losses, t, 1, 0.0, 3)
        assert float(record["fsf_p1"]) == (1.0 if phase == 1 else 0.0)
        scheduled = float(record["fsf_lr"])
        assert scheduled == pytest.approx(float(records[t - 1]["lr"]) if t else 0.0, rel=1e-5)
        groups = {k[len("fsf_lr_"):]: float(v) for k, v in record.items() if k.startswith("fsf_lr_")}
        assert set(groups) == {"body", "head", "I", "I_II", "III", "III_IV"}
        for label, lr in groups.items():
            k = expected_k(label, phase, big_r, switch.active)
            assert lr == pytest.approx(scheduled * k, rel=1e-5, abs=1e-12), (t, label)
    return probes


@pytest.mark.slow
def test_fsf_run_rates_are_scheduled_times_k_probes_follow_and_resume_continues(ft, tmp_path):
    from test_finetune_support import finetune_cli

    from xlint.user_dir.optim.adam_with_head_lr import CONTROLLER_STATE_KEY

    pos = ft.converted["pos"]
    args = ("--pretrained", str(ft.checkpoint), "--source", "en", *COMMON, *FSF)
    whole = tmp_path / "whole"
    finetune_cli(pos, whole, *args, "--epochs", "3", "--", *FAIRSEQ)
    run = whole / "bs16-lr0.001" / "seed1"
    command = json.loads((run / "run.json").read_text())["command"]
    assert "--slow-fast-preset fsf" in command and f"--slow-fast-reference {ft.checkpoint}" in command
    records = train_inner(run)
    assert check_rates(records) == [2, 4]  # probes after updates 2 and 4 (interval 2)

    # stopped after epoch 2 (update 4; a mid-epoch stop cannot resume: fairseq cannot restore xlint's
    # predictions meter), then resumed: the detector and the probes continue from the checkpoint, and the
    # probe after the resumption compares with the --slow-fast-reference weights
    resumed = tmp_path / "resumed"
    finetune_cli(pos, resumed, *args, "--epochs", "2", "--", *FAIRSEQ)
    finetune_cli(pos, resumed, *args, "--epochs", "3", "--", *FAIRSEQ)
    second = resumed / "bs16-lr0.001" / "seed1"
    log = (second / "train.log").read_text(encoding="utf-8")
    assert f"Loaded checkpoint {second / 'checkpoint_last.pt'}" in log
    again = train_inner(second)
    assert check_rates(again) == [2, 4]
    assert len(records) == len(again) == 6
    for ra, rb in zip(records, again):  # the resumed run is the same run, after the resumption too
        assert {k: v for k, v in ra.items() if k.startswith("fsf_") or k == "loss"} == \
            {k: v for k, v in rb.items() if k.startswith("fsf_") or k == "loss"}
    final = [torch.load(d / "checkpoint_last.pt", weights_only=False)["model"] for d in (run, second)]
    assert all(torch.equal(final[0][key], final[1][key]) for key in final[0])
    state = torch.load(second / "checkpoint_last.pt", weights_only=False)["last_optimizer_state"][
        CONTROLLER_STATE_KEY]
    assert state["detector"]["count"] == 6
    logged = [float(again[t]["fsf_cka"]) for t in (2, 4)]
    assert state["policy_iv"]["probes"] == pytest.approx(logged, rel=1e-5)
    # a detector restarted empty at the resumption would be in P1 (warm-up) at update 5 with R = 0
    assert float(again[4]["fsf_R"]) == pytest.approx(
        max(1 - (float(again[3]["fsf_loss"]) / float(again[2]["fsf_loss"])) ** 3, 0), rel=1e-4)


@pytest.mark.slow
def test_noisytune_run_starts_from_the_noised_weights_and_resumes_without_noising_again(ft, tmp_path):
    from scipy import stats

    from test_finetune_support import finetune_cli

    pos = ft.converted["pos"]
    save = tmp_path / "noisy"
    # --lr 0: the weights stay where fairseq loaded them
    args = ("--pretrained", str(ft.checkpoint), "--source", "en", "--cpu", "--cpu-threads", "1", "--quiet",
            "--no-evaluate", "--batch-size", "32", "--lr", "0", "--max-train-examples", "32", "--method",
            "noisytune")
    finetune_cli(pos, save, *args, "--epochs", "1")
    noised_files = list((save / "noisytune").glob("*.pt"))
    assert len(noised_files) == 1
    run = save / "bs32-lr0" / "seed1"
    command = json.loads((run / "run.json").read_text())["command"]
    assert f"--finetune-from-model {noised_files[0]}" in command and "slow-fast" not in command
    pretrained = torch.load(ft.checkpoint, weights_only=False)["model"]
    loaded = torch.load(run / "checkpoint_last.pt", weights_only=False)["model"]
    tested = 0
    for name, before in pretrained.items():
        if not before.is_floating_point() or before.numel() < 100 or name.endswith("_float_tensor"):
            continue
        before = before.double()
        delta = (loaded[name].double() - before) / before.std()
        assert delta.abs().max() <= LAMBDA / 2 * (1 + 1e-4), name
        assert stats.kstest(delta.flatten().numpy(), "uniform", args=(-LAMBDA / 2, LAMBDA)).pvalue > 1e-4, name
        tested += 1
    assert tested >= 5
    # resume (one more epoch): fairseq continues from checkpoint_last.pt; the noised copy is not needed
    noised_files[0].unlink()
    finetune_cli(pos, save, *args, "--epochs", "2")
    assert not list((save / "noisytune").glob("*.pt"))
    resumed = torch.load(run / "checkpoint_last.pt", weights_only=False)
    assert all(torch.equal(resumed["model"][k], loaded[k]) for k in loaded if not k.startswith("heads."))
    assert resumed["optimizer_history"][-1]["num_updates"] == 2


def test_freeze_weights_freezes_exactly_the_named_sublayers(tmp_path):
    from xlint.user_dir.models import layer_groups

    task, model, _ = _tagging_task(tmp_path, freeze_weights="2-3:attn,embeddings")
    embeddings = set(layer_groups.embedding_parameters(model))
    for name, param in model.named_parameters():
        address = layer_groups.address_of_parameter(model, name)
        expected = name in embeddings or (address is not None and address[0] in (1, 2) and address[1] == "attn")
        assert param.requires_grad == (not expected), name
    with pytest.raises(ValueError, match="--freeze-weights 5-6:all"):
        _tagging_task(tmp_path, freeze_weights="5-6:all")


@pytest.mark.slow
def test_frozen_weights_stay_bit_identical_in_a_run(ft, tmp_path):
    from test_finetune_support import finetune_cli

    save = tmp_path / "frozen"
    finetune_cli(ft.converted["pos"], save, "--pretrained", str(ft.checkpoint), "--source", "en", *COMMON,
                 "--epochs", "1", "--freeze", "1:attn")
    pretrained = torch.load(ft.checkpoint, weights_only=False)["model"]
    tuned = torch.load(save / "bs16-lr0.001" / "seed1" / "checkpoint_last.pt", weights_only=False)["model"]
    frozen = [k for k in tuned if k.startswith("encoder.layers.0.self_attn")]
    assert len(frozen) >= 4
    assert all(torch.equal(tuned[k], pretrained[k]) for k in frozen)
    moved = [k for k in tuned if k.startswith("encoder.layers.0.fc1") or k.startswith("encoder.layers.1.self_attn")]
    assert moved and all(not torch.equal(tuned[k], pretrained[k]) for k in moved)
    from click.testing import CliRunner

    from xlint.cli.main import cli

    result = CliRunner().invoke(cli, ["finetune", str(ft.converted["pos"]), "--save-dir", str(tmp_path / "dry"),
                                      "--pretrained", str(ft.checkpoint), "--source", "en", "--dry-run",
                                      "--reinit", "1-2:ffn", "--freeze", "1:attn"])
    assert result.exit_code == 0 and "--reinit-weights 1-2:ffn" in result.output, result.output
    assert "--freeze-weights 1:attn" in result.output
    result = CliRunner().invoke(cli, ["finetune", str(ft.converted["pos"]), "--save-dir", str(tmp_path / "bad"),
                                      "--pretrained", str(ft.checkpoint), "--source", "en", "--dry-run",
                                      "--freeze", "7:attn"])
    assert result.exit_code != 0 and "--freeze-weights 7:attn" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()


def test_reinit_weights_redraws_exactly_the_named_weights_seeded_before_the_first_update_only(tmp_path):
    from fairseq import optim

    from xlint.user_dir.models import layer_groups

    task, model, cfg = _tagging_task(tmp_path, reinit_weights="3:ffn")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dataset = task.load_dataset("train")
    sample = dataset.collater([dataset[i] for i in range(4)])
    criterion = task.build_criterion(cfg.criterion)
    optimizer = optim.build_optimizer(cfg.optimizer, [p for p in model.parameters() if p.requires_grad])
    task.train_step(sample, model, criterion, optimizer, 0)
    named = {n: p for n, p in model.named_parameters()}
    chosen = [n for n in named if layer_groups.address_of_parameter(model, n) == (2, "ffn")]
    assert chosen
    for name, param in named.items():
        if name not in chosen:
            assert torch.equal(param, before[name]), name
        elif param.dim() >= 2:
            assert not torch.equal(param, before[name]) and param.std().item() == pytest.approx(0.02, rel=0.15)
            generator = torch.Generator().manual_seed(
                _seed(name, 1))
            assert torch.equal(param, torch.randn(param.shape, generator=generator) * 0.02), name
        elif name.endswith("bias"):
            assert torch.count_nonzero(param) == 0
        else:
            assert torch.all(param == 1)
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    task.train_step(sample, model, criterion, optimizer, 0)  # a second micro-batch of update 0: no re-draw
    assert all(torch.equal(v, snapshot[k]) for k, v in model.state_dict().items())
    resumed, model2, _ = _tagging_task(tmp_path, reinit_weights="3:ffn")
    snapshot = {k: v.clone() for k, v in model2.state_dict().items()}
    resumed.train_step(sample, model2, criterion, optimizer, 5)  # a resumed run: never re-initialised
    assert all(torch.equal(v, snapshot[k]) for k, v in model2.state_dict().items())
    with pytest.raises(ValueError, match="--reinit-weights 9:all"):
        task.reinit_weights(model, "9:all", 1)


def _seed(name: str, seed: int) -> int:
    from xlint.user_dir.analysis.seeding import stable_seed

    return stable_seed("reinit", name, seed) & ((1 << 63) - 1)


def test_lr_scale_weights_give_exactly_the_named_sublayers_factor_times_the_rate(tmp_path):
    from fairseq import optim

    from xlint.user_dir.models import layer_groups

    task, model, cfg = _tagging_task(tmp_path, lr_scale_weights="3-4:attn=10", head_lr="3e-3")
    for name, param in model.named_parameters():
        address = layer_groups.address_of_parameter(model, name)
        scaled = address is not None and address[0] in (2, 3) and address[1] == "attn"
        assert ("lrx10" in getattr(param, "param_group", "")) == scaled, name
    optimizer = optim.build_optimizer(cfg.optimizer, [p for p in model.parameters() if p.requires_grad])
    optimizer.set_lr(2e-4)  # as a scheduler does: every group follows, with its factor
    assert optimizer.get_lr() == 2e-4
    expected = {"": 2e-4, "head": 6e-4, "lrx10": 2e-3}
    assert optimizer.group_lrs() == pytest.approx(expected)
    for bad in ("3-4:attn", "3-4:attn=0", "9:all=10"):
        with pytest.raises(ValueError, match="--lr-scale-weights"):
            _tagging_task(tmp_path, lr_scale_weights=bad)

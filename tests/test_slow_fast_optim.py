"""Fine-tuning slow and fast's fairseq mechanism: sets, ``xlint_adam``'s tagged groups, the controller.

Units: the set specs and the depth rule; parameter locations on a real ``xlm_adapter`` model;
``xlint_adam`` against torch's AdamW with per-group rates; the controller's multipliers at every
update against the naive detector of tests/test_phase_detector.py; its state through the
optimizer's state dict; fairseq's FP16 wrappers.  Slow: real ``fairseq-train`` runs (a test
plugin mixes the controller into ``xlm_mlm``) whose logged effective rate of every group equals
the scheduled rate times K at every update, and whose resumed run equals the uninterrupted one.
"""
import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from test_phase_detector import naive
from xlint.user_dir.analysis.slow_fast_sets import ParamLocation, default_specs, parse_set_spec
from xlint.user_dir.optim.adam_with_head_lr import CONTROLLER_STATE_KEY, XlintAdam, find_xlint_adam
from xlint.user_dir.optim.slow_fast import (
    FLAT_FP16_MESSAGE,
    SlowFastConfig,
    SlowFastController,
    group_label,
    locate_parameters,
)

PLUGIN = Path(__file__).resolve().parent / "fixtures" / "slow_fast_plugin"


# --------------------------------------------------------------------------- sets


def test_set_specs_and_depth_rules():
    ws = parse_set_spec("1-4:ffn,11-12:attn,embeddings", 12)
    assert ws.contains(ParamLocation("layer", 3, "ffn")) and not ws.contains(ParamLocation("layer", 3, "attn"))
    assert ws.contains(ParamLocation("layer", 12, "attn")) and not ws.contains(ParamLocation("layer", 5, "ffn"))
    assert ws.contains(ParamLocation("embeddings")) and not ws.contains(ParamLocation("head"))
    assert not ws.contains(ParamLocation("layer", 3, "ffn", language_specific=True))
    assert ws.contains(ParamLocation("layer", 3, "ffn", language_specific=True), include_language_specific=True)
    every = parse_set_spec("2:all", 2)
    assert all(every.contains(ParamLocation("layer", 2, k)) for k in ("attn", "ffn", "other"))
    assert not parse_set_spec("none", 4) and not parse_set_spec("", 4)
    assert default_specs(12) == {"S1": "1-10:all", "S2": "1-4:ffn", "V1": "11-12:all", "V2": "11-12:attn"}
    assert default_specs(24) == {"S1": "1-20:all", "S2": "1-8:ffn", "V1": "21-24:all", "V2": "21-24:attn"}
    assert default_specs(8) == {"S1": "1-7:all", "S2": "1-3:ffn", "V1": "8:all", "V2": "8:attn"}
    assert default_specs(2) == {"S1": "1:all", "S2": "1:ffn", "V1": "2:all", "V2": "2:attn"}
    assert default_specs(24, "absolute") == {"S1": "1-22:all", "S2": "1-4:ffn", "V1": "23-24:all",
                                             "V2": "23-24:attn"}
    assert default_specs(1)["S1"] == "none"
    for bad in ("0-3:all", "3-13:all", "4-2:ffn", "1-2:mlp", "layers"):
        with pytest.raises(ValueError):
            parse_set_spec(bad, 12)


def small_xlm_adapter(layers: int = 12, variant: str = "adapter"):
    from fairseq.data import Dictionary
    from xlint.user_dir.models.task_heads import HEAD_PARAM_GROUP
    from xlint.user_dir.models.xlm_adapter import XlmAdapterConfig, XlmAdapterEncoder, XlmAdapterModel

    cfg = XlmAdapterConfig(encoder_layers=layers, encoder_embed_dim=8, encoder_ffn_embed_dim=16,
                           encoder_attention_heads=2, max_positions=16, language_specific=variant,
                           model_languages="en,fr")
    dictionary = Dictionary()
    for i in range(8):
        dictionary.add_symbol(f"w{i}")
    model = XlmAdapterModel(cfg, XlmAdapterEncoder(cfg, dictionary, ["en", "fr"]))
    model.register_head("pos", "token", 5)
    for param in model.heads["pos"].parameters():
        param.param_group = HEAD_PARAM_GROUP
    return model


def config(**overrides) -> SlowFastConfig:
    cfg = SlowFastConfig(slow_fast_preset="fsf")
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def test_fsf_tags_on_a_12_layer_xlm_adapter():
    model = small_xlm_adapter()
    controller = SlowFastController(config())
    controller.tag_parameters(model)
    tags = {name: getattr(p, "param_group", "") or "" for name, p in model.named_parameters()}
    expected = {
        "encoder.layers.0.self_attn.attention.q_proj.weight": "fsf.I",
        "encoder.layers.0.self_attn_layer_norm.weight": "fsf.I",
        "encoder.layers.3.ffn.fc1.weight": "fsf.I+fsf.II",
        "encoder.layers.3.final_layer_norm.bias": "fsf.I+fsf.II",
        "encoder.layers.4.ffn.fc2.weight": "fsf.I",
        "encoder.layers.9.ffn.fc2.bias": "fsf.I",
        "encoder.layers.10.ffn.fc1.weight": "fsf.III",
        "encoder.layers.10.self_attn.attention.out_proj.weight": "fsf.III+fsf.IV",
        "encoder.layers.11.self_attn_layer_norm.weight": "fsf.III+fsf.IV",
        "encoder.embed_tokens.weight": "",
        "encoder.layernorm_embedding.weight": "",
        "encoder.layers.2.adapter_after_ffn.per_language.en.down.weight": "",  # language-specific: K = 1
        "heads.pos.out_proj.weight": "head",
    }
    for name, tag in expected.items():
        if name not in tags:  # adapter parameter names: match by prefix
            name = next(n for n in tags if n.startswith(name.rsplit(".", 2)[0]))
        assert tags[name] == tag, name
    assert controller.tag_policies == {"fsf.I": {"I"}, "fsf.I+fsf.II": {"I", "II"}, "fsf.III": {"III"},
                                       "fsf.III+fsf.IV": {"III", "IV"}}
    with_lang = small_xlm_adapter()
    SlowFastController(config(slow_fast_language_specific=True,
                              slow_fast_s1="1-10:all,head")).tag_parameters(with_lang)
    lang_tags = {n: getattr(p, "param_group", "") for n, p in with_lang.named_parameters()}
    adapter = next(n for n in lang_tags if n.startswith("encoder.layers.2.adapter_after_ffn.per_language.en"))
    assert lang_tags[adapter] == "fsf.I+fsf.II" and lang_tags["heads.pos.out_proj.weight"] == "head+fsf.I"


def small_roberta(layers: int = 12):
    import argparse
    from types import SimpleNamespace

    from fairseq.data import Dictionary
    from xlint.user_dir.models.xlint_roberta import XlintRobertaModel, xlint_roberta

    args = argparse.Namespace(encoder_layers=layers, encoder_embed_dim=8, encoder_ffn_embed_dim=16,
                              encoder_attention_heads=2, max_positions=16)
    xlint_roberta(args)
    dictionary = Dictionary()
    dictionary.add_symbol("<mask>")
    model = XlintRobertaModel.build_model(args, SimpleNamespace(source_dictionary=dictionary))
    model.register_head("xnli", "sentence", 3)
    for param in model.heads["xnli"].parameters():
        param.param_group = "head"
    return model


def test_fsf_tags_on_a_12_layer_roberta_and_locations():
    model = small_roberta()
    num_layers, locations = locate_parameters(model)
    assert num_layers == 12
    assert locations["encoder.sentence_encoder.layers.0.fc1.weight"] == ParamLocation("layer", 1, "ffn")
    assert locations["encoder.sentence_encoder.layers.11.self_attn.k_proj.bias"] == ParamLocation("layer", 12, "attn")
    assert locations["encoder.sentence_encoder.layernorm_embedding.weight"].region == "embeddings"
    assert locations["heads.xnli.dense.weight"].region == "head"
    assert locations["encoder.lm_head.dense.weight"].region == "other"
    SlowFastController(config(slow_fast_s2="1-4:ffn,embeddings")).tag_parameters(model)
    tags = {name: getattr(p, "param_group", "") or "" for name, p in model.named_parameters()}
    assert tags["encoder.sentence_encoder.layers.3.final_layer_norm.weight"] == "fsf.I+fsf.II"
    assert tags["encoder.sentence_encoder.layers.4.fc1.weight"] == "fsf.I"
    assert tags["encoder.sentence_encoder.layers.9.self_attn_layer_norm.bias"] == "fsf.I"
    assert tags["encoder.sentence_encoder.layers.10.fc2.weight"] == "fsf.III"
    assert tags["encoder.sentence_encoder.layers.11.self_attn.out_proj.weight"] == "fsf.III+fsf.IV"
    assert tags["encoder.sentence_encoder.embed_tokens.weight"] == "fsf.II"
    assert tags["heads.xnli.out_proj.weight"] == "head" and tags["encoder.lm_head.dense.weight"] == ""
    assert group_label("") == "body" and group_label("head+fsf.IV") == "head_IV"


# --------------------------------------------------------------------------- xlint_adam


def adam_cfg(**kw):
    base = {"lr": [1e-2], "adam_betas": "(0.9, 0.999)", "adam_eps": 1e-8, "weight_decay": 0.0,
            "use_old_adam": False, "fp16_adam_stats": False, "tpu": False, "head_lr": -1.0}
    base.update(kw)
    return OmegaConf.create(base)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_xlint_adam_groups_follow_scheduled_rate_times_k_like_torch_adamw(weight_decay):
    torch.manual_seed(0)
    init = [torch.randn(4, 3), torch.randn(5), torch.randn(3, 3), torch.randn(2)]
    tags = ["fsf.I", "", "head+fsf.IV", "head"]
    ours = [torch.nn.Parameter(t.clone()) for t in init]
    for p, tag in zip(ours, tags):
        if tag:
            p.param_group = tag
    opt = XlintAdam(adam_cfg(weight_decay=weight_decay, head_lr=3e-2), ours)
    assert opt.group_tags == ["", "head", "fsf.I", "head+fsf.IV"]
    ref_params = [torch.nn.Parameter(t.clone()) for t in init]
    order = [1, 3, 0, 2]  # the same groups, in xlint_adam's order
    ref = torch.optim.AdamW([{"params": [ref_params[i]]} for i in order], lr=1.0, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=weight_decay)
    scales = [1.0, 3.0, 1.0, 3.0]
    for step in range(6):
        scheduled = 1e-2 * (step + 1) / 6
        k = {"fsf.I": [0.01, 0.01, 1.0, 0.3, 1.0, 1.0][step], "head+fsf.IV": [1.0, 1.0, 10.0, 10.0, 1.0, 0.0][step]}
        opt.set_lr(scheduled)
        opt.set_lr_multipliers(k)
        assert opt.get_lr() == pytest.approx(scheduled)
        for group, tag, scale, ref_group in zip(opt.param_groups, opt.group_tags, scales, ref.param_groups):
            expected = scheduled * scale * k.get(tag, 1.0)
            assert group["lr"] == pytest.approx(expected)
            ref_group["lr"] = expected
        grads = [torch.randn_like(t) for t in init]
        for p, q, g in zip(ours, ref_params, grads):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
    for p, q in zip(ours, ref_params):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-6)


def test_xlint_adam_plain_and_flat_fp16():
    p = torch.nn.Parameter(torch.randn(3))
    opt = XlintAdam(adam_cfg(), [p])
    assert opt.group_tags == [""] and opt.get_lr() == pytest.approx(1e-2)
    flat = {0: torch.nn.Parameter(torch.randn(7))}
    assert XlintAdam(adam_cfg(), [flat]).group_tags == [""]  # fairseq's flat fp16 without groups works
    with pytest.raises(ValueError, match="flattened"):
        XlintAdam(adam_cfg(head_lr=1e-3), [flat])
    with pytest.raises(ValueError, match="no parameter is tagged"):
        XlintAdam(adam_cfg(head_lr=1e-3), [p])
    with pytest.raises(ValueError):
        opt.set_lr_multipliers({"": -1.0})


def fp16_cfg(**common):
    base = {"fp16_no_flatten_grads": True, "bf16": False, "fp16_scale_window": None, "fp16_init_scale": 128,
            "fp16_scale_tolerance": 0.0, "threshold_loss_scale": None, "min_loss_scale": 1e-4,
            "model_parallel_size": 1, "tpu": False}
    base.update(common)
    cfg = OmegaConf.create({"common": base, "optimization": {"update_freq": [1]},
                            "distributed_training": {"distributed_world_size": 1}})
    cfg.optimizer = adam_cfg()
    cfg.optimizer._name = "xlint_adam"
    return cfg


@pytest.mark.parametrize("mode", ["fp16_no_flatten", "bf16", "memory_efficient", "amp"])
def test_fp16_wrappers_keep_the_groups(mode):
    import warnings

    from fairseq.optim.amp_optimizer import AMPOptimizer
    from fairseq.optim.fp16_optimizer import FP16Optimizer, MemoryEfficientFP16Optimizer

    model = small_xlm_adapter(layers=2, variant="joint")
    if mode != "amp":  # AMP keeps fp32 parameters
        model = model.half()
    controller = SlowFastController(config())
    controller.tag_parameters(model)
    params = [p for p in model.parameters() if p.requires_grad]
    if mode == "memory_efficient":
        wrapper = MemoryEfficientFP16Optimizer.build_optimizer(fp16_cfg(), params)
    elif mode == "amp":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no CUDA here: torch's GradScaler warns and disables itself
            wrapper = AMPOptimizer.build_optimizer(fp16_cfg(amp_scale_window=None), params)
    else:
        wrapper = FP16Optimizer.build_optimizer(fp16_cfg(bf16=mode == "bf16"), params)
    inner = find_xlint_adam(wrapper)
    assert set(controller.tag_policies) <= set(inner.group_tags)
    controller.before_update(wrapper, 0)  # P1: S1 slowed down
    assert inner.group_lrs()["fsf.I"] == pytest.approx(1e-4) and inner.group_lrs()[""] == pytest.approx(1e-2)


def test_flat_fp16_is_refused_by_the_controller():
    model = small_xlm_adapter(layers=2, variant="joint")
    controller = SlowFastController(config())
    controller.tag_parameters(model)
    flat = {0: torch.nn.Parameter(torch.cat([p.detach().flatten() for p in model.parameters()]))}

    class FlatWrapper:  # what FP16Optimizer looks like with flattened parameters
        has_flat_params = True
        fp32_optimizer = XlintAdam(adam_cfg(), [flat])

    with pytest.raises(RuntimeError, match="flattened"):
        controller.before_update(FlatWrapper(), 0)
    assert "--fp16-no-flatten-grads" in FLAT_FP16_MESSAGE
    with pytest.raises(RuntimeError, match="xlint_adam"):
        controller.before_update(torch.optim.SGD(model.parameters(), lr=0.1), 0)


# --------------------------------------------------------------------------- the controller


def naive_group_k(tag, phase, big_r, c1, c2):
    """K by Eq. 2 for the fsf preset's tags, written out by hand."""
    if phase == 1:
        return c1 if tag in ("fsf.I", "fsf.I+fsf.II") else 1.0
    return {"fsf.I+fsf.II": big_r, "fsf.III+fsf.IV": c2}.get(tag, 1.0)


def test_controller_sets_scheduled_rate_times_k_every_update_and_resumes():
    from test_phase_detector import crossing_sequence

    w, threshold = 4, 0.05
    losses = list(crossing_sequence(w, seed=1))
    logged = []

    def build():
        model = small_xlm_adapter(layers=12, variant="joint")
        controller = SlowFastController(config(slow_fast_window=w, slow_fast_threshold=threshold),
                                        log_scalar=lambda key, value, **kw: logged.append((key, value)))
        controller.tag_parameters(model)
        return controller, XlintAdam(adam_cfg(), [p for p in model.parameters() if p.requires_grad])

    controller, opt = build()
    split = 37
    state = None
    phases = set()
    for t, loss in enumerate(losses):
        if t == split:  # resume: a new optimizer and controller from the saved optimizer state
            state = opt.state_dict()
            assert CONTROLLER_STATE_KEY in state
            controller, opt = build()
            opt.load_state_dict(state)
        scheduled = 1e-3 * (1 + math.cos(t))  # any schedule
        opt.set_lr(scheduled)
        controller.before_update(opt, t)
        phase, _, big_r = naive(losses, t, w, threshold, 3)
        phases.add(phase)
        for tag, lr in opt.group_lrs().items():
            assert lr == pytest.approx(scheduled * naive_group_k(tag, phase, big_r, 0.01, 10.0)), (t, tag)
        assert dict(logged)["fsf_p1"] == (1.0 if phase == 1 else 0.0)
        controller.observe_logging_outputs([{"loss": torch.tensor(loss * 30), "sample_size": 20},
                                            {"loss": torch.tensor(loss * 10), "sample_size": 20}])
    assert phases == {1, 2} and state is not None
    assert controller.detector.num_losses == len(losses)
    assert dict(logged)["fsf_loss"] == pytest.approx(losses[-1])


def test_controller_preset_df_does_nothing_and_policy_iv_off():
    model = small_xlm_adapter(layers=2, variant="joint")
    assert SlowFastController(SlowFastConfig()).tag_parameters(model) == {}
    assert all(not getattr(p, "param_group", "") or p.param_group == "head" for p in model.parameters())
    controller = SlowFastController(config(slow_fast_policy_iv="off", slow_fast_window=1))
    controller.tag_parameters(model)
    opt = XlintAdam(adam_cfg(), list(model.parameters()))
    for loss in (1.0, 1.0):
        controller.observe_loss(loss, 1)
    controller.before_update(opt, 2)  # P2 with policy IV off: V2 keeps K = 1
    assert controller.last["phase"] == 2 and opt.group_lrs()["fsf.III+fsf.IV"] == pytest.approx(1e-2)
    assert not controller.wants_cka_probe(100)
    auto = SlowFastController(config(slow_fast_cka_interval=5))
    assert auto.wants_cka_probe(10) and not auto.wants_cka_probe(11)
    auto.observe_cka(0.9)
    auto.observe_cka(0.95)  # no longer falling: off
    assert not auto.policy_iv.active and not auto.wants_cka_probe(15)


def test_top_layers_cka_probe():
    import copy

    from xlint.user_dir.analysis.cka import linear_cka
    from xlint.user_dir.optim.slow_fast import top_layers_cka

    torch.manual_seed(0)
    model = small_xlm_adapter(layers=3, variant="joint")
    pretrained = copy.deepcopy(model).eval()
    pad = model.encoder.padding_idx
    tokens = torch.randint(4, 12, (3, 6), generator=torch.Generator().manual_seed(0))
    tokens[1, 4:] = pad
    model.train()
    assert top_layers_cka(model, pretrained, tokens, pad, batch_lang_id=0) == pytest.approx(1.0, abs=1e-9)
    assert model.training and not pretrained.training
    with torch.no_grad():  # re-draw the top layer's matrices: its representation moves away
        for name, param in model.encoder.layers[2].named_parameters():
            if param.dim() == 2:
                param.copy_(torch.randn_like(param))
    value = top_layers_cka(model, pretrained, tokens, pad, batch_lang_id=0)
    model.eval()
    with torch.no_grad():  # independently: the encoder's own inner states (time-first), real tokens only
        _, ours = model(tokens, features_only=True, return_all_hiddens=True, batch_lang_id=0)
        _, theirs = pretrained(tokens, features_only=True, return_all_hiddens=True, batch_lang_id=0)
    mask = tokens.ne(pad)
    expected = sum(linear_cka(ours["inner_states"][k].transpose(0, 1), theirs["inner_states"][k].transpose(0, 1),
                              mask) for k in (2, 3)) / 2
    assert value == pytest.approx(expected, rel=1e-9) and value < 0.99


# --------------------------------------------------------------------------- fairseq-train


RUN_ARGS = ("--optimizer", "xlint_adam", "--lr-scheduler", "polynomial_decay", "--warmup-updates", "2",
            "--total-num-update", "8", "--slow-fast-preset", "fsf", "--slow-fast-window", "1",
            "--slow-fast-threshold", "0.0", "--task", "xlm_mlm_slow_fast")


def slow_fast_run(fairseq_train, data, save_dir, updates):
    return fairseq_train(data.path, save_dir, *RUN_ARGS, variant="adapter", max_update=updates, user_dir=PLUGIN)


@pytest.mark.slow
def test_fairseq_run_rates_are_scheduled_rate_times_k_and_resume_equals_uninterrupted(
        tiny_mlm_data, fairseq_train, tmp_path):
    whole = slow_fast_run(fairseq_train, tiny_mlm_data, tmp_path / "whole", 6)
    records = whole.json_records("train_inner")
    assert [int(r["num_updates"]) for r in records] == list(range(1, 7))
    losses = [float(r["fsf_loss"]) for r in records]
    phases = []
    for t, record in enumerate(records):
        phase, _, big_r = naive(losses, t, 1, 0.0, 3)
        phases.append(phase)
        assert float(record["fsf_p1"]) == (1.0 if phase == 1 else 0.0)
        scheduled = float(record["fsf_lr"])
        # the scheduler's rate: fairseq logs the rate it set after the previous update
        assert scheduled == pytest.approx(float(records[t - 1]["lr"]) if t else 0.0, rel=1e-5)
        groups = {k[len("fsf_lr_"):]: float(v) for k, v in record.items() if k.startswith("fsf_lr_")}
        assert set(groups) == {"body", "I", "I_II", "III", "III_IV"}
        for label, lr in groups.items():
            tag = "" if label == "body" else "+".join("fsf." + p for p in label.split("_"))
            expected = scheduled * naive_group_k(tag, phase, big_r, 0.01, 10.0)
            assert lr == pytest.approx(expected, rel=1e-5, abs=1e-12), (t, label)
    assert {1, 2} <= set(phases[2:]), "the tiny run should visit both phases"

    resumed_dir = tmp_path / "resumed"
    slow_fast_run(fairseq_train, tiny_mlm_data, resumed_dir, 4)
    second = slow_fast_run(fairseq_train, tiny_mlm_data, resumed_dir, 6)
    # a detector restarted empty would put update 6 in P1 (warm-up) where the whole run has P2
    assert phases[4:] == [1, 2]
    assert [int(r["num_updates"]) for r in second.json_records("train_inner")] == [5, 6]
    a = torch.load(tmp_path / "whole" / "checkpoint_last.pt", weights_only=False)
    b = torch.load(resumed_dir / "checkpoint_last.pt", weights_only=False)
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    state_a = a["last_optimizer_state"][CONTROLLER_STATE_KEY]
    assert state_a == b["last_optimizer_state"][CONTROLLER_STATE_KEY]
    assert state_a["detector"]["count"] == 6
    for ra, rb in zip(records[4:], second.json_records("train_inner")):
        assert {k: v for k, v in ra.items() if k.startswith("fsf_")} == \
            {k: v for k, v in rb.items() if k.startswith("fsf_")}


_RANK_WRAPPER = """
import sys
import torch
from fairseq import trainer as trainer_module

seen = {}
original_init = trainer_module.Trainer.__init__


def recording_init(self, *args, **kwargs):
    original_init(self, *args, **kwargs)
    seen["trainer"] = self


trainer_module.Trainer.__init__ = recording_init
from fairseq_cli.train import cli_main  # noqa: E402

dump, sys.argv = sys.argv[1], ["fairseq-train"] + sys.argv[2:]
cli_main()
from xlint.user_dir.optim.adam_with_head_lr import find_xlint_adam  # noqa: E402

trainer = seen["trainer"]
torch.save({"rank": trainer.data_parallel_rank,
            "controller": find_xlint_adam(trainer.optimizer).state_dict()["xlint_controller_state"]}, dump)
"""


@pytest.mark.slow
def test_data_parallel_ranks_feed_the_same_all_reduced_loss(tiny_mlm_data, tmp_path):
    import socket
    import subprocess
    import sys

    from conftest import fairseq_train_command, subprocess_env

    wrapper = tmp_path / "rank_wrapper.py"
    wrapper.write_text(_RANK_WRAPPER)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs, logs = [], []
    for rank in range(2):
        argv = fairseq_train_command(
            tiny_mlm_data.path, tmp_path / "ckpt", *RUN_ARGS, "--distributed-world-size", "2",
            "--distributed-rank", str(rank), "--distributed-no-spawn", "--distributed-init-method",
            f"tcp://127.0.0.1:{port}", "--distributed-backend", "gloo", "--ddp-backend", "legacy_ddp",
            variant="adapter", max_update=4, user_dir=PLUGIN)[3:]
        log = open(tmp_path / f"rank{rank}.log", "w")
        procs.append(subprocess.Popen([sys.executable, str(wrapper), str(tmp_path / f"rank{rank}.pt"), *argv],
                                      cwd=tmp_path, env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT))
        logs.append(log)
    try:
        codes = [p.wait(timeout=300) for p in procs]
    finally:
        for p, log in zip(procs, logs):
            if p.poll() is None:
                p.kill()
                p.wait()
            log.close()
    assert codes == [0, 0], (tmp_path / "rank0.log").read_text()[-4000:] + (tmp_path / "rank1.log").read_text()[-3000:]
    dumps = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert [d["rank"] for d in dumps] == [0, 1]
    assert dumps[0]["controller"] == dumps[1]["controller"]  # the same losses, so the same phases
    records = [json.loads(line[line.index("{"):]) for line in (tmp_path / "rank0.log").read_text().splitlines()
               if "train_inner" in line and "{" in line]  # the wrapper's log lines: INFO:train_inner:{...}
    assert [int(r["num_updates"]) for r in records] == [1, 2, 3, 4]
    for record in records:  # the detector's loss is the global mean (fairseq's loss is in bits, 3 decimals)
        assert float(record["fsf_loss"]) / math.log(2) == pytest.approx(float(record["loss"]), abs=6e-4)
    assert dumps[0]["controller"]["detector"]["count"] == 4

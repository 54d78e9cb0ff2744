"""The L0 gate layout, the ``l0_hard_concrete`` criterion and the ``l0_mlm`` task.

Fast tests build a small ``xlm_adapter`` in-process and check the masking against a copy of the
model whose weights are masked by hand, the penalty against numpy, and the Lagrange multiplier's
reversed gradient.  Slow tests run the real ``fairseq-train`` on the session's tiny data over a
tiny pretrained checkpoint (6 updates of the joint model).
"""
import copy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fairseq.data import Dictionary

from conftest import run_fairseq_train
from xlint.user_dir.criterions.l0_hard_concrete import L0HardConcreteConfig, L0HardConcreteCriterion
from xlint.user_dir.models.xlm_adapter import XlmAdapterConfig, XlmAdapterEncoder, XlmAdapterModel
from xlint.user_dir.modules.gate_layout import GateLayout, build_gate_layout
from xlint.user_dir.modules.hard_concrete import BETA, GAMMA, ZETA
from xlint.user_dir.tasks.l0_mlm import check_no_weight_decay

LAYERS, DIM, FFN, HEADS = 2, 16, 24, 4


def make_dictionary() -> Dictionary:
    d = Dictionary()
    for word in "a b c d e f g h".split():
        d.add_symbol(word)
    d.add_symbol("<mask>")
    return d


def make_model(variant: str = "joint") -> XlmAdapterModel:
    torch.manual_seed(0)
    cfg = XlmAdapterConfig(encoder_layers=LAYERS, encoder_embed_dim=DIM, encoder_ffn_embed_dim=FFN,
                           encoder_attention_heads=HEADS, max_positions=32, dropout=0.0, attention_dropout=0.0,
                           language_specific=variant, model_languages="en")
    return XlmAdapterModel(cfg, XlmAdapterEncoder(cfg, make_dictionary(), ["en"])).eval()


def net_input(batch: int = 3, length: int = 7) -> dict:
    g = torch.Generator().manual_seed(1)
    return {"src_tokens": torch.randint(4, 12, (batch, length), generator=g),
            "src_lang_id": torch.zeros(batch, dtype=torch.long)}


def hand_masked_copy(model: XlmAdapterModel, z: torch.Tensor, attention: str, ffn: str) -> XlmAdapterModel:
    """Mask a copy's weights in place, by index, following the module docstring of gate_layout."""
    masked = copy.deepcopy(model)
    position = 0

    def take(n):
        nonlocal position
        values = z[position:position + n]
        position += n
        return values

    head_dim = DIM // HEADS
    with torch.no_grad():
        for layer in masked.encoder.layers:
            att = layer.self_attn.attention
            projections = [att.q_proj, att.k_proj, att.v_proj, att.out_proj]
            if attention == "head":
                gates = take(HEADS)
                for h in range(HEADS):
                    rows = slice(h * head_dim, (h + 1) * head_dim)
                    for linear in projections[:3]:
                        linear.weight[rows] *= gates[h]
                        linear.bias[rows] *= gates[h]
                    att.out_proj.weight[:, rows] *= gates[h]
            else:
                for linear in projections:
                    gates = take(DIM if attention == "row" else 1)
                    for r in range(linear.weight.shape[0]):
                        g = gates[r] if attention == "row" else gates[0]
                        linear.weight[r] *= g
                        linear.bias[r] *= g
            fc1, fc2 = layer.ffn.fc1, layer.ffn.fc2
            if ffn == "neuron":
                gates = take(FFN)
                for j in range(FFN):
                    fc1.weight[j] *= gates[j]
                    fc1.bias[j] *= gates[j]
                    fc2.weight[:, j] *= gates[j]
            else:
                for linear in (fc1, fc2):
                    rows = linear.weight.shape[0]
                    gates = take(rows if ffn == "row" else 1)
                    for r in range(rows):
                        g = gates[r] if ffn == "row" else gates[0]
                        linear.weight[r] *= g
                        linear.bias[r] *= g
    assert position == z.numel()
    return masked


# --------------------------------------------------------------------------- the layout


@pytest.mark.parametrize("attention,ffn,per_layer", [
    ("row", "row", 4 * DIM + FFN + DIM), ("head", "neuron", HEADS + FFN), ("matrix", "matrix", 6),
    ("head", "row", HEADS + FFN + DIM), ("row", "matrix", 4 * DIM + 2)])
def test_layout_sizes_names_and_spec(attention, ffn, per_layer):
    model = make_model()
    layout = build_gate_layout(model, attention, ffn)
    assert layout.num_gates == LAYERS * per_layer
    names, keys = layout.gate_names(), layout.gate_keys()
    assert len(names) == len(set(names)) == len(keys) == layout.num_gates
    assert set(keys) == {f"layer{i}.{s}" for i in range(LAYERS) for s in ("attn", "ffn")}
    expected = {("row", "row"): "layer1.ffn.fc1.row[17]", ("head", "neuron"): "layer1.attn.head[2]",
                ("matrix", "matrix"): "layer1.attn.q_proj", ("head", "row"): "layer0.ffn.fc2.row[5]",
                ("row", "matrix"): "layer0.ffn.fc2"}[(attention, ffn)]
    assert expected in names
    restored = GateLayout.from_spec(layout.spec())
    assert restored.spec() == layout.spec() and restored.gate_names() == names
    # every gated parameter is counted once: rows/matrices also gate the biases
    sizes = layout.params_per_gate()
    assert sizes.numel() == layout.num_gates
    gated = sum(p.numel() for n, p in model.named_parameters() if (".attention." in n or ".ffn." in n))
    ungated_biases = LAYERS * ((DIM if attention == "head" else 0) + (DIM if ffn == "neuron" else 0))
    assert int(sizes.sum()) == gated - ungated_biases


@pytest.mark.parametrize("attention,ffn", [("row", "row"), ("head", "neuron"), ("matrix", "matrix")])
def test_masked_forward_equals_a_hand_masked_copy(attention, ffn):
    model = make_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    layout = build_gate_layout(model, attention, ffn)
    z = torch.rand(layout.num_gates, generator=torch.Generator().manual_seed(2))
    z[::3] = 0.0
    params = dict(model.named_parameters())
    masked = layout.masked_parameters(params, z)
    out = torch.func.functional_call(model, masked, args=(), kwargs=net_input())[0]
    expected = hand_masked_copy(model, z, attention, ffn)(**net_input())[0]
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    ones = torch.func.functional_call(model, layout.masked_parameters(params, torch.ones(layout.num_gates)),
                                      args=(), kwargs=net_input())[0]
    torch.testing.assert_close(ones, model(**net_input())[0], rtol=0, atol=0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model is untouched


def test_layout_refuses_language_specific_sublayers_and_bad_options():
    with pytest.raises(ValueError, match="language-specific"):
        build_gate_layout(make_model("ffn"))
    with pytest.raises(ValueError, match="attention gates"):
        build_gate_layout(make_model(), "neuron")
    with pytest.raises(ValueError, match="FFN gates"):
        build_gate_layout(make_model(), "row", "head")


# --------------------------------------------------------------------------- the criterion


def make_criterion(model, **options):
    task = SimpleNamespace(target_dictionary=model.encoder.dictionary, source_dictionary=model.encoder.dictionary,
                           gate_layout=lambda a, f: build_gate_layout(model, a, f))
    cfg = L0HardConcreteConfig(tpu=False, **options)
    return L0HardConcreteCriterion(cfg, task)


def mlm_sample(model) -> dict:
    inputs = net_input()
    target = torch.full_like(inputs["src_tokens"], model.encoder.dictionary.pad())
    target[:, 1::3] = inputs["src_tokens"][:, 1::3]
    return {"net_input": inputs, "target": target, "ntokens": int(target.numel()), "nsentences": 3}


@pytest.mark.parametrize("normalization", ["gates", "parameters", "none"])
def test_penalty_matches_numpy(normalization):
    model = make_model()
    criterion = make_criterion(model, l0_lambda=0.7, l0_normalization=normalization, log_alpha_init_std=1.0)
    log_alpha = criterion.gates.log_alpha.detach().double().numpy()
    p = 1 / (1 + np.exp(-(log_alpha - BETA * np.log(-GAMMA / ZETA))))
    sizes = criterion.layout.params_per_gate().numpy()
    expected = {"gates": p.mean(), "parameters": (p * sizes).sum() / sizes.sum(), "none": p.sum()}[normalization]
    assert criterion.normalized_l0().item() == pytest.approx(expected, rel=1e-5)
    assert criterion.penalty().item() == pytest.approx(0.7 * expected, rel=1e-5)


def test_forward_loss_is_mlm_plus_penalty_and_validation_uses_the_test_time_gate():
    model = make_model()
    model.requires_grad_(False)  # as the l0_mlm task freezes it
    criterion = make_criterion(model, l0_lambda=0.5, log_alpha_init=1.0, log_alpha_init_std=0.5)
    sample = mlm_sample(model)
    criterion.train()
    torch.manual_seed(5)
    loss, sample_size, log = criterion(model, sample)
    sample_size = int(sample_size)
    assert sample_size == int(sample["target"].ne(model.encoder.dictionary.pad()).sum())
    assert loss.item() == pytest.approx(log["mlm_loss"].item() + sample_size * 0.5 * log["l0_norm"].item(), rel=1e-5)
    loss.backward()
    assert criterion.gates.log_alpha.grad is not None and criterion.gates.log_alpha.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())

    criterion.eval()
    loss, sample_size, log = criterion(model, sample)
    z = criterion.gates.deterministic().detach()
    masked = hand_masked_copy(model, z, "row", "row")
    mask = sample["target"].ne(model.encoder.dictionary.pad())
    logits = masked(**sample["net_input"], masked_tokens=mask)[0]
    expected = torch.nn.functional.cross_entropy(logits, sample["target"][mask], reduction="sum")
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert log["mlm_loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_lagrange_multiplier_gradient_is_reversed():
    model = make_model()
    criterion = make_criterion(model, l0_lambda=0.2, target_sparsity=0.3, multiplier_init=0.4)
    r = criterion.normalized_l0().item()
    criterion.penalty().backward()
    # d/dmu of mu (R - (1 - s*)) is R - 0.7; the reversed gradient makes descent an ascent
    assert criterion.multiplier.grad.item() == pytest.approx(-(r - 0.7), rel=1e-5)
    p = criterion.gates.prob_nonzero().detach()
    expected_gates = (0.2 + 0.4) * p * (1 - p) / p.numel()  # (lambda + mu) dR/dlog alpha
    torch.testing.assert_close(criterion.gates.log_alpha.grad, expected_gates)
    optimizer = torch.optim.SGD(criterion.parameters(), lr=0.1)
    optimizer.step()
    assert r > 0.7 and criterion.multiplier.item() > 0.4  # density above target: mu rises


def test_checkpointed_layout_and_option_errors():
    model = make_model()
    criterion = make_criterion(model)
    state = criterion.state_dict()
    assert "_extra_state" in state and state["_extra_state"]["layout"] == criterion.layout.spec()
    make_criterion(model).load_state_dict(state)
    with pytest.raises(ValueError, match="another layout"):
        make_criterion(model, attention_gates="head").load_state_dict(state, strict=False)
    with pytest.raises(ValueError, match="normalised"):
        make_criterion(model, target_sparsity=0.5, l0_normalization="none")
    with pytest.raises(ValueError, match="target-sparsity"):
        make_criterion(model, target_sparsity=1.0)
    with pytest.raises(ValueError, match="l0_mlm"):
        L0HardConcreteCriterion(L0HardConcreteConfig(tpu=False),
                                SimpleNamespace(target_dictionary=make_dictionary()))
    check_no_weight_decay(SimpleNamespace(param_groups=[{"weight_decay": 0.0}]))
    with pytest.raises(ValueError, match="weight-decay"):
        check_no_weight_decay(SimpleNamespace(param_groups=[{"weight_decay": 0.01}]))


# --------------------------------------------------------------------------- fairseq-train


def l0_train(data, pretrained: Path, save_dir: Path, language: str, *extra: str, max_update: int = 6,
             check: bool = True):
    return run_fairseq_train(
        data, save_dir, "--task", "l0_mlm", "--languages", language, "--pretrained-checkpoint", str(pretrained),
        "--criterion", "l0_hard_concrete", "--lr", "0.05", "--lr-scheduler", "fixed", "--ddp-backend", "legacy_ddp",
        *extra, variant=None, max_update=max_update, check=check)


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def pretrained(tiny_mlm_data, tmp_path_factory) -> Path:
    save_dir = tmp_path_factory.mktemp("l0_pretrained") / "ckpt"
    run_fairseq_train(tiny_mlm_data.path, save_dir, variant="joint", max_update=6)
    return save_dir / "checkpoint_last.pt"


@pytest.fixture(scope="module")
def en_run(tiny_mlm_data, pretrained, tmp_path_factory):
    save_dir = tmp_path_factory.mktemp("l0_en") / "ckpt"
    return l0_train(tiny_mlm_data.path, pretrained, save_dir, "en", "--l0-lambda", "1")


@pytest.mark.slow
def test_l0_run_trains_only_the_gates(en_run, pretrained):
    records = en_run.json_records("train_inner")
    l0 = [float(r["l0_norm"]) for r in records]
    assert len(l0) == 6 and all(b < a for a, b in zip(l0, l0[1:]))  # the L0 term falls with lambda > 0
    before, after = load(pretrained)["model"], load(en_run.save_dir / "checkpoint_last.pt")
    assert before.keys() == after["model"].keys()
    assert all(torch.equal(before[k], after["model"][k]) for k in before)  # frozen: bit-identical
    log_alpha = after["criterion"]["gates.log_alpha"]
    assert log_alpha.numel() == 2 * (4 * 64 + 128 + 64)  # xlm_adapter_tiny, one gate per row
    assert log_alpha.mean().item() < -0.1  # moved from the initial 0 +- 0.01
    assert after["cfg"]["model"]["encoder_layers"] == 2  # the run's config describes the pretrained model


@pytest.mark.slow
def test_two_languages_give_different_masks(en_run, tiny_mlm_data, pretrained, tmp_path):
    fr = l0_train(tiny_mlm_data.path, pretrained, tmp_path / "fr", "fr", "--l0-lambda", "1")
    en_alpha = load(en_run.save_dir / "checkpoint_last.pt")["criterion"]["gates.log_alpha"]
    fr_alpha = load(fr.save_dir / "checkpoint_last.pt")["criterion"]["gates.log_alpha"]
    # same seed, options and initial gates: only the language's data differs
    assert (en_alpha - fr_alpha).abs().max().item() > 1e-3
    assert float(fr.json_records("valid")[-1]["valid_ppl_fr"]) > 0


@pytest.mark.slow
def test_resume_restores_the_gates(en_run, tiny_mlm_data, pretrained, tmp_path):
    save_dir = tmp_path / "resumed"
    l0_train(tiny_mlm_data.path, pretrained, save_dir, "en", "--l0-lambda", "1", max_update=3)
    saved = load(save_dir / "checkpoint_last.pt")["criterion"]["gates.log_alpha"]
    resumed = l0_train(tiny_mlm_data.path, pretrained, save_dir, "en", "--l0-lambda", "1", max_update=6)
    assert "Loaded checkpoint" in resumed.output and "@ 3 updates" in resumed.output
    final = load(save_dir / "checkpoint_last.pt")["criterion"]["gates.log_alpha"]
    assert not torch.equal(saved, final)
    straight = load(en_run.save_dir / "checkpoint_last.pt")["criterion"]["gates.log_alpha"]
    torch.testing.assert_close(final, straight, rtol=0, atol=1e-6)  # 3 + 3 updates == 6 updates


@pytest.mark.slow
def test_lagrange_multiplier_rises_while_sparsity_is_below_target(tiny_mlm_data, pretrained, tmp_path):
    run = l0_train(tiny_mlm_data.path, pretrained, tmp_path / "target", "en", "--l0-lambda", "0",
                   "--target-sparsity", "0.9", max_update=4)
    records = run.json_records("train_inner")
    multiplier = [float(r["multiplier"]) for r in records]
    density = [float(r["l0_norm"]) for r in records]
    assert all(d > 0.1 for d in density)  # expected density above 1 - 0.9: sparsity below target
    assert multiplier[0] > 0 and all(b > a for a, b in zip(multiplier, multiplier[1:]))
    state = load(tmp_path / "target" / "checkpoint_last.pt")["criterion"]
    assert state["multiplier"].item() == pytest.approx(multiplier[-1], abs=1e-3)


@pytest.mark.slow
def test_weight_decay_is_refused(tiny_mlm_data, pretrained, tmp_path):
    run = l0_train(tiny_mlm_data.path, pretrained, tmp_path / "wd", "en", "--weight-decay", "0.01",
                   max_update=2, check=False)
    assert run.returncode != 0 and "use --weight-decay 0" in run.output


_DDP_WRAPPER = """
import sys
import torch
from fairseq import trainer as trainer_module
from fairseq_cli.train import cli_main

dump_path, argv = sys.argv[1], sys.argv[2:]
seen = {}
original_init = trainer_module.Trainer.__init__

def recording_init(self, *args, **kwargs):
    original_init(self, *args, **kwargs)
    seen["trainer"] = self

trainer_module.Trainer.__init__ = recording_init
sys.argv = ["fairseq-train"] + argv
cli_main()
trainer = seen["trainer"]
torch.save({"rank": trainer.data_parallel_rank, "num_updates": trainer.get_num_updates(),
            "gates": trainer.get_criterion().gates.log_alpha.detach().clone(),
            "model": {k: v.clone() for k, v in trainer.get_model().state_dict().items()}}, dump_path)
"""


@pytest.mark.slow
def test_two_process_data_parallel_keeps_the_gates_identical(tiny_mlm_data, pretrained, tmp_path):
    import socket
    import subprocess
    import sys

    from conftest import fairseq_train_command, subprocess_env

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(_DDP_WRAPPER)
    procs = []
    for rank in range(2):
        argv = fairseq_train_command(
            tiny_mlm_data.path, tmp_path / "ddp", "--task", "l0_mlm", "--languages", "en",
            "--pretrained-checkpoint", str(pretrained), "--criterion", "l0_hard_concrete", "--lr", "0.05",
            "--distributed-world-size", "2", "--distributed-rank", str(rank), "--distributed-no-spawn",
            "--distributed-init-method", f"tcp://127.0.0.1:{port}", "--distributed-backend", "gloo",
            "--ddp-backend", "legacy_ddp", variant=None, max_update=3)[3:]
        log = open(tmp_path / f"rank{rank}.log", "w")
        procs.append((subprocess.Popen([sys.executable, str(wrapper), str(tmp_path / f"rank{rank}.pt"), *argv],
                                       cwd=tmp_path, env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT),
                      log))
    codes = []
    for proc, log in procs:
        try:
            codes.append(proc.wait(timeout=300))
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
    assert codes == [0, 0], (tmp_path / "rank0.log").read_text()[-3000:] + (tmp_path / "rank1.log").read_text()[-3000:]
    dumps = [load(tmp_path / f"rank{rank}.pt") for rank in range(2)]
    assert dumps[0]["num_updates"] == dumps[1]["num_updates"] == 3
    torch.testing.assert_close(dumps[0]["gates"], dumps[1]["gates"], rtol=0, atol=0)  # all-reduced gradients
    assert dumps[0]["gates"].abs().mean().item() > 0.05  # moved from 0 +- 0.01
    before = load(pretrained)["model"]
    for dump in dumps:
        assert all(torch.equal(before[k], dump["model"][k]) for k in before)

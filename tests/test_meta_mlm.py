"""meta_mlm: the task's meta step against an independent bilevel computation, isolation, resume.

Conditions users run: dropout on (the architectures' default 0.1), half-precision models,
``--update-freq`` > 1, skipped (overflowing) theta steps.
"""
import copy

import pytest
import torch
import torch.nn.functional as F

BETA = 0.5


def build(tiny_mlm_data, *extra, dropout: float = 0.0):
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    argv = [str(tiny_mlm_data.path), "--user-dir", "user_dir", "--task", "meta_mlm", "--arch", "xlm_adapter_tiny",
            "--language-specific", "adapter", "--criterion", "masked_lm", "--optimizer", "adam", "--lr", "1e-3",
            "--max-tokens", "256", "--tokens-per-sample", "64", "--sample-break-mode", "eos", "--cpu",
            "--dropout", str(dropout), "--attention-dropout", str(dropout), "--seed", "5", *extra]
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))
    task = tasks.setup_task(cfg.task)
    task.load_dataset("train")
    model = task.build_model(cfg.model)
    return cfg, task, model


def first_batch_of(task, lang_index, rows=slice(0, 6)):
    dataset = task.datasets["train"]
    rows = dataset.language_rows(lang_index)[rows]
    return dataset.collater([dataset[int(i)] for i in rows])


def oracle_loss(model, params, batch, pad):
    """Plain cross-entropy over the masked positions, from the model's full output (no task code)."""
    logits = torch.func.functional_call(model, params, args=(), kwargs=batch["net_input"])[0]
    target = batch["target"]
    masked = target != pad
    return F.cross_entropy(logits[masked].double(), target[masked])


def independent_hypergradient(model, sample, metadev, lang, languages, pad):
    """torch.func over the whole expression V(theta - beta grad_theta L_train(theta, phi_i), phi).

    theta and phi are split by parameter name alone (``.per_language.<lang>.``).
    """
    named = {k: v.detach() for k, v in model.named_parameters()}
    phi_names = [n for n in named if f".per_language.{lang}." in n]
    theta_names = [n for n in named if ".per_language." not in n]

    def objective(phi_i):
        def train_loss(theta):
            return oracle_loss(model, {**named, **theta, **phi_i}, sample, pad)

        theta0 = {n: named[n] for n in theta_names}
        grads = torch.func.grad(train_loss)(theta0)
        theta_prime = {n: theta0[n] - BETA * grads[n] for n in theta_names}
        return sum(oracle_loss(model, {**named, **theta_prime, **phi_i}, metadev[j], pad)
                   for j in range(len(languages))) / len(languages)

    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.MATH]):  # the fused attention kernels have no double backward
        oracle = torch.func.grad(objective)({n: named[n] for n in phi_names})
    return [oracle[n] for n in phi_names]


def meta_gradient_via_task(task, model, sample, lang_index):
    """Run the task's meta step with SGD at lr 1: the phi change is minus the meta-gradient."""
    lang = task.languages[lang_index]
    before = [p.detach().clone() for _, p in model.language_parameters(lang)]
    streams = copy.deepcopy(model.meta_state.streams)
    stats = task.meta_step(model, sample, lang_index, scheduled_lr=1e-3, ignore_grad=False)
    after = [p.detach().clone() for _, p in model.language_parameters(lang)]
    model.meta_state.streams = streams  # replay the same meta-dev batches for the oracle
    metadev = [task._next_metadev_sample(model, j, torch.device("cpu")) for j in range(len(task.languages))]
    return [b - a for b, a in zip(before, after)], metadev, stats


# exact and hvp agree with the oracle to ~1e-7 only: fairseq's gelu computes in float32 even for a
# float64 model, and the oracle's full-vocabulary output rounds there differently from the task's
@pytest.mark.parametrize("mode,tolerance", [("exact", 1e-6), ("hvp", 1e-6), ("finite-difference", 2e-3)])
@pytest.mark.slow
def test_meta_step_matches_independent_hypergradient(tiny_mlm_data, mode, tolerance):
    cfg, task, model = build(tiny_mlm_data, "--meta-second-order", mode, "--meta-beta", str(BETA),
                             "--meta-phi-optimizer", "sgd", "--meta-phi-lr", "1.0")
    model = model.double()
    with torch.no_grad():  # move the adapters away from their near-identity init
        for _, p in model.language_parameters("fr"):
            p.add_(torch.randn_like(p) * 0.05)
    sample = first_batch_of(task, 1)
    got, metadev, stats = meta_gradient_via_task(task, model, sample, 1)
    # restore phi to evaluate the oracle at the same point
    with torch.no_grad():
        for (_, p), g in zip(model.language_parameters("fr"), got):
            p.add_(g)
    expected = independent_hypergradient(model, sample, metadev, "fr", task.languages, task.source_dictionary.pad())
    got_flat, expected_flat = torch.cat([g.reshape(-1) for g in got]), torch.cat([e.reshape(-1) for e in expected])
    assert torch.nn.functional.cosine_similarity(got_flat, expected_flat, dim=0) >= 0.99
    assert (got_flat - expected_flat).norm() / expected_flat.norm() < tolerance
    assert stats["meta_skipped"] == 0 and stats["meta_second_order_norm"] > 0


def test_train_step_changes_only_phi_i_and_theta(tiny_mlm_data):
    from fairseq import criterions, optim

    cfg, task, model = build(tiny_mlm_data)
    criterion = criterions.build_criterion(cfg.criterion, task)
    theta = [p for p in model.parameters() if p.requires_grad]
    optimizer = optim.build_optimizer(cfg.optimizer, theta)
    optimizer.set_lr(1e-3)
    snapshot = {n: p.detach().clone() for n, p in model.named_parameters()}
    sample = first_batch_of(task, 0)  # language en

    _, _, logging_output = task.train_step(sample, model, criterion, optimizer, update_num=0)
    for name, param in model.named_parameters():
        owner = model.language_of_parameter(name)
        if owner == "en":
            assert not torch.equal(param, snapshot[name]), f"phi_en {name} was not meta-updated"
        else:  # theta is restored bit-exactly after the meta step; phi_fr is untouched
            assert torch.equal(param, snapshot[name]), f"{name} changed during the meta step"
            if owner == "fr":
                assert param.grad is None
    assert logging_output["meta_steps"] == 1 and logging_output["meta_skipped"] == 0

    optimizer.step()
    changed_theta = [n for n, p in model.named_parameters()
                     if model.language_of_parameter(n) is None and not torch.equal(p, snapshot[n])]
    assert changed_theta, "fairseq's optimizer did not update theta"
    for name, param in model.language_parameters("fr"):
        assert torch.equal(param, snapshot[name])


def test_non_finite_meta_gradient_skips_the_phi_step(tiny_mlm_data):
    cfg, task, model = build(tiny_mlm_data)
    sample = first_batch_of(task, 0)
    snapshot = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        model.encoder.layers[0].final_layer_norm.weight.fill_(float("inf"))
    stats = task.meta_step(model, sample, 0, scheduled_lr=1e-3, ignore_grad=False)
    assert stats["meta_skipped"] == 1
    for name, param in model.language_parameters("en"):
        assert torch.equal(param, snapshot[name])


def test_meta_mlm_requires_language_specific_modules(tiny_mlm_data):
    with pytest.raises(ValueError, match="language-specific"):
        build(tiny_mlm_data, "--language-specific", "joint")


@pytest.mark.slow
def test_resume_equals_uninterrupted(tiny_mlm_data, fairseq_train, tmp_path):
    from fairseq import checkpoint_utils

    extra = ("--task", "meta_mlm", "--update-freq", "2")
    fairseq_train(tiny_mlm_data.path, tmp_path / "straight", *extra, max_update=6)
    fairseq_train(tiny_mlm_data.path, tmp_path / "resumed", *extra, max_update=3)
    fairseq_train(tiny_mlm_data.path, tmp_path / "resumed", *extra, max_update=6)
    straight = checkpoint_utils.load_checkpoint_to_cpu(str(tmp_path / "straight" / "checkpoint_last.pt"))
    resumed = checkpoint_utils.load_checkpoint_to_cpu(str(tmp_path / "resumed" / "checkpoint_last.pt"))
    assert straight["optimizer_history"][-1]["num_updates"] == 6
    for key, value in straight["model"].items():
        if key.endswith("_extra_state"):
            continue
        assert torch.equal(value, resumed["model"][key]), key
    meta_a, meta_b = straight["model"]["meta_state._extra_state"], resumed["model"]["meta_state._extra_state"]
    assert meta_a["streams"] == meta_b["streams"]
    state_a, state_b = meta_a["phi_optimizer"]["state"], meta_b["phi_optimizer"]["state"]
    assert state_a.keys() == state_b.keys() and state_a
    for index in state_a:
        for name, value in state_a[index].items():
            assert torch.equal(value, state_b[index][name]), (index, name)


# --------------------------------------------------------------------------- dropout


def _meta_gradient_from(task, model, sample, lang_index, rng_state):
    """The task's meta-gradient (SGD at lr 1) from a given RNG state; phi and the streams are put back."""
    torch.set_rng_state(rng_state)
    lang = task.languages[lang_index]
    phi = [p.detach().clone() for _, p in model.language_parameters(lang)]
    streams = copy.deepcopy(model.meta_state.streams)
    task.meta_step(model, sample, lang_index, scheduled_lr=1e-3, ignore_grad=False)
    grad = torch.cat([(b - p.detach()).reshape(-1) for b, (_, p) in zip(phi, model.language_parameters(lang))])
    with torch.no_grad():
        for saved, (_, p) in zip(phi, model.language_parameters(lang)):
            p.copy_(saved)
    model.meta_state.streams = streams
    task._pending = None
    model.meta_state.phi_optimizer = None  # fresh SGD masters from the restored phi
    return grad


def _meta_gradients_by_mode(tiny_mlm_data, modes, dropout, dtype=torch.float64):
    grads = {}
    rng_state = torch.manual_seed(11).get_state()
    for mode in modes:
        torch.manual_seed(0)  # the same initialisation for every mode
        _, task, model = build(tiny_mlm_data, "--meta-second-order", mode, "--meta-beta", str(BETA),
                               "--meta-phi-optimizer", "sgd", "--meta-phi-lr", "1.0", dropout=dropout)
        model = model.to(dtype)
        with torch.no_grad():  # move the adapters away from their near-identity init
            for _, p in model.language_parameters("fr"):
                p.add_(torch.randn_like(p) * 0.05)
        model.train()
        grads[mode] = _meta_gradient_from(task, model, first_batch_of(task, 1), 1, rng_state)
    return grads


def _cosine(a, b):
    return float(F.cosine_similarity(a, b, dim=0))


@pytest.mark.slow
def test_with_dropout_every_mode_agrees_with_exact_on_the_same_rng_state(tiny_mlm_data):
    """Dropout 0.1: the FD difference is taken under one set of masks, so it matches the exact mode."""
    grads = _meta_gradients_by_mode(tiny_mlm_data, ["exact", "hvp", "finite-difference"], dropout=0.1)
    assert _cosine(grads["finite-difference"], grads["exact"]) >= 0.99
    assert (grads["hvp"] - grads["exact"]).norm() / grads["exact"].norm() < 1e-9


@pytest.mark.slow
def test_with_dropout_the_meta_gradient_is_a_function_of_the_rng_state(tiny_mlm_data):
    _, task, model = build(tiny_mlm_data, "--meta-second-order", "finite-difference", "--meta-beta", str(BETA),
                           "--meta-phi-optimizer", "sgd", "--meta-phi-lr", "1.0", dropout=0.1)
    model = model.double().train()
    sample = first_batch_of(task, 1)
    state = torch.manual_seed(3).get_state()
    first = _meta_gradient_from(task, model, sample, 1, state)
    again = _meta_gradient_from(task, model, sample, 1, state)
    other = _meta_gradient_from(task, model, sample, 1, torch.manual_seed(4).get_state())
    assert torch.equal(first, again)
    assert not torch.equal(first, other)  # dropout is on: another state draws other masks


def test_meta_step_draws_from_a_forked_generator(tiny_mlm_data):
    """The training stream after a meta step is what it would be without one."""
    _, task, model = build(tiny_mlm_data, dropout=0.1)
    model.train()
    torch.manual_seed(21)
    before = torch.get_rng_state()
    task.meta_step(model, first_batch_of(task, 0), 0, scheduled_lr=1e-3, ignore_grad=False)
    assert torch.equal(torch.get_rng_state(), before)


# --------------------------------------------------------------------------- precision


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", ["hvp", "finite-difference"])
def test_half_precision_model_gets_the_fp32_meta_gradient(tiny_mlm_data, half, mode):
    """A virtual step of beta = 1e-4 rounds back to theta in half precision; the meta step runs on fp32 copies."""
    extra = ("--meta-second-order", mode, "--meta-beta", "1e-4", "--meta-phi-optimizer", "sgd", "--meta-phi-lr", "1")
    _, task, model = build(tiny_mlm_data, *extra)
    with torch.no_grad():
        for _, p in model.language_parameters("fr"):
            p.add_(torch.randn_like(p) * 0.05)
        for p in model.parameters():  # weights that half precision represents exactly
            p.copy_(p.to(half).float())
    _, task32, model32 = build(tiny_mlm_data, *extra)
    model32.load_state_dict(model.state_dict())
    model_half = model.to(half)
    sample = first_batch_of(task, 1)
    state = torch.manual_seed(2).get_state()
    stats = {}

    def gradient(task_, model_):
        torch.set_rng_state(state)
        before = [p.detach().float().clone() for _, p in model_.language_parameters("fr")]
        stats.update(task_.meta_step(model_, sample, 1, scheduled_lr=1e-3, ignore_grad=False))
        masters = task_._masters_of(model_, "fr")
        return torch.cat([(b - m).reshape(-1) for b, m in zip(before, masters)])

    expected = gradient(task32, model32)
    got = gradient(task, model_half)
    assert all(p.dtype == half for p in model_half.parameters())
    assert _cosine(got, expected) >= 0.999
    assert stats["meta_virtual_changed"] > 0.5  # the virtual step survived (in half it would round away)
    assert stats["meta_second_order_norm"] > 0


def test_half_precision_masters_are_checkpointed(tiny_mlm_data):
    """Resuming a half-precision run restores phi's fp32 masters, not fp16 roundings of them."""
    _, task, model = build(tiny_mlm_data, "--meta-phi-optimizer", "adam", "--meta-phi-lr", "1e-2")
    model = model.half()
    task.meta_step(model, first_batch_of(task, 0), 0, scheduled_lr=1e-3, ignore_grad=False)
    task._pending.committed = True
    masters = [m.clone() for m in model.meta_state.phi_masters]
    assert any(not torch.equal(m, m.half().float()) for m in masters)
    state = model.state_dict()
    _, task2, model2 = build(tiny_mlm_data, "--meta-phi-optimizer", "adam", "--meta-phi-lr", "1e-2")
    model2 = model2.half()
    model2.load_state_dict(state)
    for saved, restored in zip(masters, task2._masters_of(model2, "en") + task2._masters_of(model2, "fr")):
        assert torch.equal(saved, restored)


# --------------------------------------------------------------------------- one meta step per update


def _phi_steps_per_language(checkpoint_model_state, num_languages=2):
    """Adam's step count of each language's phi masters (masters are ordered language by language)."""
    optimizer = checkpoint_model_state["meta_state._extra_state"]["phi_optimizer"]
    per_language = len(optimizer["param_groups"][0]["params"]) // num_languages
    steps = [0] * num_languages
    for index, state in optimizer["state"].items():
        steps[index // per_language] = max(steps[index // per_language], int(state["step"]))
    return steps


@pytest.mark.slow
def test_update_freq_takes_one_meta_step_per_update(tiny_mlm_data, fairseq_train, tmp_path):
    from fairseq import checkpoint_utils

    run = fairseq_train(tiny_mlm_data.path, tmp_path / "uf2", "--task", "meta_mlm", "--update-freq", "2",
                        "--dropout", "0.1", max_update=5)
    ckpt = checkpoint_utils.load_checkpoint_to_cpu(str(tmp_path / "uf2" / "checkpoint_last.pt"))
    assert ckpt["optimizer_history"][-1]["num_updates"] == 5
    # one Adam step per update, on the masters of that update's language
    assert sum(_phi_steps_per_language(ckpt["model"])) == 5
    records = run.json_records("train_inner")
    assert records and all(float(r["meta_skipped"]) == 0 for r in records)


def test_a_skipped_theta_step_rolls_back_its_phi_step(tiny_mlm_data):
    """fp16 overflow: fairseq skips theta's step and retries the update number with the next batch."""
    from fairseq import criterions, optim

    cfg, task, model = build(tiny_mlm_data, "--meta-phi-optimizer", "adam", "--meta-phi-lr", "1e-2")
    criterion = criterions.build_criterion(cfg.criterion, task)
    optimizer = optim.build_optimizer(cfg.optimizer, [p for p in model.parameters() if p.requires_grad])
    initial = copy.deepcopy(model.state_dict())
    first, second = first_batch_of(task, 0, slice(0, 6)), first_batch_of(task, 0, slice(6, 12))

    task.train_step(first, model, criterion, optimizer, update_num=0)
    optimizer.zero_grad()  # the overflow: no optimizer_step, same update number next
    torch.manual_seed(0)
    task.train_step(second, model, criterion, optimizer, update_num=0)
    task.optimizer_step(optimizer, model, update_num=0)
    got = {n: p.detach().clone() for n, p in model.language_parameters("en")}

    cfg, task_ref, model_ref = build(tiny_mlm_data, "--meta-phi-optimizer", "adam", "--meta-phi-lr", "1e-2")
    model_ref.load_state_dict(initial)
    optimizer_ref = optim.build_optimizer(cfg.optimizer, [p for p in model_ref.parameters() if p.requires_grad])
    torch.manual_seed(0)
    task_ref.train_step(second, model_ref, criterion, optimizer_ref, update_num=0)
    for name, p in model_ref.language_parameters("en"):
        assert torch.equal(got[name], p), name
    assert model.meta_state.phi_optimizer.state_dict()["state"].keys() == \
        model_ref.meta_state.phi_optimizer.state_dict()["state"].keys()


def test_checkpoint_after_an_abandoned_update_holds_phi_before_it(tiny_mlm_data):
    cfg, task, model = build(tiny_mlm_data)
    before = {n: p.detach().clone() for n, p in model.language_parameters("en")}
    task.meta_step(model, first_batch_of(task, 0), 0, scheduled_lr=1e-3, ignore_grad=False)
    assert any(not torch.equal(before[n], p) for n, p in model.language_parameters("en"))
    state = model.state_dict()  # no optimizer_step came: the update was abandoned
    for name, value in before.items():
        assert torch.equal(state[name], value), name

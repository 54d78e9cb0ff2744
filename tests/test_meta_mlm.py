"""meta_mlm: the task's meta step against an independent bilevel computation, isolation, resume."""
import copy

import pytest
import torch

from xlint.user_dir.meta_mlm import masked_lm_mean_loss

BETA = 0.5


def build(tiny_mlm_data, *extra):
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    argv = [str(tiny_mlm_data.path), "--user-dir", "user_dir", "--task", "meta_mlm", "--arch", "xlm_adapter_tiny",
            "--language-specific", "adapter", "--criterion", "masked_lm", "--optimizer", "adam", "--lr", "1e-3",
            "--max-tokens", "256", "--tokens-per-sample", "64", "--sample-break-mode", "eos", "--cpu",
            "--dropout", "0", "--attention-dropout", "0", "--seed", "5", *extra]
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))
    task = tasks.setup_task(cfg.task)
    task.load_dataset("train")
    model = task.build_model(cfg.model)
    return cfg, task, model


def first_batch_of(task, lang_index):
    dataset = task.datasets["train"]
    rows = dataset.language_rows(lang_index)[:6]
    return dataset.collater([dataset[int(i)] for i in rows])


def independent_hypergradient(model, sample, metadev, lang, languages, pad):
    """torch.func over the whole expression V(theta - beta grad_theta L_train(theta, phi_i), phi)."""
    named = {k: v.detach() for k, v in model.named_parameters()}
    phi_names = [n for n in named if model.language_of_parameter(n) == lang]
    theta_names = [n for n in named if model.language_of_parameter(n) is None]

    def loss(params, batch):
        return masked_lm_mean_loss(model, batch, pad, params=params)

    def objective(phi_i):
        def train_loss(theta):
            return loss({**named, **theta, **phi_i}, sample)

        theta0 = {n: named[n] for n in theta_names}
        grads = torch.func.grad(train_loss)(theta0)
        theta_prime = {n: theta0[n] - BETA * grads[n] for n in theta_names}
        return sum(loss({**named, **theta_prime, **phi_i}, metadev[j]) for j in range(len(languages))) / len(languages)

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


@pytest.mark.parametrize("mode,tolerance", [("exact", 1e-9), ("finite-difference", 2e-3)])
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

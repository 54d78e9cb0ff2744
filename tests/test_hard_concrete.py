"""The hard-concrete gate and the gate statistics against independent (numpy) computations.

Closed forms used as oracles, with L = log u − log(1 − u) standard logistic and
s̄ = sigmoid((L + log α)/β)(ζ − γ) + γ, z = clamp(s̄, 0, 1):

* P(z = 0) = P(s̄ ≤ 0) = P(L ≤ β logit(−γ/(ζ − γ)) − log α) = sigmoid(β log(−γ/ζ) − log α)
  (logit(−γ/(ζ − γ)) = log(−γ/ζ), which equals log(−γ/(1 − γ)) only because ζ = 1 − γ for the paper's
  constants; the asymmetric case below tells the two apart);
* P(z = 1) = P(s̄ ≥ 1) = sigmoid(log α − β log((1 − γ)/(ζ − 1)));
* E[z] = ∫₀¹ P(z > t) dt = ∫₀¹ sigmoid(log α − β logit((t − γ)/(ζ − γ))) dt (numerical quadrature).
"""
import math

import numpy as np
import pytest
import torch

from xlint.analysis import gate_statistics as gs
from xlint.user_dir.modules.hard_concrete import BETA, EPS, GAMMA, ZETA, HardConcreteGate


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_logit(p):
    return np.log(p / (1.0 - p))


def closed_forms(log_alpha: float, gamma=GAMMA, zeta=ZETA, beta=BETA):
    p0 = np_sigmoid(beta * math.log(-gamma / zeta) - log_alpha)
    p1 = np_sigmoid(log_alpha - beta * math.log((1 - gamma) / (zeta - 1)))
    t = np.linspace(0.0, 1.0, 200001)
    survival = np_sigmoid(log_alpha - beta * np_logit((t - gamma) / (zeta - gamma)))
    mean = float(np.sum((survival[1:] + survival[:-1]) / 2 * np.diff(t)))
    return p0, p1, mean


def gate_with(values) -> HardConcreteGate:
    gate = HardConcreteGate(len(values), init_std=0.0).double()
    with torch.no_grad():
        gate.log_alpha.copy_(torch.as_tensor(np.asarray(values, dtype=np.float64)))
    return gate


@pytest.mark.parametrize("log_alpha", [-3.0, -1.0, 0.0, 0.7, 2.5])
def test_sampled_gate_matches_closed_forms(log_alpha):
    n = 400_000
    gate = gate_with([log_alpha] * n)
    z = gate.sample(torch.Generator().manual_seed(7)).detach().numpy()
    p0, p1, mean = closed_forms(log_alpha)
    for empirical, expected in ((np.mean(z == 0.0), p0), (np.mean(z == 1.0), p1)):
        sigma = math.sqrt(expected * (1 - expected) / n)
        assert abs(empirical - expected) < 5 * sigma + 1e-9, (empirical, expected)
    sigma_mean = z.std() / math.sqrt(n)
    assert abs(z.mean() - mean) < 5 * sigma_mean, (z.mean(), mean)


@pytest.mark.parametrize("gamma,zeta,log_alpha", [(-0.2, 1.05, 0.3), (-0.05, 1.3, -0.8)])
def test_closed_forms_with_an_asymmetric_stretch(gamma, zeta, log_alpha):
    n = 400_000
    gate = HardConcreteGate(n, init_mean=log_alpha, init_std=0.0, gamma=gamma, zeta=zeta).double()
    z = gate.sample(torch.Generator().manual_seed(5)).detach().numpy()
    p0, p1, mean = closed_forms(log_alpha, gamma, zeta)
    for empirical, expected in ((np.mean(z == 0.0), p0), (np.mean(z == 1.0), p1)):
        assert abs(empirical - expected) < 5 * math.sqrt(expected * (1 - expected) / n)
    assert abs(z.mean() - mean) < 5 * z.std() / math.sqrt(n)
    assert gate.prob_nonzero()[0].item() == pytest.approx(1 - p0, rel=1e-6)  # log alpha stored in float32


def test_sample_is_the_formula_of_the_docstring():
    values = np.linspace(-4, 4, 101)
    gate = gate_with(values)
    z = gate.sample(torch.Generator().manual_seed(3)).detach().numpy()
    u = torch.rand(len(values), generator=torch.Generator().manual_seed(3), dtype=torch.float64).numpy()
    u = u * (1 - 2 * EPS) + EPS
    s = np_sigmoid((np.log(u) - np.log(1 - u) + values) / BETA)
    np.testing.assert_allclose(z, np.clip(s * (ZETA - GAMMA) + GAMMA, 0, 1), rtol=1e-12, atol=1e-12)


def test_expected_l0_matches_the_formula_and_the_samples():
    values = np.array([-5.0, -2.0, -0.3, 0.0, 0.4, 1.5, 6.0])
    gate = gate_with(values)
    expected = np_sigmoid(values - BETA * math.log(-GAMMA / ZETA))
    np.testing.assert_allclose(gate.prob_nonzero().detach().numpy(), expected, rtol=1e-12)
    assert gate.expected_l0().item() == pytest.approx(expected.sum(), rel=1e-12)
    # E||z||_0 is the complement of the closed-form P(z = 0)
    assert gate.expected_l0().item() == pytest.approx(sum(1 - closed_forms(v)[0] for v in values), rel=1e-9)
    n = 100_000
    many = gate_with(np.repeat(values, n))
    nonzero = (many.sample(torch.Generator().manual_seed(11)).reshape(len(values), n) != 0).double().mean(1)
    np.testing.assert_allclose(nonzero.numpy(), expected, atol=5 * math.sqrt(0.25 / n))


def test_test_time_gate_is_deterministic_and_the_formula():
    values = np.linspace(-3, 3, 13) + 0.013
    gate = gate_with(values)
    gate.eval()
    first, second = gate(), gate()
    assert torch.equal(first, second)
    np.testing.assert_allclose(first.detach().numpy(), np.clip(np_sigmoid(values) * (ZETA - GAMMA) + GAMMA, 0, 1),
                               rtol=1e-12)
    assert torch.equal(gate.binarized(), torch.tensor(values) > 0)
    gate.train()
    assert not torch.equal(gate(), gate())  # training mode samples


def test_gradients_reach_log_alpha():
    gate = gate_with([-0.5, 0.0, 0.5, 1.0])
    z = gate.sample(torch.Generator().manual_seed(0))
    (z * torch.arange(1.0, 5.0, dtype=torch.float64)).sum().backward()
    interior = (z > 0) & (z < 1)
    assert interior.any()
    assert torch.all(gate.log_alpha.grad[interior] > 0)  # z increases with log alpha
    assert torch.all(gate.log_alpha.grad[~interior] == 0)  # clamped samples carry no gradient
    gate.log_alpha.grad = None
    gate.expected_l0().backward()
    p = gate.prob_nonzero().detach()
    torch.testing.assert_close(gate.log_alpha.grad, p * (1 - p))  # d sigmoid = p (1 - p)


def test_initialisation_and_bad_parameters():
    torch.manual_seed(0)
    gate = HardConcreteGate(1000, init_mean=1.5, init_std=0.2)
    assert gate.log_alpha.mean().item() == pytest.approx(1.5, abs=0.03)
    assert gate.log_alpha.std().item() == pytest.approx(0.2, abs=0.02)
    assert torch.all(HardConcreteGate(5, init_mean=-1.0, init_std=0.0).log_alpha == -1.0)
    with pytest.raises(ValueError):
        HardConcreteGate(0)
    with pytest.raises(ValueError):
        HardConcreteGate(3, gamma=0.1)
    with pytest.raises(ValueError):
        HardConcreteGate(3, zeta=0.9)


# --------------------------------------------------------------------------- gate statistics


def test_cosine_by_hand():
    assert gs.cosine([1, 0], [0, 1]) == pytest.approx(0.0)
    assert gs.cosine([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert gs.cosine([1, 2], [-1, -2]) == pytest.approx(-1.0)
    assert gs.cosine([3, 4], [4, 3]) == pytest.approx(24 / 25)
    assert math.isnan(gs.cosine([0, 0], [1, 2]))
    with pytest.raises(ValueError):
        gs.cosine([1, 2], [1, 2, 3])


def test_cosine_and_density_by_key():
    a = torch.tensor([1.0, 2.0, -1.0, 3.0, 4.0])
    b = np.array([2.0, 4.0, 1.0, 4.0, -3.0])
    keys = ["layer0.attn", "layer0.attn", "layer0.attn", "layer0.ffn", "layer0.ffn"]
    result = gs.cosine_by_key(a, b, keys)
    assert list(result) == ["layer0.attn", "layer0.ffn"]
    assert result["layer0.attn"] == pytest.approx((2 + 8 - 1) / (math.sqrt(6) * math.sqrt(21)))
    assert result["layer0.ffn"] == pytest.approx(0.0)
    centred = gs.centered_cosine_by_key(a, b, keys)
    assert centred["layer0.attn"] == pytest.approx(np.corrcoef([1, 2, -1], [2, 4, 1])[0, 1])
    assert centred["layer0.ffn"] == pytest.approx(-1.0)
    assert gs.density_by_key(a, keys) == {"layer0.attn": pytest.approx(2 / 3), "layer0.ffn": 1.0}
    with pytest.raises(ValueError):
        gs.split_by_key(a, keys[:3])


def test_binarize_agrees_with_the_deterministic_gate():
    assert gs.binarize_threshold() == pytest.approx(0.0, abs=1e-12)  # gamma + zeta = 1
    values = np.linspace(-2, 2, 41) + 0.013
    gate = gate_with(values)
    assert np.array_equal(gs.binarize(values), (gate.deterministic() > 0.5).numpy())
    # an asymmetric stretch moves the threshold: sigmoid(t)(zeta - gamma) + gamma = 1/2
    t = gs.binarize_threshold(-0.2, 1.1)
    assert np_sigmoid(t) * 1.3 - 0.2 == pytest.approx(0.5)


def test_extremes():
    values = [0.5, -2.0, 3.0, -1.0, 2.0, 0.0]
    negative, positive = gs.extremes(values, k=2)
    assert negative == [1, 3] and positive == [2, 4]
    negative, positive = gs.extremes(values, k=10)
    assert len(negative) == len(positive) == 6

"""compute_meta_gradient against an independent torch.func computation of the bilevel expression."""
import pytest
import torch

from xlint.analysis.hypergradient import compute_meta_gradient

BETA = 0.3


def _problem(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    def randn(*shape):  # float64 so that tolerances can be tight
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    theta = {"w": torch.nn.Parameter(randn(5, 5) * 0.5), "b": torch.nn.Parameter(randn(5) * 0.1)}
    phis = [{"a": torch.nn.Parameter(randn(5))} for _ in range(2)]
    x_train, x_dev = randn(7, 5), [randn(6, 5) for _ in range(2)]
    return theta, phis, x_train, x_dev


def _loss(theta, phi, x):
    hidden = torch.tanh(x @ theta["w"] + theta["b"] + phi["a"])
    return ((hidden * phi["a"]).sum(-1) - 1.0).pow(2).mean()


def _oracle(theta, phis, x_train, x_dev, lang):
    """grad_phi_i of (1/L) sum_j L_val^j(theta - beta grad_theta L_train^i(theta, phi_i), phi_j)."""
    theta0 = {k: v.detach() for k, v in theta.items()}
    others = [{k: v.detach() for k, v in p.items()} for p in phis]

    def meta_objective(phi_i):
        grad_theta = torch.func.grad(lambda th: _loss(th, phi_i, x_train))(theta0)
        theta_prime = {k: theta0[k] - BETA * grad_theta[k] for k in theta0}
        phis_now = [phi_i if j == lang else others[j] for j in range(len(phis))]
        return sum(_loss(theta_prime, phis_now[j], x_dev[j]) for j in range(len(phis))) / len(phis)

    return torch.func.grad(meta_objective)(others[lang])["a"]


def _closures(theta, phis, x_train, x_dev, lang):
    def evaluate(params, phi, x):
        return _loss({k: params.get(k, theta[k]) for k in theta} if params else theta, phi, x)

    train = lambda params=None: evaluate(params, phis[lang], x_train)  # noqa: E731
    terms = [lambda params=None, j=j: evaluate(params, phis[j], x_dev[j]) / len(phis) for j in range(len(phis))]
    return train, terms


@pytest.mark.parametrize("mode", ["exact", "hvp"])
@pytest.mark.parametrize("lang", [0, 1])
def test_exact_modes_match_independent_hypergradient(lang, mode):
    theta, phis, x_train, x_dev = _problem()
    train, terms = _closures(theta, phis, x_train, x_dev, lang)
    result = compute_meta_gradient(theta, phis[lang], train, terms, beta=BETA, mode=mode)
    expected = _oracle(theta, phis, x_train, x_dev, lang)
    torch.testing.assert_close(result.grads[0], expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("lang", [0, 1])
def test_finite_difference_agrees_with_independent_hypergradient(lang):
    theta, phis, x_train, x_dev = _problem(seed=3)
    train, terms = _closures(theta, phis, x_train, x_dev, lang)
    result = compute_meta_gradient(theta, phis[lang], train, terms, beta=BETA, mode="finite-difference")
    expected = _oracle(theta, phis, x_train, x_dev, lang)
    cosine = torch.nn.functional.cosine_similarity(result.grads[0], expected, dim=0)
    assert cosine >= 0.99
    assert (result.grads[0] - expected).norm() / expected.norm() < 1e-3
    assert result.second_order_norm > 0


@pytest.mark.parametrize("lang", [0, 1])
def test_forward_difference_agrees_with_independent_hypergradient(lang):
    theta, phis, x_train, x_dev = _problem(seed=3)
    train, terms = _closures(theta, phis, x_train, x_dev, lang)
    result = compute_meta_gradient(theta, phis[lang], train, terms, beta=BETA, mode="finite-difference",
                                   fd_scheme="forward")
    expected = _oracle(theta, phis, x_train, x_dev, lang)
    assert torch.nn.functional.cosine_similarity(result.grads[0], expected, dim=0) >= 0.99
    assert (result.grads[0] - expected).norm() / expected.norm() < 2e-2


def test_first_order_is_the_direct_term_only():
    theta, phis, x_train, x_dev = _problem(seed=5)
    train, terms = _closures(theta, phis, x_train, x_dev, 0)
    first = compute_meta_gradient(theta, phis[0], train, terms, beta=BETA, mode="first-order")
    exact = compute_meta_gradient(theta, phis[0], train, terms, beta=BETA, mode="exact")
    assert float(first.second_order_norm) == 0.0
    torch.testing.assert_close(first.direct_norm, exact.direct_norm, rtol=1e-8, atol=1e-12)
    assert not torch.allclose(first.grads[0], exact.grads[0])


@pytest.mark.parametrize("mode", ["hvp", "finite-difference", "first-order", "exact"])
def test_theta_restored_bit_exactly_and_grads_untouched(mode):
    theta, phis, x_train, x_dev = _problem(seed=7)
    for p in theta.values():
        p.grad = torch.randn_like(p)  # e.g. gradients accumulated by --update-freq
    phis[0]["a"].requires_grad_(False)  # frozen for fairseq's optimizer, as meta_mlm does
    before = {k: (p.detach().clone(), p.grad.clone()) for k, p in theta.items()}
    train, terms = _closures(theta, phis, x_train, x_dev, 0)
    compute_meta_gradient(theta, phis[0], train, terms, beta=BETA, mode=mode)
    for k, p in theta.items():
        assert torch.equal(p.detach(), before[k][0])
        assert torch.equal(p.grad, before[k][1])
    assert not phis[0]["a"].requires_grad
    assert phis[0]["a"].grad is None


def test_unknown_mode_rejected():
    theta, phis, x_train, x_dev = _problem()
    train, terms = _closures(theta, phis, x_train, x_dev, 0)
    with pytest.raises(ValueError, match="second-order mode"):
        compute_meta_gradient(theta, phis[0], train, terms, beta=BETA, mode="second")


def test_perturbation_survival_is_reported():
    """A virtual step below half precision's spacing rounds back to theta: the fraction says so."""
    theta, phis, x_train, x_dev = _problem(seed=9)
    train, terms = _closures(theta, phis, x_train, x_dev, 0)
    full = compute_meta_gradient(theta, phis[0], train, terms, beta=BETA, mode="finite-difference")
    assert float(full.virtual_step_changed) == 1.0 and float(full.fd_step_changed) == 1.0
    tiny = compute_meta_gradient(theta, phis[0], train, terms, beta=1e-30, mode="hvp")
    assert float(tiny.virtual_step_changed) == 0.0 and tiny.fd_step_changed is None

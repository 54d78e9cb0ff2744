"""Linear CKA against the HSIC formula with explicit centring matrices (numpy), and its invariances."""
import numpy as np
import pytest
import torch

from xlint.analysis.cka import linear_cka


def hsic_cka(x: np.ndarray, y: np.ndarray) -> float:
    """HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), K = X X^T, L = Y Y^T, HSIC = tr(K H L H) / (n-1)^2."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = x @ x.T, y @ y.T

    def hsic(a, b):
        return np.trace(a @ h @ b @ h) / (n - 1) ** 2

    return hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_))


def random_pair(n=60, p=12, q=7, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)) + 3.0  # an offset: centring matters
    y = np.tanh(x @ rng.normal(size=(p, q))) + 0.5 * rng.normal(size=(n, q))
    return x, y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_hsic_with_centring_matrices(seed):
    x, y = random_pair(seed=seed)
    expected = hsic_cka(x, y)
    assert 0.0 < expected < 1.0
    assert linear_cka(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(expected, rel=1e-10)
    # float32 inputs are computed in float64: the same up to the inputs' rounding
    assert linear_cka(torch.from_numpy(x).float(), torch.from_numpy(y).float()) == pytest.approx(expected, rel=1e-5)


def test_mask_keeps_only_real_tokens():
    rng = np.random.default_rng(5)
    b, t, p, q = 4, 9, 6, 5
    x = rng.normal(size=(b, t, p))
    y = x @ rng.normal(size=(p, q)) + rng.normal(size=(b, t, q))
    mask = np.zeros((b, t), dtype=bool)
    for row, length in enumerate([9, 5, 3, 7]):
        mask[row, :length] = True
    x_pad, y_pad = x.copy(), y.copy()
    x_pad[~mask] = 7.0  # padding rows, identical in both models
    y_pad[~mask] = 7.0
    expected = hsic_cka(x[mask], y[mask])
    got = linear_cka(torch.from_numpy(x_pad), torch.from_numpy(y_pad), torch.from_numpy(mask))
    assert got == pytest.approx(expected, rel=1e-10)
    unmasked = linear_cka(torch.from_numpy(x_pad), torch.from_numpy(y_pad))
    assert abs(unmasked - expected) > 1e-3  # padding would change the similarity


def test_invariances():
    x, y = random_pair(n=80, p=10, q=10, seed=3)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    base = linear_cka(tx, ty)
    assert linear_cka(tx, tx) == pytest.approx(1.0, abs=1e-12)
    q, _ = np.linalg.qr(np.random.default_rng(4).normal(size=(10, 10)))
    assert linear_cka(tx @ torch.from_numpy(q), ty) == pytest.approx(base, rel=1e-10)
    assert linear_cka(tx, ty @ torch.from_numpy(q)) == pytest.approx(base, rel=1e-10)
    assert linear_cka(tx @ torch.from_numpy(q), tx) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(3.5 * tx, 0.01 * ty) == pytest.approx(base, rel=1e-10)
    # not invariant to anisotropic scaling (the test can tell)
    scale = torch.from_numpy(np.linspace(0.1, 5.0, 10))
    assert abs(linear_cka(tx * scale, ty) - base) > 1e-3


def test_errors_and_degenerate_inputs():
    x = torch.randn(5, 3, dtype=torch.float64)
    with pytest.raises(ValueError):
        linear_cka(x, torch.randn(6, 3))
    with pytest.raises(ValueError):
        linear_cka(torch.randn(2, 4, 3), torch.randn(2, 4, 3), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError):
        linear_cka(x[:1], x[:1])
    constant = torch.ones(5, 3, dtype=torch.float64)
    assert np.isnan(linear_cka(constant, x))

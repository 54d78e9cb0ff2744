"""NoisyTune: uniform noise of the right range per matrix, skipped where std = 0, seeded, selectable."""
import numpy as np
import pytest
import torch
from scipy import stats

from xlint.analysis.noisytune import noisytune_


def params():
    g = torch.Generator().manual_seed(0)
    return {
        "encoder.layers.0.fc1.weight": torch.randn(300, 200, generator=g) * 2.0 + 1.0,
        "encoder.layers.0.fc1.bias": torch.randn(300, generator=g) * 0.02,
        "encoder.layers.0.final_layer_norm.weight": torch.ones(64),  # std 0
        "encoder.layers.0.final_layer_norm.bias": torch.zeros(64),  # std 0
        "scalar": torch.tensor([0.3]),  # std undefined
        "heads.pos.out_proj.weight": torch.randn(17, 64, generator=g),
    }


def perturb(named, **kwargs):
    before = {k: v.clone() for k, v in named.items()}
    report = noisytune_(named.items(), **kwargs)
    return before, report


def test_noise_is_uniform_in_the_matrix_range():
    named = params()
    before, report = perturb(named, lam=0.15, seed=7)
    name = "encoder.layers.0.fc1.weight"
    std = float(before[name].double().std())
    half = 0.15 / 2 * std
    noise = (named[name].double() - before[name].double()).flatten().numpy()
    assert np.abs(noise).max() <= half * (1 + 1e-5)
    assert noise.max() > 0.99 * half and noise.min() < -0.99 * half  # 60,000 draws reach both ends
    # Kolmogorov-Smirnov against U(-half, half); a normal of the same variance is rejected
    assert stats.kstest(noise, stats.uniform(loc=-half, scale=2 * half).cdf).pvalue > 1e-3
    assert stats.kstest(noise, stats.norm(scale=2 * half / np.sqrt(12)).cdf).pvalue < 1e-6
    assert noise.var() == pytest.approx((2 * half) ** 2 / 12, rel=0.03)
    assert dict(report.perturbed)[name] == pytest.approx(std)
    bias = "encoder.layers.0.fc1.bias"
    bias_noise = (named[bias] - before[bias]).double()
    assert bias_noise.abs().max() <= 0.075 * float(before[bias].double().std()) * (1 + 1e-5)


def test_zero_and_undefined_std_are_skipped():
    named = params()
    before, report = perturb(named)
    skipped = dict(report.skipped)
    for name in ("encoder.layers.0.final_layer_norm.weight", "encoder.layers.0.final_layer_norm.bias", "scalar"):
        assert name in skipped and torch.equal(named[name], before[name])
    assert len(report.perturbed) == 3


def test_seeded_per_parameter_and_patterns():
    a, b, c = params(), params(), params()
    noisytune_(a.items(), seed=1)
    noisytune_(b.items(), seed=1, include=[r"fc1\.weight$"])
    noisytune_(c.items(), seed=2)
    name = "encoder.layers.0.fc1.weight"
    assert torch.equal(a[name], b[name])  # the same noise whatever else is perturbed
    assert not torch.equal(a[name], c[name])
    assert torch.equal(b["heads.pos.out_proj.weight"], params()["heads.pos.out_proj.weight"])
    d = params()
    report = noisytune_(d.items(), exclude=[r"^heads\."])
    assert "heads.pos.out_proj.weight" not in dict(report.perturbed)
    assert torch.equal(d["heads.pos.out_proj.weight"], params()["heads.pos.out_proj.weight"])


def test_module_parameters_in_place_and_lambda_zero():
    model = torch.nn.Linear(8, 4)
    before = model.weight.detach().clone()
    noisytune_(model.named_parameters(), seed=3)
    assert not torch.equal(model.weight.detach(), before)
    again = model.weight.detach().clone()
    noisytune_(model.named_parameters(), lam=0.0)
    assert torch.equal(model.weight.detach(), again)
    with pytest.raises(ValueError):
        noisytune_(model.named_parameters(), lam=-1)

"""Temperature-scaled language sampling probabilities: P_i = q_i^(1/T) / sum_j q_j^(1/T)."""
import math

import numpy as np
import pytest

from xlint.analysis.temperature import DEFAULT_TEMPERATURE, temperature_probabilities


def reference_probabilities(sizes, temperature):
    """Independent plain-Python computation of the XLM formula."""
    total = float(sum(sizes))
    scaled = [(n / total) ** (1.0 / temperature) for n in sizes]
    norm = sum(scaled)
    return [s / norm for s in scaled]


@pytest.mark.parametrize("sizes", [[1000, 100], [5, 50, 500, 5000], [3, 3, 3], [123456, 7, 89, 1000]])
@pytest.mark.parametrize("temperature", [0.5, 1.0, DEFAULT_TEMPERATURE, 2.0, 5.0, 100.0])
def test_matches_reference_formula(sizes, temperature):
    got = temperature_probabilities(sizes, temperature)
    want = reference_probabilities(sizes, temperature)
    assert got.shape == (len(sizes),)
    assert got == pytest.approx(want, rel=1e-10, abs=1e-15)
    assert math.isclose(float(got.sum()), 1.0, rel_tol=1e-12)


def test_default_temperature_is_xlm_alpha_0_7():
    assert DEFAULT_TEMPERATURE == pytest.approx(1 / 0.7)
    sizes = [900, 100]
    q = [0.9, 0.1]
    p = [x ** 0.7 for x in q]
    assert temperature_probabilities(sizes) == pytest.approx([x / sum(p) for x in p])


def test_temperature_one_is_proportional_to_sizes():
    sizes = [10, 30, 60, 900]
    assert temperature_probabilities(sizes, 1.0) == pytest.approx([n / 1000 for n in sizes], rel=1e-12)


def test_large_temperature_is_nearly_uniform():
    sizes = [1, 1000, 10 ** 6]
    got = temperature_probabilities(sizes, 1e6)
    assert got == pytest.approx([1 / 3] * 3, abs=1e-5)
    # heavier smoothing moves the smallest language monotonically towards uniform
    smallest = [temperature_probabilities(sizes, t)[0] for t in (1.0, 2.0, 5.0, 50.0)]
    assert smallest == sorted(smallest)
    assert smallest[0] < smallest[-1] < 1 / 3


def test_higher_temperature_upsamples_small_languages():
    sizes = [100, 10000]
    p1 = temperature_probabilities(sizes, 1.0)
    p2 = temperature_probabilities(sizes, 3.0)
    assert p2[0] > p1[0] and p2[1] < p1[1]


def test_extreme_imbalance_and_large_temperature_stay_finite():
    got = temperature_probabilities([1, 10 ** 15], 1e3)
    assert np.all(np.isfinite(got))
    assert got == pytest.approx(reference_probabilities([1, 10 ** 15], 1e3), rel=1e-9)
    tiny_t = temperature_probabilities([1, 2], 1e-3)  # q^(1/T) underflows without log space
    assert np.all(np.isfinite(tiny_t)) and tiny_t[1] == pytest.approx(1.0)


def test_empty_language_gets_zero_probability():
    got = temperature_probabilities([0, 10, 30], 2.0)
    assert got[0] == 0.0
    assert got[1:] == pytest.approx(reference_probabilities([10, 30], 2.0))


@pytest.mark.parametrize(
    "sizes, temperature",
    [
        ([], 1.0),
        ([[1, 2], [3, 4]], 1.0),
        ([1, -2, 3], 1.0),
        ([0, 0], 1.0),
        ([1, 2], 0.0),
        ([1, 2], -1.0),
        ([1, 2], float("nan")),
    ],
)
def test_bad_inputs_raise(sizes, temperature):
    with pytest.raises(ValueError):
        temperature_probabilities(sizes, temperature)

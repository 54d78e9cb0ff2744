"""Language samplers: deterministic per (seed, epoch), frequencies follow P, registry rules."""
import numpy as np
import pytest
from scipy import stats

from xlint.analysis.temperature import temperature_probabilities
from xlint.user_dir.data.language_sampling import (
    LANGUAGE_SAMPLER_REGISTRY,
    LanguageSampler,
    TemperatureLanguageSampler,
    build_language_sampler,
    register_language_sampler,
)

LANGS = ["en", "fr", "sw"]
SIZES = [10000, 1000, 100]


def test_probabilities_are_the_temperature_formula():
    sampler = TemperatureLanguageSampler(LANGS, SIZES, seed=1, temperature=2.0)
    q = np.array(SIZES) / sum(SIZES)
    want = q ** 0.5 / (q ** 0.5).sum()
    np.testing.assert_allclose(sampler.probabilities, want, rtol=1e-12)
    assert "T=2" in sampler.describe() and "sw" in sampler.describe()


def test_draw_is_deterministic_per_seed_and_epoch():
    a = TemperatureLanguageSampler(LANGS, SIZES, seed=7, temperature=3.0)
    b = TemperatureLanguageSampler(LANGS, SIZES, seed=7, temperature=3.0)
    for epoch in (1, 2, 10):
        first = a.draw(epoch, 500)
        assert first.shape == (500,)
        assert set(np.unique(first)) <= {0, 1, 2}
        np.testing.assert_array_equal(first, a.draw(epoch, 500))  # repeatable
        np.testing.assert_array_equal(first, b.draw(epoch, 500))  # same on every "rank"


def test_draw_differs_across_epochs_and_seeds():
    a = TemperatureLanguageSampler(LANGS, SIZES, seed=7, temperature=3.0)
    other_seed = TemperatureLanguageSampler(LANGS, SIZES, seed=8, temperature=3.0)
    draws = [a.draw(epoch, 500) for epoch in range(1, 6)]
    for i in range(len(draws)):
        for j in range(i + 1, len(draws)):
            assert not np.array_equal(draws[i], draws[j]), (i + 1, j + 1)
    assert not np.array_equal(a.draw(1, 500), other_seed.draw(1, 500))


def test_draw_of_an_update_does_not_depend_on_how_many_are_drawn():
    sampler = TemperatureLanguageSampler(LANGS, SIZES, seed=3)
    np.testing.assert_array_equal(sampler.draw(4, 300)[:100], sampler.draw(4, 100))


@pytest.mark.parametrize("temperature", [1.0, 1 / 0.7, 5.0])
def test_empirical_frequencies_follow_probabilities(temperature):
    sampler = TemperatureLanguageSampler(LANGS, SIZES, seed=11, temperature=temperature)
    n = 20000
    counts = np.zeros(len(LANGS))
    for epoch in range(1, 5):
        counts += np.bincount(sampler.draw(epoch, n // 4), minlength=len(LANGS))
    expected = sampler.probabilities * n
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    # the draws are deterministic; 1e-4 keeps the check meaningful without being brittle
    assert chi2 < stats.chi2.ppf(1 - 1e-4, df=len(LANGS) - 1), (counts, expected)
    # and they clearly differ from the proportional (T=1) or uniform alternatives when T is not 1
    if temperature > 1:
        proportional = temperature_probabilities(SIZES, 1.0) * n
        assert float(((counts - proportional) ** 2 / proportional).sum()) > 100


def test_registry_builds_by_name():
    sampler = build_language_sampler("temperature", ["a", "b"], [30, 10], seed=5, temperature=1.0)
    assert isinstance(sampler, TemperatureLanguageSampler)
    assert sampler.seed == 5
    np.testing.assert_allclose(sampler.probabilities, [0.75, 0.25])


def test_unknown_sampler_name_raises():
    with pytest.raises(ValueError, match="unknown --language-sampler"):
        build_language_sampler("no_such_sampler", ["a", "b"], [1, 1])


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="duplicate"):

        @register_language_sampler("temperature")
        class Again(LanguageSampler):  # noqa: F811
            def compute_probabilities(self):
                return np.full(len(self.languages), 1 / len(self.languages))

    assert LANGUAGE_SAMPLER_REGISTRY["temperature"] is TemperatureLanguageSampler


def test_registration_requires_a_language_sampler_subclass():
    try:
        with pytest.raises(ValueError, match="must subclass"):
            register_language_sampler("test_not_a_sampler")(dict)
    finally:
        LANGUAGE_SAMPLER_REGISTRY.pop("test_not_a_sampler", None)


def test_new_sampler_plugs_in():
    name = "test_uniform_sampler"
    try:

        @register_language_sampler(name)
        class Uniform(LanguageSampler):
            def compute_probabilities(self):
                return np.full(len(self.languages), 1 / len(self.languages))

        sampler = build_language_sampler(name, ["a", "b", "c", "d"], [1, 2, 3, 400], seed=2)
        assert isinstance(sampler, Uniform)
        counts = np.bincount(sampler.draw(1, 8000), minlength=4)
        assert np.all(np.abs(counts / 8000 - 0.25) < 0.03)
    finally:
        LANGUAGE_SAMPLER_REGISTRY.pop(name, None)


def test_sizes_must_match_languages():
    with pytest.raises(ValueError):
        TemperatureLanguageSampler(["a", "b"], [1, 2, 3])

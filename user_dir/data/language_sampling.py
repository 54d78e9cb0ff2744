"""Language samplers: which language each update's batches come from.

Samplers are registered by name (``--language-sampler NAME``), so that tasks
(``xlm_mlm``, ``meta_mlm``, ...) share them and new schemes plug in without touching
the tasks.  A sampler draws one language per *update*; the draw depends only on
(seed, epoch, update index), so every data-parallel rank draws the same language
for the same update without communicating.

Tasks pass every sampling option they have (``seed``, ``temperature``);
:func:`build_language_sampler` hands a sampler only those its constructor takes, so a
sampler needs to declare only the options it uses.
"""
from __future__ import annotations

import inspect
import logging
from typing import Any, Callable, Dict, Sequence, Type

import numpy as np

from ..analysis.temperature import DEFAULT_TEMPERATURE, temperature_probabilities

logger = logging.getLogger(__name__)

LANGUAGE_SAMPLER_REGISTRY: Dict[str, Type["LanguageSampler"]] = {}


def register_language_sampler(name: str) -> Callable[[Type["LanguageSampler"]], Type["LanguageSampler"]]:
    """Class decorator: make a :class:`LanguageSampler` selectable as ``--language-sampler name``."""

    def register(cls: Type["LanguageSampler"]) -> Type["LanguageSampler"]:
        if name in LANGUAGE_SAMPLER_REGISTRY:
            raise ValueError(f"Cannot register duplicate language sampler ({name})")
        if not issubclass(cls, LanguageSampler):
            raise ValueError(f"language sampler {cls.__name__} must subclass LanguageSampler")
        LANGUAGE_SAMPLER_REGISTRY[name] = cls
        return cls

    return register


def registered_sampler(name: str) -> Type["LanguageSampler"]:
    if name not in LANGUAGE_SAMPLER_REGISTRY:
        raise ValueError(f"unknown --language-sampler {name!r}; choose from {sorted(LANGUAGE_SAMPLER_REGISTRY)}")
    return LANGUAGE_SAMPLER_REGISTRY[name]


def sampler_accepts(name: str, option: str) -> bool:
    """Whether the constructor of sampler ``name`` takes the keyword ``option`` (or any keyword)."""
    parameters = inspect.signature(registered_sampler(name).__init__).parameters
    return option in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def build_language_sampler(name: str, languages: Sequence[str], sizes: Sequence[int],
                           **options: Any) -> "LanguageSampler":
    """Build sampler ``name``, passing only the ``options`` its constructor takes."""
    cls = registered_sampler(name)
    accepted = {key: value for key, value in options.items() if sampler_accepts(name, key)}
    ignored = sorted(set(options) - set(accepted))
    if ignored:
        logger.info("language sampler %s takes no %s", name, ", ".join(ignored))
    return cls(languages, sizes, **accepted)


class LanguageSampler:
    """Draws language indices from fixed probabilities, deterministically per (seed, epoch)."""

    def __init__(self, languages: Sequence[str], sizes: Sequence[int], seed: int = 1):
        if len(languages) != len(sizes):
            raise ValueError("one size per language is needed")
        self.languages = list(languages)
        self.sizes = [int(n) for n in sizes]
        self.seed = int(seed)
        self.probabilities = self.compute_probabilities()

    def compute_probabilities(self) -> np.ndarray:
        raise NotImplementedError

    def draw(self, epoch: int, num_updates: int) -> np.ndarray:
        """Language index for each of ``num_updates`` updates of ``epoch`` (same on every rank)."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        return rng.choice(len(self.languages), size=num_updates, p=self.probabilities)

    def describe(self) -> str:
        return ", ".join(
            f"{lang}: n={n} P={p:.4f}" for lang, n, p in zip(self.languages, self.sizes, self.probabilities)
        )


@register_language_sampler("temperature")
class TemperatureLanguageSampler(LanguageSampler):
    """P_i = q_i^(1/T) / sum_j q_j^(1/T), q_i = n_i / sum_j n_j (XLM; default T = 1/0.7)."""

    def __init__(self, languages, sizes, seed: int = 1, temperature: float = DEFAULT_TEMPERATURE):
        self.temperature = float(temperature)
        super().__init__(languages, sizes, seed)

    def compute_probabilities(self) -> np.ndarray:
        return temperature_probabilities(self.sizes, self.temperature)

    def describe(self) -> str:
        return f"temperature T={self.temperature:g}: " + super().describe()

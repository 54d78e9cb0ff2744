"""Language codes: ISO 639-1 or ISO 639-3, optionally with a variant suffix (``fr_l``).

The code table ``iso639.json`` beside this module is the ISO 639-3 table (all
7,900-odd individual, macro and special codes, living, historical and extinct)
plus the ISO 639-1 -> 639-3 mapping, taken from the ``databases/iso639-3.json``
file that ships in the pycountry wheel (version recorded in the file's
``source``); it is embedded so that xlint needs no extra dependency.

A variant suffix (``_`` followed by letters or digits) names a different data
set of the same language, e.g. the paper's ``fr_l``, French subsampled to a
low-resource size.  The language-specific processing (Moses rules) uses the
base language; the output directory uses the full code.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Iterable

from .errors import PreprocessError

_CODE_PATTERN = re.compile(r"^(?P<base>[a-z]{2,3})(?:_(?P<variant>[a-z0-9]+))?$")
_EXAMPLE_CODES = "en, fr, ru, hi, te, ar, sw, tr, grc"


@dataclass(frozen=True)
class Language:
    """A validated language code as used for one data set."""

    code: str
    """The code as used for directory names, e.g. ``fr_l``."""
    base: str
    """The ISO code without the variant suffix, e.g. ``fr``."""
    iso639_3: str
    """The ISO 639-3 code of the base language, e.g. ``fra``."""
    name: str
    """The ISO 639-3 reference name, e.g. ``French``."""
    variant: str | None = None
    """The suffix after ``_``, e.g. ``l``; None for a plain code."""

    @property
    def moses_code(self) -> str:
        """The code handed to sacremoses: the two-letter code where one exists.

        sacremoses knows its language-specific rules (non-breaking prefixes,
        apostrophes, number formats) by ISO 639-1 code and falls back to its
        English prefixes and generic rules for any other code, so languages
        without Moses rules (grc, sw, ...) are still normalised and tokenised.
        """
        return _iso639_3_to_1().get(self.iso639_3, self.iso639_3)


@functools.lru_cache(maxsize=1)
def _code_table() -> dict:
    with resources.files(__package__).joinpath("iso639.json").open("r", encoding="utf-8") as handle:
        return json.load(handle)


@functools.lru_cache(maxsize=1)
def _iso639_3_to_1() -> dict[str, str]:
    return {three: two for two, three in _code_table()["iso639_1"].items()}


def parse_language(code: str) -> Language:
    """Validate ``code`` (case-insensitive) and return its :class:`Language`.

    Raises :class:`PreprocessError` for a malformed or unknown code.
    """
    normalized = code.strip().lower()
    match = _CODE_PATTERN.match(normalized)
    if match is None:
        raise PreprocessError(
            f"malformed language code {code!r}: expected an ISO 639-1 or 639-3 code "
            f"({_EXAMPLE_CODES}), optionally with a variant suffix such as fr_l"
        )
    base, variant = match.group("base"), match.group("variant")
    table = _code_table()
    iso639_3 = table["iso639_1"].get(base) if len(base) == 2 else base
    if iso639_3 is None or iso639_3 not in table["iso639_3"]:
        raise PreprocessError(
            f"unknown language code {code!r}: not an ISO 639-1 or 639-3 code "
            f"(examples: {_EXAMPLE_CODES}; a variant is written like fr_l)"
        )
    return Language(
        code=normalized, base=base, iso639_3=iso639_3, name=table["iso639_3"][iso639_3], variant=variant
    )


def parse_languages(codes: Iterable[str]) -> list[Language]:
    """Parse several codes, rejecting duplicates (``en`` twice, or ``EN`` and ``en``)."""
    languages = [parse_language(code) for code in codes]
    seen: set[str] = set()
    for language in languages:
        if language.code in seen:
            raise PreprocessError(f"language {language.code!r} is given more than once")
        seen.add(language.code)
    return languages

"""Per-line text normalisation and Moses tokenisation.

For every line, in this order:

1. Unicode normalisation, NFKC by default (``--unicode-form``).  NFKC folds
   compatibility variants onto their plain characters: Arabic presentation
   forms, full-width Latin and digits, ligatures such as U+FB01, no-break and
   other odd spaces.  Web text is full of them and without folding each variant
   becomes its own BPE unit.  NFC (canonical composition only) is available
   when the distinction matters.  Both keep Indic conjuncts intact.
2. Invisible junk removal: C0/C1 control characters become spaces; the
   byte-order mark, zero-width space, word joiner, soft hyphen and the
   bidirectional marks and embeddings (LRM, RLM, ALM, U+202A-U+202E,
   U+2066-U+2069) are deleted.  Zero-width (non-)joiners are kept: they are
   spelling in Indic scripts and Persian (this is why sacremoses' own
   ``remove_control_chars``, which deletes every ``\\p{C}`` character, is not used).
3. Moses punctuation normalisation (``MosesPunctNormalizer`` with the Unicode
   punctuation replacement of ``replace-unicode-punctuation.perl``).
4. Moses tokenisation (``MosesTokenizer``, no XML escaping, no aggressive dash
   splitting, like XLM's ``tokenize.sh``).  Languages without Moses rules use the
   generic rules (see :attr:`~.languages.Language.moses_code`).
5. Zero-width (non-)joiners that Moses split off as tokens of their own are
   re-attached to their neighbours, and tokens are joined by single ASCII
   spaces, so the output never contains a character that ends a line for
   Python or fairseq.

A line that is empty after this is dropped by the file-level steps.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any

UNICODE_FORMS = ("NFKC", "NFC")
DEFAULT_UNICODE_FORM = "NFKC"
#: Bumped whenever the output of :class:`TextNormalizer` changes for some input.
NORMALIZER_VERSION = 1

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_INVISIBLE_CHARACTERS = re.compile("[\ufeff\u200b\u2060\u00ad\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069]")
_SPLIT_OFF_JOINERS = re.compile(" ?([\u200c\u200d]) ?")


class TextNormalizer:
    """Callable ``line -> normalised, tokenised line`` for one language.

    The sacremoses objects are built on first use and not pickled, so an
    instance is cheap to send to worker processes.
    """

    def __init__(self, moses_code: str, unicode_form: str = DEFAULT_UNICODE_FORM) -> None:
        if unicode_form not in UNICODE_FORMS:
            raise ValueError(f"unicode_form must be one of {UNICODE_FORMS}, got {unicode_form!r}")
        self.moses_code = moses_code
        self.unicode_form = unicode_form
        self._punct_normalizer: Any = None
        self._tokenizer: Any = None

    def __getstate__(self) -> dict:
        return {"moses_code": self.moses_code, "unicode_form": self.unicode_form}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["moses_code"], state["unicode_form"])

    def _build_moses(self) -> None:
        from sacremoses import MosesPunctNormalizer, MosesTokenizer

        self._punct_normalizer = MosesPunctNormalizer(lang=self.moses_code, pre_replace_unicode_punct=True)
        self._tokenizer = MosesTokenizer(lang=self.moses_code)

    def clean(self, text: str) -> str:
        """Steps 1-3: Unicode normalisation, invisible-character removal, punctuation normalisation."""
        if self._punct_normalizer is None:
            self._build_moses()
        text = unicodedata.normalize(self.unicode_form, text)
        text = _INVISIBLE_CHARACTERS.sub("", _CONTROL_CHARACTERS.sub(" ", text))
        return self._punct_normalizer.normalize(text)

    def tokenize(self, cleaned: str) -> str:
        """Steps 4-5: Moses tokenisation of cleaned text and whitespace collapsing."""
        if self._tokenizer is None:
            self._build_moses()
        tokens = self._tokenizer.tokenize(cleaned, escape=False, return_str=True, aggressive_dash_splits=False)
        return _SPLIT_OFF_JOINERS.sub(r"\1", " ".join(tokens.split())).strip()

    def __call__(self, line: str) -> str:
        return self.tokenize(self.clean(line))

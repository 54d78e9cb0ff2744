"""Apply a preprocessed directory's normalisation, tokenisation and BPE to new text.

Downstream fine-tuning must see text exactly as pre-training did::

    from xlint.preprocess.encode import encode_lines
    encode_lines("data-bin/xlint", "fr", ["L'école, enfin."])
    # -> ["L' é@@ cole , enfin ."]   (pieces depend on the learned BPE)

and, for word-level labels (POS tagging), :func:`encode_words` keeps the
alignment between the given words and their pieces.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Iterable, Sequence

from .bpe import BpeEncoder
from .errors import PreprocessError
from .normalize import TextNormalizer
from .textio import read_json


class TextEncoder:
    """Normaliser + tokeniser + subword model of one language of a preprocessed directory."""

    def __init__(self, out_dir: str | Path, lang: str) -> None:
        out_dir = Path(out_dir)
        metadata_path = out_dir / "metadata.json"
        if not metadata_path.is_file():
            raise PreprocessError(f"{out_dir} is not a finished preprocess output (no metadata.json)")
        metadata = read_json(metadata_path)
        info = metadata["language_info"].get(lang)
        if info is None:
            raise PreprocessError(
                f"language {lang!r} was not preprocessed in {out_dir}; it has {', '.join(metadata['languages'])}"
            )
        self.lang = lang
        self.normalizer = TextNormalizer(info["moses"], metadata["normalization"]["unicode_form"])
        self.bpe = BpeEncoder(metadata["bpe"]["kind"], out_dir / "bpe")

    def encode_line(self, line: str) -> str:
        """The space-separated subword pieces of a raw line ('' for a blank one)."""
        return self.bpe(self.normalizer(line.rstrip("\r\n")))

    def encode_word(self, word: str) -> list[str]:
        """The subword pieces of one already-tokenised word (Moses may split it further, e.g. ``don't``)."""
        return self.bpe.pieces(self.normalizer(word))


@functools.lru_cache(maxsize=32)
def load_text_encoder(out_dir: str | Path, lang: str) -> TextEncoder:
    """A cached :class:`TextEncoder` for ``lang`` of the preprocessed directory ``out_dir``."""
    return TextEncoder(Path(out_dir).resolve(), lang)


def encode_lines(out_dir: str | Path, lang: str, lines: Iterable[str]) -> list[str]:
    """Normalise, tokenise and BPE-encode raw ``lines`` as ``xlint preprocess`` did for ``lang``.

    Returns one string of space-separated pieces per input line, in order; a
    blank line gives ``''`` (so outputs stay aligned with e.g. labels).
    """
    encoder = load_text_encoder(str(Path(out_dir).resolve()), lang)
    return [encoder.encode_line(line) for line in lines]


def encode_words(out_dir: str | Path, lang: str, words: Sequence[str]) -> list[list[str]]:
    """Pieces for each word of a pre-tokenised sentence; a word that normalises to nothing gets ``[]``."""
    encoder = load_text_encoder(str(Path(out_dir).resolve()), lang)
    return [encoder.encode_word(word) for word in words]

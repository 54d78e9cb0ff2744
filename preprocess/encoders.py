"""The text pipeline of an XLM-R release: its sentencepiece model and fairseq dictionary.

An official XLM-R download (``xlmr.base.tar.gz`` ...) unpacks to a folder with
``model.pt``, ``dict.txt`` and ``sentencepiece.bpe.model`` (:data:`RELEASE_FILES`).
Its text is encoded as ``fairseq.models.roberta.XLMRModel.encode`` does, with no
normalisation beyond sentencepiece's own (NFKC, whitespace) and no Moses:

    pieces = sp.EncodeAsPieces(text);   ids = [dictionary.index(p) for p in pieces]

(``<s>``/``</s>`` are added by the fine-tuning tasks, not here).  Tagging encodes each
word on its own (its first piece carries the label, XTREME's rule); QA maps every piece
back to the characters of the *original* context with sentencepiece's normaliser offsets
(:meth:`SentencePieceEncoder.context`).

The release's embedding matrix must have ``len(dict.txt) + 5`` rows (``<s> <pad> </s>
<unk>``, the pieces, ``<mask>``): :func:`check_release` refuses a release whose
dictionary does not fit its checkpoint, or that lacks a file, in one line.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import PreprocessError
from .textio import sha256_file

MODEL_FILE = "model.pt"
DICT_FILE = "dict.txt"
SENTENCEPIECE_FILE = "sentencepiece.bpe.model"
RELEASE_FILES = (MODEL_FILE, DICT_FILE, SENTENCEPIECE_FILE)
#: the rows the embedding has beyond dict.txt's lines: <s> <pad> </s> <unk> and <mask>
SPECIAL_ROWS = 5
#: the word-piece boundary marker of sentencepiece
SPACE = "\u2581"


class EncoderError(PreprocessError):
    """A release folder that is incomplete or inconsistent (one line, naming the file)."""


@dataclass(frozen=True)
class Release:
    """The three files of an XLM-R release."""

    directory: Path
    model: Path
    dictionary: Path
    sentencepiece: Path


def find_release(path: Path, what: str = "--encoder") -> Release:
    """The release that ``path`` (its folder or its ``model.pt``) belongs to; every file must exist."""
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    model = path if path.is_file() else directory / MODEL_FILE
    if not directory.is_dir():
        raise EncoderError(f"{what} {path}: no such folder")
    for name, file in ((MODEL_FILE, model), (DICT_FILE, directory / DICT_FILE),
                       (SENTENCEPIECE_FILE, directory / SENTENCEPIECE_FILE)):
        if not file.is_file():
            raise EncoderError(f"{what} {path}: {file} is missing (an XLM-R release holds "
                               f"{', '.join(RELEASE_FILES)})")
    return Release(directory.resolve(), model.resolve(), (directory / DICT_FILE).resolve(),
                   (directory / SENTENCEPIECE_FILE).resolve())


def dictionary_rows(dict_path: Path) -> int:
    """Embedding rows a fairseq masked-LM model builds from ``dict_path``."""
    with open(dict_path, encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip()) + SPECIAL_ROWS


def load_checkpoint_state(path: Path) -> dict[str, Any]:
    """``torch.load`` of a fairseq checkpoint, memory-mapped where the file allows it."""
    import torch

    try:
        return torch.load(str(path), map_location="cpu", mmap=True, weights_only=False)
    except RuntimeError as error:
        if "mmap" not in str(error):
            raise
        return torch.load(str(path), map_location="cpu", weights_only=False)  # legacy (pre-zip) format


def embedding_rows(state: dict[str, Any]) -> int:
    """Rows of the token embedding of a roberta-family checkpoint state (old or new key names), or -1."""
    model = state.get("model") or {}
    for key in ("encoder.sentence_encoder.embed_tokens.weight", "decoder.sentence_encoder.embed_tokens.weight",
                "encoder.embed_tokens.weight"):
        if key in model:
            return int(model[key].shape[0])
    return -1


def check_release(release: Release, state: dict[str, Any] | None = None, what: str = "--encoder") -> None:
    """Refuse a release whose dictionary does not give its checkpoint's embedding rows."""
    if state is None:
        try:
            state = load_checkpoint_state(release.model)
        except Exception as error:  # noqa: BLE001 - an unreadable checkpoint is the user's to fix
            raise EncoderError(f"{what} {release.model}: cannot load the checkpoint ({error})") from None
    rows, expected = embedding_rows(state), dictionary_rows(release.dictionary)
    if rows < 0:
        raise EncoderError(f"{what} {release.model}: no token embedding (not a roberta/XLM-R checkpoint)")
    if rows != expected:
        raise EncoderError(f"{what} {release.directory}: {DICT_FILE} gives {expected} embeddings (with <s> <pad> "
                           f"</s> <unk> <mask>) but {MODEL_FILE} has {rows}: the dictionary is not this model's")


class SentencePieceEncoder:
    """An XLM-R release's sentencepiece model and dictionary (the interface of ``CorpusEncoder``)."""

    bpe_kind = "sentencepiece"
    family = "roberta"

    def __init__(self, path: Path, check_model: bool = True) -> None:
        import sentencepiece
        from fairseq.data import Dictionary

        self.release = find_release(path)
        if check_model:
            check_release(self.release)
        self.corpus = self.release.directory
        self.dict_path = self.release.dictionary
        self.normalize_as: dict[str, str] = {}
        self.dictionary = Dictionary.load(str(self.dict_path))
        try:
            self.processor = sentencepiece.SentencePieceProcessor(model_file=str(self.release.sentencepiece))
        except (OSError, RuntimeError) as error:
            raise EncoderError(f"--encoder {path}: cannot read {self.release.sentencepiece} ({error})") from None
        self._word_cache: dict[str, tuple[list[str], list[int]]] = {}

    def describe(self) -> dict[str, Any]:
        """What meta.json records about the encoding."""
        return {"corpus": str(self.corpus), "dictionary_sha256": sha256_file(self.dict_path),
                "bpe": {"kind": self.bpe_kind, "sha256": sha256_file(self.release.sentencepiece)},
                "normalize_as": {},
                "encoder": {"family": self.family, "release": str(self.release.directory),
                            "sentencepiece_sha256": sha256_file(self.release.sentencepiece)}}

    def encoder_language(self, lang: str) -> str:
        return lang  # one model for every language: nothing is language-specific

    def pieces(self, text: str) -> list[str]:
        return list(self.processor.encode(text, out_type=str))

    def ids(self, pieces: list[str]) -> list[int]:
        return [self.dictionary.index(piece) for piece in pieces]

    def word(self, lang: str, word: str) -> tuple[list[str], list[int]]:
        """Pieces and ids of one word on its own; a word that encodes to nothing is ``<unk>``."""
        cached = self._word_cache.get(word)
        if cached is None:
            pieces = self.pieces(word)
            cached = (pieces, self.ids(pieces) or [self.dictionary.unk()])
            if len(self._word_cache) < 2_000_000:
                self._word_cache[word] = cached
        return cached

    def line(self, lang: str, text: str) -> list[int]:
        """The ids ``XLMRModel.encode(text)`` gives, without ``<s>`` and ``</s>``."""
        return self.ids(self.pieces(text))

    def piece_surface(self, piece: str) -> str:
        return piece.replace(SPACE, "")

    def context(self, lang: str, text: str) -> tuple[list[int], list[list[int]]]:
        """Ids of a QA context and each piece's ``[start, end)`` in the original ``text``.

        The pieces concatenate to sentencepiece's normalised text, whose characters map to
        original positions (``Normalize(with_offsets=True)``); a piece's leading ``▁`` is
        left out of its span (a lone ``▁`` gets an empty span where the next text starts),
        and a piece inside one original character that normalisation split (NFKC ``ﻻ`` ->
        ``لا``) gets that whole character.
        """
        pieces = self.pieces(text)
        normalized, offsets = self.processor.Normalize(text, with_offsets=True)
        if "".join(pieces) != normalized or len(offsets) != len(normalized) + 1:
            raise EncoderError(f"sentencepiece pieces do not concatenate to its normalised text: {text[:60]!r}")
        spans: list[list[int]] = []
        cursor = 0
        for piece in pieces:
            begin, end = cursor, cursor + len(piece)
            cursor = end
            if piece.startswith(SPACE):
                begin += 1
            if begin >= end:
                spans.append([offsets[end], offsets[end]])
            else:
                spans.append([offsets[begin], max(offsets[end], offsets[end - 1] + 1)])
        return self.ids(pieces), spans

"""Readers of the demo's source files, in their official formats.

* ``SBLGNT.tsv`` (headed TSV: ``id altId text strongs gloss gloss2 lemma pos morph``):
  one Greek word per row; ``id`` is ``n`` + book(2) chapter(3) verse(3) word(3).
* ``{ot,nt}_BSB.tsv`` (headed TSV: ``id source_verse text skip_space_after exclude
  id_range_end source_verse_range_end``): one English token per row, punctuation
  included (``exclude`` is ``y`` exactly for punctuation tokens); ``id`` is
  book(2) chapter(3) verse(3) token(3), ``source_verse`` the SBLGNT verse it
  translates.
* Turkish Web Treebank CoNLL-U: words split into inflectional groups (IGs).

Malformed input raises :class:`DataFormatError` naming the file and line.
"""
from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .demo_sources import DataFormatError

__all__ = [
    "Sentence", "GreekWord", "BsbToken",
    "read_sblgnt_words", "read_sblgnt", "read_bsb_tokens", "read_bsb", "read_turkish_conllu",
    "join_with_spacing",
]


@dataclass(frozen=True)
class Sentence:
    """One sentence (or verse) of a source: its id, tokens, source tags and surface text.

    ``tags`` is empty for untagged sources (English).
    """

    sent_id: str
    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class GreekWord:
    """One SBLGNT row: word id (``nBBCCCVVVWWW``), verse id (``BBCCCVVV``), form, source POS."""

    word_id: str
    verse: str
    text: str
    pos: str


@dataclass(frozen=True)
class BsbToken:
    """One BSB row: token id (``BBCCCVVVTTT``), its BSB verse, the SBLGNT verse it translates."""

    token_id: str
    verse: str
    source_verse: str
    text: str
    no_space_after: bool
    punctuation: bool


def _read_tsv(path: Path, required: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line number, row)`` for the rows of a headed TSV file (no quoting); check the columns."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = [column for column in required if column not in (reader.fieldnames or ())]
        if missing:
            raise DataFormatError(f"{path}: missing column(s) {', '.join(missing)}")
        for row in reader:
            yield reader.line_num, {key: value or "" for key, value in row.items() if key is not None}


_SBLGNT_ID = re.compile(r"^n(\d{8})\d{3}$")
_BSB_ID = re.compile(r"^(\d{8})\d{3}$")
_VERSE_ID = re.compile(r"^\d{8}$")


def _verse_of(word_id: str, pattern: re.Pattern[str], path: Path, line: int) -> str:
    """Return the ``BBCCCVVV`` verse id of a word id, or raise DataFormatError."""
    match = pattern.match(word_id)
    if match is None:
        raise DataFormatError(f"{path}:{line}: unexpected word id {word_id!r}")
    return match.group(1)


def read_sblgnt_words(path: Path) -> list[GreekWord]:
    """Read ``SBLGNT.tsv`` word by word, in file order."""
    return [
        GreekWord(row["id"], _verse_of(row["id"], _SBLGNT_ID, path, line), row["text"], row["pos"])
        for line, row in _read_tsv(path, ("id", "text", "pos"))
    ]


def read_sblgnt(path: Path) -> list[Sentence]:
    """Read ``SBLGNT.tsv`` into verses with the source ``pos`` tags, in file order."""
    verses: dict[str, list[GreekWord]] = {}
    for word in read_sblgnt_words(path):
        verses.setdefault(word.verse, []).append(word)
    return [
        Sentence(
            sent_id=verse,
            tokens=tuple(word.text for word in words),
            tags=tuple(word.pos for word in words),
            text=" ".join(word.text for word in words),
        )
        for verse, words in verses.items()
    ]


def read_bsb_tokens(path: Path) -> list[BsbToken]:
    """Read one BSB target TSV file token by token, in file order."""
    tokens = []
    for line, row in _read_tsv(path, ("id", "source_verse", "text", "skip_space_after", "exclude")):
        verse = _verse_of(row["id"], _BSB_ID, path, line)
        if not _VERSE_ID.match(row["source_verse"]):
            raise DataFormatError(f"{path}:{line}: unexpected source_verse {row['source_verse']!r}")
        tokens.append(BsbToken(row["id"], verse, row["source_verse"], row["text"],
                               no_space_after=row["skip_space_after"] == "y", punctuation=row["exclude"] == "y"))
    return tokens


def read_bsb(paths: Iterable[Path]) -> list[Sentence]:
    """Read BSB target TSV files into verses, keeping the source's punctuation spacing.

    Verses are keyed by the BSB's own verse id (first 8 digits of ``id``); a token is
    followed by a space unless its ``skip_space_after`` column is ``y``.
    """
    verses: dict[str, list[BsbToken]] = {}
    for path in paths:
        for token in read_bsb_tokens(path):
            verses.setdefault(token.verse, []).append(token)
    return [
        Sentence(
            sent_id=verse,
            tokens=tuple(token.text for token in tokens),
            tags=(),
            text=join_with_spacing((token.text, token.no_space_after) for token in tokens),
        )
        for verse, tokens in verses.items()
    ]


def join_with_spacing(tokens: Iterable[tuple[str, bool]]) -> str:
    """Join ``(token, no_space_after)`` pairs into surface text."""
    return "".join(token if glued else token + " " for token, glued in tokens).strip()


def _conllu_blocks(path: Path) -> Iterator[tuple[dict[str, str], list[list[str]]]]:
    """Yield ``(comments, token rows)`` per sentence of a CoNLL-U file.

    Comment lines ``# key = value`` become dict entries; multiword-token ranges and
    empty nodes are skipped. A missing final blank line is tolerated.
    """
    comments: dict[str, str] = {}
    rows: list[list[str]] = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                if rows:
                    yield comments, rows
                comments, rows = {}, []
            elif line.startswith("#"):
                key, _, value = line[1:].partition("=")
                comments[key.strip()] = value.strip()
            else:
                columns = line.split("\t")
                if len(columns) != 10:
                    raise DataFormatError(f"{path}:{line_number}: expected 10 columns, got {len(columns)}")
                if columns[0].isdigit():
                    rows.append(columns)
    if rows:
        yield comments, rows


def _merge_inflectional_groups(rows: Sequence[Sequence[str]]) -> list[tuple[str, str, bool]]:
    """Merge IG chains into words: ``(form, tag of last IG, no space after)`` per word.

    A row whose DEPREL (column 8) is ``ig`` continues into the next row.
    """
    words: list[tuple[str, str, bool]] = []
    pending = ""
    for row in rows:
        pending += row[1]
        if row[7] != "ig":
            words.append((pending, row[3], "SpaceAfter=No" in row[9].split("|")))
            pending = ""
    if pending:
        words.append((pending, rows[-1][3], False))
    return words


def read_turkish_conllu(path: Path) -> list[Sentence]:
    """Read a Turkish Web Treebank CoNLL-U file into word-level sentences.

    Tokens are surface words (IGs merged), tags the UPOS of each word's last IG, and
    ``text`` the surface sentence rebuilt from ``SpaceAfter=No``.
    """
    sentences = []
    for index, (comments, rows) in enumerate(_conllu_blocks(path)):
        words = _merge_inflectional_groups(rows)
        sentences.append(
            Sentence(
                sent_id=comments.get("sent_id", f"{path.name}:{index}"),
                tokens=tuple(form for form, _, _ in words),
                tags=tuple(tag for _, tag, _ in words),
                text=join_with_spacing((form, glued) for form, _, glued in words),
            )
        )
    return sentences

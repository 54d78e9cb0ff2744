"""Silver English POS tags: the SBLGNT's gold Greek tags projected onto the BSB.

Input: the gold Greek tags (already mapped to the shared tag set), the BSB New
Testament tokens and Biblica's manual SBLGNT->BSB word alignments
(``SBLGNT-BSB-manual.json``, Scripture Burrito 0.3: ``{"records": [{"source":
[Greek word ids], "target": [BSB token ids], "meta": {...}}, ...]}``). Every English
token is in at most one record; a record links one or more Greek words to one or
more English tokens.

Projection rule (per English word; punctuation tokens are dropped, as Turkish
PUNCT is, since Greek has no punctuation tokens to learn PUNCT from):

1. **one-to-one** record (one Greek word, one English word): the Greek tag.
2. **any other record** (one Greek word -> several English words, several Greek
   words -> one, or several -> several), with Greek tags G. Greek inflection is
   often rendered by English function words (``γενέσεως`` -> "of the genealogy"),
   so copying G onto every English word would tag "of" and "the" NOUN. Instead a
   type dictionary counts, for every lower-cased English word, the tags it takes in
   one-to-one records. For a word seen there at least :data:`MIN_KNOWN_COUNT` times:
   the tag of G it takes most often, if that tag has at least
   :data:`MIN_RECORD_TAG_SHARE` of its one-to-one occurrences ("will" in a VERB
   record: VERB); otherwise its most frequent one-to-one tag ("the" in a NOUN
   record: DET). A rarer word (a content word, typically) takes the first tag of G
   in :data:`CONTENT_FIRST` order (``ὁ Ἰησοῦς`` -> "Jesus": NOUN).
3. **unaligned** word (in no record): its most frequent one-to-one tag when it is a
   known word; otherwise the tag is unknown and the whole verse is dropped (no
   guessed labels).

:class:`ProjectionStats` counts every case; the demo data's manifest records it.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .demo_readers import BsbToken, GreekWord
from .demo_sources import DataFormatError

__all__ = [
    "AlignmentRecord", "TypeDictionary", "ProjectedVerse", "ProjectionStats", "Projection",
    "CONTENT_FIRST", "MIN_KNOWN_COUNT", "MIN_RECORD_TAG_SHARE",
    "read_alignments", "build_type_dictionary", "project_word", "project_tags",
]

#: a word needs this many one-to-one occurrences for its type-dictionary tags to be used
MIN_KNOWN_COUNT = 20
#: a known word in a many-word record takes a record tag only if it has this share of its 1-to-1 tags
MIN_RECORD_TAG_SHARE = 0.1
#: the record tag a rare word takes when a record has several: content words first
CONTENT_FIRST: tuple[str, ...] = ("NOUN", "VERB", "ADJ", "NUM", "ADV", "PRON", "ADP", "CONJ", "PRT", "DET", "X")

RULE_ONE_TO_ONE = "one-to-one: Greek tag"
RULE_RECORD_TAG = "many-word record: record tag confirmed by the word's 1-to-1 tags"
RULE_FUNCTION_WORD = "many-word record: the word's own 1-to-1 majority tag"
RULE_CONTENT_FIRST = "many-word record, rare word: content-first record tag"
RULE_UNALIGNED_KNOWN = "unaligned, known word: its 1-to-1 majority tag"
RULE_UNALIGNED_RARE = "unaligned, rare word: no tag (verse dropped)"
RULES: tuple[str, ...] = (RULE_ONE_TO_ONE, RULE_RECORD_TAG, RULE_FUNCTION_WORD, RULE_CONTENT_FIRST,
                          RULE_UNALIGNED_KNOWN, RULE_UNALIGNED_RARE)


@dataclass(frozen=True)
class AlignmentRecord:
    """One alignment record: Greek word ids (``nBBCCCVVVWWW``) and BSB token ids (``BBCCCVVVTTT``)."""

    record_id: str
    source: tuple[str, ...]
    target: tuple[str, ...]

    @property
    def shape(self) -> str:
        """``1-1``, ``1-n``, ``n-1`` or ``n-n`` (Greek words - English tokens)."""
        return f"{'1' if len(self.source) == 1 else 'n'}-{'1' if len(self.target) == 1 else 'n'}"


def _id_list(value: Any) -> tuple[str, ...] | None:
    """``value`` as a non-empty tuple of strings, or None."""
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return tuple(value)
    return None


def read_alignments(path: Path) -> list[AlignmentRecord]:
    """Read the records of a Scripture Burrito alignment file (``SBLGNT-BSB-manual.json``)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataFormatError(f"{path}:{error.lineno}: invalid JSON ({error.msg})") from None
    records = document.get("records") if isinstance(document, dict) else None
    if not isinstance(records, list):
        raise DataFormatError(f"{path}: no 'records' list")
    parsed = []
    for index, record in enumerate(records):
        source = _id_list(record.get("source")) if isinstance(record, dict) else None
        target = _id_list(record.get("target")) if isinstance(record, dict) else None
        if source is None or target is None:
            raise DataFormatError(f"{path}: record {index} has no non-empty 'source' and 'target' id lists")
        meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
        parsed.append(AlignmentRecord(str(meta.get("id", index)), source, target))
    return parsed


@dataclass(frozen=True)
class TypeDictionary:
    """Tag counts per lower-cased English word over the one-to-one records."""

    counts: Mapping[str, Counter[str]]

    def occurrences(self, word: str) -> int:
        return sum(self.counts.get(word.lower(), Counter()).values())

    def is_known(self, word: str) -> bool:
        return self.occurrences(word) >= MIN_KNOWN_COUNT

    def share(self, word: str, tag: str) -> float:
        total = self.occurrences(word)
        return self.counts[word.lower()][tag] / total if total else 0.0

    def majority(self, word: str) -> str:
        """The most frequent tag (ties: :data:`CONTENT_FIRST` order)."""
        tags = self.counts[word.lower()]
        return max(tags, key=lambda tag: (tags[tag], -CONTENT_FIRST.index(tag)))


def build_type_dictionary(records: Iterable[AlignmentRecord], greek_tags: Mapping[str, str],
                          english: Mapping[str, BsbToken]) -> TypeDictionary:
    """Count the Greek tag of every one-to-one record per lower-cased English word."""
    counts: dict[str, Counter[str]] = {}
    for record in records:
        if record.shape == "1-1" and not english[record.target[0]].punctuation:
            word = english[record.target[0]].text.lower()
            counts.setdefault(word, Counter())[greek_tags[record.source[0]]] += 1
    return TypeDictionary(counts)


def project_word(word: str, record_tags: Sequence[str] | None, one_to_one: bool,
                 dictionary: TypeDictionary) -> tuple[str | None, str]:
    """``(tag or None, rule)`` of one English word; ``record_tags`` is None when it is unaligned."""
    if record_tags is None:
        if dictionary.is_known(word):
            return dictionary.majority(word), RULE_UNALIGNED_KNOWN
        return None, RULE_UNALIGNED_RARE
    if one_to_one:
        return record_tags[0], RULE_ONE_TO_ONE
    if dictionary.is_known(word):
        best = max(set(record_tags), key=lambda tag: (dictionary.share(word, tag), -CONTENT_FIRST.index(tag)))
        if dictionary.share(word, best) >= MIN_RECORD_TAG_SHARE:
            return best, RULE_RECORD_TAG
        return dictionary.majority(word), RULE_FUNCTION_WORD
    return min(record_tags, key=CONTENT_FIRST.index), RULE_CONTENT_FIRST


@dataclass(frozen=True)
class ProjectedVerse:
    """One BSB verse with silver tags (punctuation dropped) and the SBLGNT verses it translates."""

    verse: str
    greek_verses: frozenset[str]
    words: tuple[tuple[str, str], ...]


@dataclass
class ProjectionStats:
    """What the projection did, counted over the New Testament."""

    english_tokens: int = 0
    punctuation_tokens: int = 0
    words: int = 0
    aligned_words: int = 0
    words_by_record_shape: Counter[str] = field(default_factory=Counter)
    words_by_rule: Counter[str] = field(default_factory=Counter)
    greek_words: int = 0
    aligned_greek_words: int = 0
    verses: int = 0
    verses_dropped_unknown_tag: int = 0
    verses_without_words: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "english_tokens": self.english_tokens, "punctuation_tokens_dropped": self.punctuation_tokens,
            "english_words": self.words, "aligned_english_words": self.aligned_words,
            "aligned_english_word_share": round(self.aligned_words / self.words, 4) if self.words else 0.0,
            "words_by_record_shape": dict(sorted(self.words_by_record_shape.items())),
            "words_by_rule": {rule: self.words_by_rule[rule] for rule in RULES},
            "greek_words": self.greek_words, "aligned_greek_words": self.aligned_greek_words,
            "verses": self.verses, "verses_dropped_unknown_tag": self.verses_dropped_unknown_tag,
            "verses_without_words": self.verses_without_words,
            "verses_kept": self.verses - self.verses_dropped_unknown_tag - self.verses_without_words,
            "rule": {"min_known_count": MIN_KNOWN_COUNT, "min_record_tag_share": MIN_RECORD_TAG_SHARE,
                     "content_first": list(CONTENT_FIRST)},
        }


@dataclass(frozen=True)
class Projection:
    """The projected verses, the SBLGNT verses every BSB verse translates (kept or not), the counts."""

    verses: list[ProjectedVerse]
    translated: Mapping[str, frozenset[str]]
    stats: ProjectionStats


def _record_index(records: Sequence[AlignmentRecord], greek_tags: Mapping[str, str],
                  english: Mapping[str, BsbToken], where: Path) -> dict[str, AlignmentRecord]:
    """BSB token id -> its record; checks that every id exists and every token has one record."""
    index: dict[str, AlignmentRecord] = {}
    for record in records:
        unknown = [word for word in record.source if word not in greek_tags]
        unknown += [token for token in record.target if token not in english]
        if unknown:
            raise DataFormatError(f"{where}: record {record.record_id} names unknown word id {unknown[0]!r}")
        for token in record.target:
            if token in index:
                raise DataFormatError(f"{where}: BSB token {token} is in records {index[token].record_id} "
                                      f"and {record.record_id}")
            index[token] = record
    return index


def project_tags(greek_words: Sequence[GreekWord], greek_tag_map: Mapping[str, str],
                 english_tokens: Sequence[BsbToken], records: Sequence[AlignmentRecord],
                 alignments_path: Path) -> Projection:
    """Project the gold Greek tags onto every New Testament BSB verse (see the module docstring)."""
    greek_tags = {word.word_id: greek_tag_map[word.pos] for word in greek_words}
    greek_verse_of = {word.word_id: word.verse for word in greek_words}
    english = {token.token_id: token for token in english_tokens}
    record_of = _record_index(records, greek_tags, english, alignments_path)
    dictionary = build_type_dictionary(records, greek_tags, english)
    stats = ProjectionStats(english_tokens=len(english_tokens), greek_words=len(greek_words),
                            aligned_greek_words=len({word for record in records for word in record.source}))
    by_verse: dict[str, list[BsbToken]] = {}
    for token in english_tokens:
        by_verse.setdefault(token.verse, []).append(token)
    verses = []
    translated: dict[str, frozenset[str]] = {}
    for verse, tokens in by_verse.items():
        stats.verses += 1
        words: list[tuple[str, str]] = []
        greek_verses = {token.source_verse for token in tokens}
        complete = True
        for token in tokens:
            if token.punctuation:
                stats.punctuation_tokens += 1
                continue
            stats.words += 1
            record = record_of.get(token.token_id)
            record_tags = None if record is None else [greek_tags[word] for word in record.source]
            if record is not None:
                stats.aligned_words += 1
                stats.words_by_record_shape[record.shape] += 1
                greek_verses.update(greek_verse_of[word] for word in record.source)
            tag, rule = project_word(token.text, record_tags, record is not None and record.shape == "1-1",
                                     dictionary)
            stats.words_by_rule[rule] += 1
            if tag is None:
                complete = False
            else:
                words.append((token.text, tag))
        translated[verse] = frozenset(greek_verses)
        if not complete:
            stats.verses_dropped_unknown_tag += 1
        elif not words:
            stats.verses_without_words += 1
        else:
            verses.append(ProjectedVerse(verse, frozenset(greek_verses), tuple(words)))
    return Projection(verses, translated, stats)

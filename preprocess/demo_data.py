"""Pinned, real demo data: Koine Greek, English and Turkish text and POS tags.

Sources (see :mod:`.demo_sources`): two PyPI wheels fetched with ``pip download``
(never installed) and checked against a pinned sha256 -- ``bible-alignments==0.4.2``
(SBLGNT Greek New Testament with gold coarse POS tags, the Berean Standard Bible,
Biblica's manual Greek->English word alignments) and ``turkish-treebanks==1.0.0``
(the Turkish Web Treebank, ``data/web.conllu`` 2,541 sentences and
``data/wiki.conllu`` 2,310; a naive count of blank lines gives 2,540 + 2,309 because
neither file ends with one).

Output layout under the cache directory (``--cache-dir``, else ``$XLINT_DATA_DIR``,
else ``~/.cache/xlint/data``)::

    sources/<wheel>-<version>/...   extracted data files + sha256 stamp
    raw/{grc,en,tr}.txt             every sentence of each source
    pretrain/{grc,en,tr}.txt        raw text minus the POS dev and test sentences
    pos/{en,grc,tr}/{train,dev,test}.tsv
    manifest.json                   sources, licences, tag maps, splits, projection counts

Raw text: UTF-8, one sentence per line. A Greek line is one SBLGNT verse (words
joined by spaces). An English line is one BSB verse, OT then NT in canonical
order, with the source's own spacing of punctuation; Psalm superscriptions are
verse 0 in the BSB files and are kept as their own lines (31,202 lines). A
Turkish line is one treebank sentence with IGs merged back into words, which
reproduces each sentence's ``# text`` exactly.

Pretraining text (``pretrain/``) is what the demo pretrains on: the raw text
without every sentence of a POS dev or test split -- Greek dev/test verses, their
English translations (every BSB verse that translates one of them, whether or not
it made it into the English POS data) and Turkish dev/test sentences -- and
without any other line whose letters and digits (lower-cased) equal those of a
held-out sentence (repeated verses). :func:`match_key` is that comparison.

POS files: two-column CoNLL (``token<TAB>TAG``), each sentence followed by a
blank line, tags from the shared coarse tag set :data:`SHARED_TAGS` (the Google
universal tag set without PUNCT). Greek and Turkish tags are gold; English tags
are silver, projected from the Greek through the manual alignments (rule and
counts: :mod:`.demo_projection`, ``manifest.json["projection"]``). The maps:

* Greek: noun->NOUN, verb->VERB, adj->ADJ, adv->ADV, pron->PRON, det->DET,
  prep->ADP, num->NUM, conj->CONJ, ptcl->PRT, intj->X (the universal tag set
  has no interjection tag; Petrov et al. put interjections under X).
* Turkish: the ten shared tags and X map to themselves; ONOM (onomatopoeia /
  reduplication) and AFFIX -> X; PUNCT tokens are dropped, because Greek has no
  punctuation tokens, so a tagger trained on Greek-derived tags could never
  predict PUNCT. English punctuation tokens are dropped for the same reason.
  Raw and pretraining text keep their punctuation.

Turkish IG merging: a token whose dependency relation is ``ig`` is an
inflectional group continued by the next token (``Açık|la|nma|yan`` ->
``Açıklanmayan``); the word takes the tag of its LAST IG. ``SpaceAfter=No``
alone is not used for merging, since it also glues punctuation (``imkansız.``).

Splits: 80/10/10 train/dev/test, fixed and deterministic: Greek verses (ids
``BBCCCVVV``) and Turkish sentences (``sent_id``) are ranked by
``sha256(SPLIT_SALT + ":" + id)`` and cut at 80% and 90%; each split keeps the
source order. An English verse goes to the split of the Greek verse(s) it
translates, so that a model fine-tuned on English never sees silver tags projected
from a Greek dev or test verse; a BSB verse that translates Greek verses of two
splits, or no SBLGNT verse, is left out of the English POS data (counted).
Verses rather than books are split so that every split covers all 27 books.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .demo_projection import ProjectedVerse, Projection, project_tags, read_alignments
from .demo_readers import (
    Sentence,
    read_bsb,
    read_bsb_tokens,
    read_sblgnt,
    read_sblgnt_words,
    read_turkish_conllu,
)
from .demo_sources import (
    ALIGNMENT_MEMBER,
    BIBLE_ALIGNMENTS,
    BSB_NT_MEMBER,
    BSB_OT_MEMBER,
    CACHE_ENV_VAR,
    DEFAULT_CACHE_DIR,  # noqa: F401  (re-exported for cli/commands_data.py)
    PINS,
    SBLGNT_MEMBER,
    TURKISH_TREEBANKS,
    TWT_MEMBERS,
    ChecksumMismatchError,
    DataFormatError,
    DemoDataError,
    Downloader,
    DownloadError,
    WheelPin,
    ensure_source,
    pip_download,
    resolve_cache_dir,
)
from .textio import atomic_text_writer, read_own_lines

__all__ = [
    "BIBLE_ALIGNMENTS",
    "TURKISH_TREEBANKS",
    "PINS",
    "SHARED_TAGS",
    "GREEK_TAG_MAP",
    "TURKISH_TAG_MAP",
    "TAG_MAPS",
    "RAW_LANGUAGES",
    "POS_LANGUAGES",
    "HELD_OUT_SPLITS",
    "SPLITS",
    "CACHE_ENV_VAR",
    "DemoData",
    "DemoDataError",
    "DownloadError",
    "ChecksumMismatchError",
    "DataFormatError",
    "FileCounts",
    "Sentence",
    "WheelPin",
    "fetch_demo_data",
    "resolve_cache_dir",
    "pip_download",
    "read_sblgnt",
    "read_bsb",
    "read_turkish_conllu",
    "read_conll",
    "tag_sentence",
    "assign_splits",
    "match_key",
    "write_conll",
]

# --------------------------------------------------------------------------- constants

LANG_GREEK = "grc"
LANG_ENGLISH = "en"
LANG_TURKISH = "tr"
RAW_LANGUAGES: tuple[str, ...] = (LANG_GREEK, LANG_ENGLISH, LANG_TURKISH)
POS_LANGUAGES: tuple[str, ...] = (LANG_ENGLISH, LANG_GREEK, LANG_TURKISH)
SPLITS: tuple[str, ...] = ("train", "dev", "test")
#: the POS splits that are held out of the pretraining text
HELD_OUT_SPLITS: tuple[str, ...] = ("dev", "test")
SPLIT_FRACTIONS: Mapping[str, float] = {"train": 0.8, "dev": 0.1, "test": 0.1}
SPLIT_SALT = "xlint-demo-split-v1"
FORMAT_VERSION = 2
MANIFEST_NAME = "manifest.json"

#: The coarse tag set shared by Greek and Turkish (Google universal tags minus PUNCT).
SHARED_TAGS: tuple[str, ...] = (
    "NOUN", "VERB", "ADJ", "ADV", "PRON", "DET", "ADP", "NUM", "CONJ", "PRT", "X",
)

#: SBLGNT ``pos`` column -> shared tag.
GREEK_TAG_MAP: Mapping[str, str] = {
    "noun": "NOUN",
    "verb": "VERB",
    "adj": "ADJ",
    "adv": "ADV",
    "pron": "PRON",
    "det": "DET",
    "prep": "ADP",
    "num": "NUM",
    "conj": "CONJ",
    "ptcl": "PRT",
    "intj": "X",
}

#: Turkish Web Treebank UPOS column -> shared tag; ``None`` drops the token.
TURKISH_TAG_MAP: Mapping[str, str | None] = {
    **{tag: tag for tag in SHARED_TAGS},
    "ONOM": "X",
    "AFFIX": "X",
    "PUNCT": None,
}

TAG_MAPS: Mapping[str, Mapping[str, str | None]] = {
    LANG_GREEK: GREEK_TAG_MAP,
    LANG_TURKISH: TURKISH_TAG_MAP,
}

# --------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class FileCounts:
    """Sentence and token counts of one output file.

    For raw text, tokens are whitespace-separated tokens; for POS files, tagged rows.
    """

    sentences: int
    tokens: int


@dataclass(frozen=True)
class DemoData:
    """Where the prepared demo data lies. Paths are absolute."""

    root: Path
    raw: Mapping[str, Path]
    pretrain: Mapping[str, Path]
    pos: Mapping[str, Mapping[str, Path]]
    manifest_path: Path
    counts: Mapping[str, FileCounts]

    @classmethod
    def from_manifest(cls, root: Path, manifest: Mapping[str, Any]) -> "DemoData":
        """Build the path view of ``root`` with the counts recorded in ``manifest``."""
        counts = {
            rel: FileCounts(info["sentences"], info["tokens"]) for rel, info in manifest["files"].items()
        }
        return cls(
            root=root,
            raw={lang: root / _raw_relpath(lang) for lang in RAW_LANGUAGES},
            pretrain={lang: root / _pretrain_relpath(lang) for lang in RAW_LANGUAGES},
            pos={lang: {split: root / _pos_relpath(lang, split) for split in SPLITS} for lang in POS_LANGUAGES},
            manifest_path=root / MANIFEST_NAME,
            counts=counts,
        )


TaggedSentence = Sequence[tuple[str, str]]

# --------------------------------------------------------------------------- tags, splits, hold-out


def tag_sentence(sentence: Sentence, tag_map: Mapping[str, str | None]) -> list[tuple[str, str]]:
    """Map a sentence's source tags to shared tags; tokens mapped to ``None`` are dropped."""
    tagged = []
    for token, tag in zip(sentence.tokens, sentence.tags, strict=True):
        if tag not in tag_map:
            raise DataFormatError(f"sentence {sentence.sent_id}: no mapping for tag {tag!r}")
        shared = tag_map[tag]
        if shared is not None:
            tagged.append((token, shared))
    return tagged


def assign_splits(
    sent_ids: Sequence[str],
    fractions: Mapping[str, float] = SPLIT_FRACTIONS,
    salt: str = SPLIT_SALT,
) -> dict[str, list[int]]:
    """Assign sentence indices to splits by ranking ``sha256(salt:id)``.

    Returns, per split name (in ``fractions`` order), the sorted indices of its
    sentences. The result depends only on the ids, not on their order or on Python's
    random module; the last split takes the rounding remainder.
    """
    if len(set(sent_ids)) != len(sent_ids):
        raise DataFormatError("sentence ids are not unique; cannot split deterministically")
    ranked = sorted(
        range(len(sent_ids)),
        key=lambda index: hashlib.sha256(f"{salt}:{sent_ids[index]}".encode()).hexdigest(),
    )
    splits: dict[str, list[int]] = {}
    start = 0
    names = list(fractions)
    for position, name in enumerate(names):
        is_last = position == len(names) - 1
        end = len(ranked) if is_last else start + round(fractions[name] * len(ranked))
        splits[name] = sorted(ranked[start:end])
        start = end
    return splits


def match_key(text: str) -> str:
    """The letters and digits of ``text``, lower-cased: equal keys mean the same sentence.

    Spacing, punctuation and case differ between a raw line and a POS sentence (Turkish
    and English POS files drop punctuation tokens), so sentences are compared by this key.
    """
    return "".join(character for character in text.lower() if character.isalnum())


def split_of_english_verse(verse: ProjectedVerse, greek_split_of: Mapping[str, str]) -> str | None:
    """The split of the Greek verses a BSB verse translates, or None (no SBLGNT verse, or two splits)."""
    splits = {greek_split_of[greek] for greek in verse.greek_verses if greek in greek_split_of}
    return splits.pop() if len(splits) == 1 else None


def pretraining_sentences(sentences: Sequence[Sentence], held_out_ids: set[str],
                          held_out_texts: Iterable[str]) -> list[Sentence]:
    """``sentences`` without the held-out ids and without any line whose :func:`match_key` is held out."""
    held_keys = {match_key(text) for text in held_out_texts}
    held_keys |= {match_key(sentence.text) for sentence in sentences if sentence.sent_id in held_out_ids}
    held_keys.discard("")
    return [sentence for sentence in sentences
            if sentence.sent_id not in held_out_ids and match_key(sentence.text) not in held_keys]


# --------------------------------------------------------------------------- readers and writers of outputs


def write_raw_text(path: Path, sentences: Sequence[Sentence]) -> FileCounts:
    """Write one sentence per line (whitespace normalised); return the counts."""
    lines = [" ".join(sentence.text.split()) for sentence in sentences]
    with atomic_text_writer(path) as handle:
        handle.writelines(line + "\n" for line in lines)
    return FileCounts(sentences=len(lines), tokens=sum(len(line.split()) for line in lines))


def write_conll(path: Path, tagged_sentences: Sequence[TaggedSentence]) -> FileCounts:
    """Write ``token<TAB>TAG`` rows, each sentence followed by a blank line."""
    with atomic_text_writer(path) as handle:
        for sentence in tagged_sentences:
            handle.writelines(f"{token}\t{tag}\n" for token, tag in sentence)
            handle.write("\n")
    return FileCounts(sentences=len(tagged_sentences), tokens=sum(len(sentence) for sentence in tagged_sentences))


def read_conll(path: Path) -> list[list[tuple[str, str]]]:
    """Read a POS file written by :func:`write_conll` back into ``(token, tag)`` sentences."""
    sentences: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for line_number, line in enumerate(read_own_lines(path), start=1):
        if not line:
            if current:
                sentences.append(current)
            current = []
            continue
        token, separator, tag = line.partition("\t")
        if not separator or "\t" in tag:
            raise DataFormatError(f"{path}:{line_number}: expected token<TAB>TAG")
        current.append((token, tag))
    if current:
        sentences.append(current)
    return sentences


def _raw_relpath(lang: str) -> str:
    return f"raw/{lang}.txt"


def _pretrain_relpath(lang: str) -> str:
    return f"pretrain/{lang}.txt"


def _pos_relpath(lang: str, split: str) -> str:
    return f"pos/{lang}/{split}.tsv"


# --------------------------------------------------------------------------- building the outputs


@dataclass(frozen=True)
class Sources:
    """Everything read from the extracted wheels."""

    raw: Mapping[str, list[Sentence]]
    greek: list[Sentence]
    turkish: list[Sentence]
    projection: Projection


def _load_sources(source_dirs: Mapping[str, Path]) -> Sources:
    """Read the extracted source files and project the Greek tags onto English."""
    bible = source_dirs[BIBLE_ALIGNMENTS.name]
    treebank = source_dirs[TURKISH_TREEBANKS.name]
    greek = read_sblgnt(bible / SBLGNT_MEMBER)
    turkish = [sentence for member in TWT_MEMBERS for sentence in read_turkish_conllu(treebank / member)]
    projection = project_tags(read_sblgnt_words(bible / SBLGNT_MEMBER), GREEK_TAG_MAP,
                              read_bsb_tokens(bible / BSB_NT_MEMBER), read_alignments(bible / ALIGNMENT_MEMBER),
                              bible / ALIGNMENT_MEMBER)
    english = read_bsb([bible / BSB_OT_MEMBER, bible / BSB_NT_MEMBER])
    return Sources({LANG_GREEK: greek, LANG_ENGLISH: english, LANG_TURKISH: turkish}, greek, turkish, projection)


@dataclass(frozen=True)
class PosSplits:
    """One language's POS sentences per split, with their ids."""

    ids: Mapping[str, list[str]]
    sentences: Mapping[str, list[TaggedSentence]]

    def held_out_ids(self) -> set[str]:
        return {sent_id for split in HELD_OUT_SPLITS for sent_id in self.ids[split]}

    def held_out_texts(self) -> list[str]:
        return [" ".join(token for token, _ in sentence) for split in HELD_OUT_SPLITS
                for sentence in self.sentences[split]]


def gold_pos_splits(sentences: Sequence[Sentence], tag_map: Mapping[str, str | None]) -> PosSplits:
    """Tag and split one gold-tagged language; sentences left empty by the tag map are skipped."""
    tagged = [(sentence.sent_id, tag_sentence(sentence, tag_map)) for sentence in sentences]
    tagged = [(sent_id, rows) for sent_id, rows in tagged if rows]
    splits = assign_splits([sent_id for sent_id, _ in tagged])
    return PosSplits(ids={split: [tagged[i][0] for i in indices] for split, indices in splits.items()},
                     sentences={split: [tagged[i][1] for i in indices] for split, indices in splits.items()})


def english_pos_splits(projection: Projection, greek: PosSplits) -> tuple[PosSplits, int]:
    """Split the projected English verses like the Greek verses they translate; also the verses left out."""
    greek_split_of = {verse: split for split, verses in greek.ids.items() for verse in verses}
    ids: dict[str, list[str]] = {split: [] for split in SPLITS}
    sentences: dict[str, list[TaggedSentence]] = {split: [] for split in SPLITS}
    unsplittable = 0
    for verse in projection.verses:
        split = split_of_english_verse(verse, greek_split_of)
        if split is None:
            unsplittable += 1
            continue
        ids[split].append(verse.verse)
        sentences[split].append(verse.words)
    return PosSplits(ids, sentences), unsplittable


def english_held_out_ids(projection: Projection, greek: PosSplits) -> set[str]:
    """BSB verse ids that translate a Greek dev/test verse (whether the projection kept them or not)."""
    held_greek = greek.held_out_ids()
    return {verse for verse, greek_verses in projection.translated.items() if greek_verses & held_greek}


def build_outputs(root: Path, source_dirs: Mapping[str, Path], pins: Sequence[WheelPin]) -> dict[str, Any]:
    """Convert extracted sources into raw text, pretraining text and POS splits; write the manifest.

    The manifest is removed first and written last, so a partial rebuild is never
    mistaken for a current one.
    """
    (root / MANIFEST_NAME).unlink(missing_ok=True)
    sources = _load_sources(source_dirs)
    greek = gold_pos_splits(sources.greek, GREEK_TAG_MAP)
    turkish = gold_pos_splits(sources.turkish, TURKISH_TAG_MAP)
    english, unsplittable = english_pos_splits(sources.projection, greek)
    pos = {LANG_ENGLISH: english, LANG_GREEK: greek, LANG_TURKISH: turkish}
    held_out_ids = {
        LANG_GREEK: greek.held_out_ids(),
        LANG_TURKISH: turkish.held_out_ids(),
        LANG_ENGLISH: english_held_out_ids(sources.projection, greek),
    }
    files: dict[str, FileCounts] = {}
    held_out: dict[str, int] = {}
    for lang in RAW_LANGUAGES:
        raw = sources.raw[lang]
        files[_raw_relpath(lang)] = write_raw_text(root / _raw_relpath(lang), raw)
        kept = pretraining_sentences(raw, held_out_ids[lang], pos[lang].held_out_texts())
        files[_pretrain_relpath(lang)] = write_raw_text(root / _pretrain_relpath(lang), kept)
        held_out[lang] = len(raw) - len(kept)
    for lang in POS_LANGUAGES:
        for split in SPLITS:
            files[_pos_relpath(lang, split)] = write_conll(root / _pos_relpath(lang, split), pos[lang].sentences[split])
    projection = {**sources.projection.stats.as_dict(), "verses_spanning_splits_or_without_sblgnt": unsplittable,
                  "verses_per_split": {split: len(english.ids[split]) for split in SPLITS}}
    manifest = _manifest(files, pins, projection, held_out)
    with atomic_text_writer(root / MANIFEST_NAME) as handle:
        handle.write(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


def _manifest(files: Mapping[str, FileCounts], pins: Sequence[WheelPin], projection: Mapping[str, Any],
              held_out: Mapping[str, int]) -> dict[str, Any]:
    """The manifest: format, sources with pins and licences, tag maps, split rule, projection, counts."""
    return {
        "format_version": FORMAT_VERSION,
        "languages": {
            LANG_GREEK: "Koine Greek (SBLGNT, one verse per line; gold POS)",
            LANG_ENGLISH: "English (Berean Standard Bible, one verse per line; silver POS projected from Greek)",
            LANG_TURKISH: "Turkish (Turkish Web Treebank, one sentence per line; gold POS)",
        },
        "sources": {
            pin.name: {
                "version": pin.version,
                "sha256": pin.sha256,
                "licence": pin.licence,
                "homepage": pin.homepage,
                "attribution": pin.attribution,
                "files": list(pin.members),
            }
            for pin in pins
        },
        "tag_maps": {lang: dict(tag_map) for lang, tag_map in TAG_MAPS.items()},
        "split": {"method": "sha256-rank of sentence ids (English: the split of the Greek verse it translates)",
                  "salt": SPLIT_SALT, "fractions": dict(SPLIT_FRACTIONS)},
        "projection": dict(projection),
        "pretraining_held_out_sentences": dict(held_out),
        "files": {rel: {"sentences": c.sentences, "tokens": c.tokens} for rel, c in files.items()},
    }


# --------------------------------------------------------------------------- fetching


def _current_manifest(root: Path, pins: Sequence[WheelPin]) -> dict[str, Any] | None:
    """The manifest under ``root`` if it is current (format, pins) and all its files exist."""
    path = root / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        return None
    recorded = {name: info.get("sha256") for name, info in manifest.get("sources", {}).items()}
    if recorded != {pin.name: pin.sha256 for pin in pins}:
        return None
    if not all((root / rel).is_file() for rel in manifest.get("files", {})):
        return None
    return manifest


def _stderr_reporter(message: str) -> None:
    print(f"[xlint data] {message}", file=sys.stderr, flush=True)


def _silent_reporter(message: str) -> None:
    del message


def fetch_demo_data(
    cache_dir: Path | str | None = None,
    progress: bool = True,
    *,
    force: bool = False,
    pins: Sequence[WheelPin] | None = None,
    downloader: Downloader | None = None,
) -> DemoData:
    """Fetch the pinned demo wheels and prepare raw text, pretraining text and POS splits.

    A second call reuses the extracted sources (sha256 stamp) and the outputs (current
    manifest); ``force`` downloads and converts again. ``pins`` and ``downloader`` exist for tests; by default
    the module's :data:`PINS` are downloaded with :func:`pip_download`. Raises
    :class:`DemoDataError` subclasses with one-line messages.
    """
    root = resolve_cache_dir(cache_dir)
    pins = PINS if pins is None else tuple(pins)
    downloader = pip_download if downloader is None else downloader
    report = _stderr_reporter if progress else _silent_reporter
    manifest = None if force else _current_manifest(root, pins)
    if manifest is not None:
        report(f"demo data up to date in {root}")
        return DemoData.from_manifest(root, manifest)
    source_dirs = {pin.name: ensure_source(root, pin, downloader, report, force=force) for pin in pins}
    started = time.monotonic()
    manifest = build_outputs(root, source_dirs, pins)
    report(f"converted demo data in {time.monotonic() - started:.1f}s")
    return DemoData.from_manifest(root, manifest)

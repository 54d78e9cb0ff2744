"""Pinned, real demo data: Koine Greek, English and Turkish text and POS tags.

Two PyPI wheels are used as plain data containers. They are fetched with
``pip download`` (never installed), checked against a pinned sha256, and only the
needed data files are extracted into the cache:

* ``bible-alignments==0.4.2`` (data CC-BY-4.0, code MIT; Clear Bible / Biblica):
  ``data/sources/SBLGNT.tsv`` -- the SBL Greek New Testament, one word per row
  with a coarse POS tag (7,939 verses, 137,741 words, no punctuation tokens) --
  and ``data/eng/targets/BSB/{ot,nt}_BSB.tsv`` -- the Berean Standard Bible
  (public domain), one token per row, punctuation included.
* ``turkish-treebanks==1.0.0`` (Apache-2.0; Google Research): the Turkish Web
  Treebank, ``data/web.conllu`` (2,541 sentences) and ``data/wiki.conllu``
  (2,310 sentences; a naive count of blank lines gives 2,540 + 2,309 because
  neither file ends with one). Words are split into inflectional groups (IGs).

Output layout under the cache directory (``--cache-dir``, else ``$XLINT_DATA_DIR``,
else ``~/.cache/xlint/data``)::

    sources/<wheel>-<version>/...   extracted data files + sha256 stamp
    raw/grc.txt raw/en.txt raw/tr.txt
    pos/grc/{train,dev,test}.tsv  pos/tr/{train,dev,test}.tsv
    manifest.json

Raw text: UTF-8, one sentence per line. A Greek line is one SBLGNT verse (words
joined by spaces). An English line is one BSB verse, OT then NT in canonical
order, with the source's own spacing of punctuation; Psalm superscriptions are
verse 0 in the BSB files and are kept as their own lines (31,202 lines). A
Turkish line is one treebank sentence with IGs merged back into words, which
reproduces each sentence's ``# text`` exactly.

POS files: two-column CoNLL (``token<TAB>TAG``), each sentence followed by a
blank line, tags from the shared coarse tag set :data:`SHARED_TAGS` (the Google
universal tag set without PUNCT). The per-language maps are
:data:`GREEK_TAG_MAP` and :data:`TURKISH_TAG_MAP`:

* Greek: noun->NOUN, verb->VERB, adj->ADJ, adv->ADV, pron->PRON, det->DET,
  prep->ADP, num->NUM, conj->CONJ, ptcl->PRT, intj->X (the universal tag set
  has no interjection tag; Petrov et al. put interjections under X).
* Turkish: the ten shared tags and X map to themselves; ONOM (onomatopoeia /
  reduplication) and AFFIX -> X; PUNCT tokens are dropped, because Greek has no
  punctuation tokens, so a Greek-trained tagger could never predict PUNCT and
  keeping them would only inflate or distort Greek->Turkish transfer scores.
  Raw Turkish text keeps its punctuation.

Turkish IG merging: a token whose dependency relation is ``ig`` is an
inflectional group continued by the next token (``Açık|la|nma|yan`` ->
``Açıklanmayan``); the word takes the tag of its LAST IG. ``SpaceAfter=No``
alone is not used for merging, since it also glues punctuation (``imkansız.``).

Splits: 80/10/10 train/dev/test per language, fixed and deterministic:
sentences (Greek: verse ids ``BBCCCVVV``; Turkish: ``sent_id``) are ranked by
``sha256(SPLIT_SALT + ":" + id)`` and cut at 80% and 90%; each split keeps the
source order. Verses rather than books are split so that every split covers all
27 books (genre-matched dev/test sets for a small demo).
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    "tag_sentence",
    "assign_splits",
]

# --------------------------------------------------------------------------- constants

LANG_GREEK = "grc"
LANG_ENGLISH = "en"
LANG_TURKISH = "tr"
RAW_LANGUAGES: tuple[str, ...] = (LANG_GREEK, LANG_ENGLISH, LANG_TURKISH)
POS_LANGUAGES: tuple[str, ...] = (LANG_GREEK, LANG_TURKISH)
SPLITS: tuple[str, ...] = ("train", "dev", "test")
SPLIT_FRACTIONS: Mapping[str, float] = {"train": 0.8, "dev": 0.1, "test": 0.1}
SPLIT_SALT = "xlint-demo-split-v1"
FORMAT_VERSION = 1
CACHE_ENV_VAR = "XLINT_DATA_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/xlint/data")
MANIFEST_NAME = "manifest.json"
STAMP_NAME = ".xlint-sha256"

SBLGNT_MEMBER = "data/sources/SBLGNT.tsv"
BSB_OT_MEMBER = "data/eng/targets/BSB/ot_BSB.tsv"
BSB_NT_MEMBER = "data/eng/targets/BSB/nt_BSB.tsv"
TWT_MEMBERS: tuple[str, ...] = ("data/web.conllu", "data/wiki.conllu")


@dataclass(frozen=True)
class WheelPin:
    """A PyPI wheel used only as a container of data files."""

    name: str
    version: str
    sha256: str
    licence: str
    homepage: str
    attribution: str
    members: tuple[str, ...]

    @property
    def requirement(self) -> str:
        """The pip requirement string, e.g. ``bible-alignments==0.4.2``."""
        return f"{self.name}=={self.version}"

    @property
    def dirname(self) -> str:
        """Folder name of the extracted files under ``sources/``."""
        return f"{self.name}-{self.version}"


BIBLE_ALIGNMENTS = WheelPin(
    name="bible-alignments",
    version="0.4.2",
    sha256="84f6b15e706657777824aac811567cb5cb2b38ad2b94497209f5f3c3f67b0984",
    licence="data CC-BY-4.0 (BSB text public domain); code MIT",
    homepage="https://github.com/Clear-Bible/Alignments",
    attribution=(
        "SBLGNT text Copyright 2010 by the Society of Biblical Literature and Logos Bible "
        "Software (CC-BY-4.0); word data derived from Clear Bible's MACULA Greek Linguistic "
        "Datasets, https://github.com/Clear-Bible/macula-greek/ (CC-BY-4.0); Berean Standard "
        "Bible (public domain); packaged as bible-alignments (Bible Word Alignments, "
        "(c) 2022 Clear Bible, Inc.; maintainer Sean Boisen, Biblica)"
    ),
    members=(SBLGNT_MEMBER, BSB_OT_MEMBER, BSB_NT_MEMBER),
)

TURKISH_TREEBANKS = WheelPin(
    name="turkish-treebanks",
    version="1.0.0",
    sha256="5a009c29a8e96e8f7e25059d59ac293c3baead6d746bf0fa4c9d3349b1e37ba0",
    licence="Apache-2.0",
    homepage="https://github.com/google-research-datasets/turkish-treebanks",
    attribution="Turkish Web Treebank (TWT), Google Research, Apache-2.0",
    members=TWT_MEMBERS,
)

PINS: tuple[WheelPin, ...] = (BIBLE_ALIGNMENTS, TURKISH_TREEBANKS)

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

# --------------------------------------------------------------------------- errors


class DemoDataError(RuntimeError):
    """Base class of every error this module raises on purpose (one-line messages)."""


class DownloadError(DemoDataError):
    """pip could not download a pinned wheel (network, index, ...)."""


class ChecksumMismatchError(DemoDataError):
    """A downloaded wheel does not have the pinned sha256."""


class DataFormatError(DemoDataError):
    """A source file does not have the expected format."""


# --------------------------------------------------------------------------- data types


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
            pos={lang: {split: root / _pos_relpath(lang, split) for split in SPLITS} for lang in POS_LANGUAGES},
            manifest_path=root / MANIFEST_NAME,
            counts=counts,
        )


Downloader = Callable[[WheelPin, Path], Path]
Reporter = Callable[[str], None]

# --------------------------------------------------------------------------- source readers


def _read_tsv(path: Path, required: Sequence[str]) -> Iterator[dict[str, str]]:
    """Yield the rows of a headed TSV file (no quoting) as dicts; check the columns."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = [column for column in required if column not in (reader.fieldnames or ())]
        if missing:
            raise DataFormatError(f"{path}: missing column(s) {', '.join(missing)}")
        for row in reader:
            yield {key: value or "" for key, value in row.items() if key is not None}


_SBLGNT_ID = re.compile(r"^n(\d{8})\d{3}$")
_BSB_ID = re.compile(r"^(\d{8})\d{3}$")


def _verse_of(word_id: str, pattern: re.Pattern[str], path: Path) -> str:
    """Return the ``BBCCCVVV`` verse id of a word id, or raise DataFormatError."""
    match = pattern.match(word_id)
    if match is None:
        raise DataFormatError(f"{path}: unexpected word id {word_id!r}")
    return match.group(1)


def read_sblgnt(path: Path) -> list[Sentence]:
    """Read ``SBLGNT.tsv`` into verses with the source ``pos`` tags, in file order."""
    verses: dict[str, list[tuple[str, str]]] = {}
    for row in _read_tsv(path, ("id", "text", "pos")):
        verse = _verse_of(row["id"], _SBLGNT_ID, path)
        verses.setdefault(verse, []).append((row["text"], row["pos"]))
    return [
        Sentence(
            sent_id=verse,
            tokens=tuple(token for token, _ in words),
            tags=tuple(tag for _, tag in words),
            text=" ".join(token for token, _ in words),
        )
        for verse, words in verses.items()
    ]


def read_bsb(paths: Iterable[Path]) -> list[Sentence]:
    """Read BSB target TSV files into verses, keeping the source's punctuation spacing.

    Verses are keyed by the BSB's own verse id (first 8 digits of ``id``); a token is
    followed by a space unless its ``skip_space_after`` column is ``y``.
    """
    verses: dict[str, list[tuple[str, bool]]] = {}
    for path in paths:
        for row in _read_tsv(path, ("id", "text", "skip_space_after")):
            verse = _verse_of(row["id"], _BSB_ID, path)
            verses.setdefault(verse, []).append((row["text"], row["skip_space_after"] == "y"))
    return [
        Sentence(
            sent_id=verse,
            tokens=tuple(token for token, _ in tokens),
            tags=(),
            text=_join_with_spacing(tokens),
        )
        for verse, tokens in verses.items()
    ]


def _join_with_spacing(tokens: Iterable[tuple[str, bool]]) -> str:
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
                text=_join_with_spacing((form, glued) for form, _, glued in words),
            )
        )
    return sentences


# --------------------------------------------------------------------------- conversion


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


def _atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with temp.open("x", encoding="utf-8", newline="\n") as stream:
            stream.write(text)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_raw_text(path: Path, sentences: Sequence[Sentence]) -> FileCounts:
    """Write one sentence per line (whitespace normalised); return the counts."""
    lines = [" ".join(sentence.text.split()) for sentence in sentences]
    _atomic_write_text(path, "".join(line + "\n" for line in lines))
    return FileCounts(sentences=len(lines), tokens=sum(len(line.split()) for line in lines))


def write_conll(path: Path, tagged_sentences: Sequence[Sequence[tuple[str, str]]]) -> FileCounts:
    """Write ``token<TAB>TAG`` rows, each sentence followed by a blank line."""
    blocks = ["".join(f"{token}\t{tag}\n" for token, tag in sentence) + "\n" for sentence in tagged_sentences]
    _atomic_write_text(path, "".join(blocks))
    return FileCounts(sentences=len(blocks), tokens=sum(len(sentence) for sentence in tagged_sentences))


def _raw_relpath(lang: str) -> str:
    return f"raw/{lang}.txt"


def _pos_relpath(lang: str, split: str) -> str:
    return f"pos/{lang}/{split}.tsv"


def _write_pos_splits(
    root: Path, lang: str, sentences: Sequence[Sentence]
) -> dict[str, FileCounts]:
    """Tag, split and write one language's POS files; sentences left empty are skipped."""
    tag_map = TAG_MAPS[lang]
    tagged = [(sentence.sent_id, tag_sentence(sentence, tag_map)) for sentence in sentences]
    tagged = [(sent_id, rows) for sent_id, rows in tagged if rows]
    splits = assign_splits([sent_id for sent_id, _ in tagged])
    return {
        _pos_relpath(lang, split): write_conll(root / _pos_relpath(lang, split), [tagged[i][1] for i in indices])
        for split, indices in splits.items()
    }


def _load_sources(source_dirs: Mapping[str, Path]) -> dict[str, list[Sentence]]:
    """Read the extracted source files into sentences per language code."""
    bible = source_dirs[BIBLE_ALIGNMENTS.name]
    treebank = source_dirs[TURKISH_TREEBANKS.name]
    return {
        LANG_GREEK: read_sblgnt(bible / SBLGNT_MEMBER),
        LANG_ENGLISH: read_bsb([bible / BSB_OT_MEMBER, bible / BSB_NT_MEMBER]),
        LANG_TURKISH: [sentence for member in TWT_MEMBERS for sentence in read_turkish_conllu(treebank / member)],
    }


def build_outputs(root: Path, source_dirs: Mapping[str, Path], pins: Sequence[WheelPin]) -> dict[str, Any]:
    """Convert extracted sources into raw text and POS splits; write and return the manifest.

    The manifest is removed first and written last, so a partial rebuild is never
    mistaken for a current one.
    """
    (root / MANIFEST_NAME).unlink(missing_ok=True)
    sentences = _load_sources(source_dirs)
    files: dict[str, FileCounts] = {}
    for lang in RAW_LANGUAGES:
        files[_raw_relpath(lang)] = write_raw_text(root / _raw_relpath(lang), sentences[lang])
    for lang in POS_LANGUAGES:
        files.update(_write_pos_splits(root, lang, sentences[lang]))
    manifest = _manifest(files, pins)
    _atomic_write_text(root / MANIFEST_NAME, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


def _manifest(files: Mapping[str, FileCounts], pins: Sequence[WheelPin]) -> dict[str, Any]:
    """The manifest: format, sources with pins and licences, tag maps, split rule, counts."""
    return {
        "format_version": FORMAT_VERSION,
        "languages": {
            LANG_GREEK: "Koine Greek (SBLGNT, one verse per line)",
            LANG_ENGLISH: "English (Berean Standard Bible, one verse per line)",
            LANG_TURKISH: "Turkish (Turkish Web Treebank, one sentence per line)",
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
        "split": {"method": "sha256-rank of sentence ids", "salt": SPLIT_SALT, "fractions": dict(SPLIT_FRACTIONS)},
        "files": {rel: {"sentences": c.sentences, "tokens": c.tokens} for rel, c in files.items()},
    }


# --------------------------------------------------------------------------- fetching


def resolve_cache_dir(cache_dir: Path | str | None = None) -> Path:
    """Return the absolute cache dir: the argument, else ``$XLINT_DATA_DIR``, else the default."""
    chosen = cache_dir if cache_dir is not None else os.environ.get(CACHE_ENV_VAR) or DEFAULT_CACHE_DIR
    return Path(chosen).expanduser().absolute()


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_NETWORK_MARKERS = (
    "NewConnectionError", "Failed to establish", "name resolution", "timed out", "ProxyError", "SSLError",
)


def _pip_failure_reason(output: str, returncode: int) -> str:
    """One line saying why pip failed: its last message, plus a hint on network trouble."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    reason = lines[-1] if lines else f"pip exited with status {returncode}"
    if any(marker in output for marker in _NETWORK_MARKERS):
        reason += " (the package index could not be reached: check the network or pip's index settings)"
    return reason


def pip_download(pin: WheelPin, dest: Path) -> Path:
    """Download the pinned wheel (only the wheel, no dependencies) into ``dest`` with pip."""
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", "--retries", "2",
        pin.requirement, "--dest", str(dest),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        reason = _pip_failure_reason(result.stderr or result.stdout or "", result.returncode)
        raise DownloadError(f"could not download {pin.requirement} with pip: {reason}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise DownloadError(f"pip download of {pin.requirement} produced {len(wheels)} wheel files, expected 1")
    return wheels[0]


def verify_checksum(path: Path, pin: WheelPin) -> None:
    """Raise ChecksumMismatchError (after deleting ``path``) unless it has the pinned sha256."""
    actual = sha256_of(path)
    if actual != pin.sha256:
        path.unlink(missing_ok=True)
        raise ChecksumMismatchError(
            f"checksum mismatch for {pin.requirement}: expected sha256 {pin.sha256}, got {actual}; "
            "the downloaded file was deleted"
        )


def _extract_members(wheel: Path, pin: WheelPin, dest: Path) -> None:
    """Extract the pinned data members of ``wheel`` into ``dest``."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        missing = [member for member in pin.members if member not in names]
        if missing:
            raise DataFormatError(f"{pin.requirement}: wheel lacks {', '.join(missing)}")
        for member in pin.members:
            target = dest / member
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as source, target.open("wb") as sink:
                shutil.copyfileobj(source, sink)


def _is_extracted(folder: Path, pin: WheelPin) -> bool:
    """Whether ``folder`` holds a complete extraction of ``pin`` (stamp matches the sha)."""
    stamp = folder / STAMP_NAME
    return (
        stamp.is_file()
        and stamp.read_text(encoding="utf-8").strip() == pin.sha256
        and all((folder / member).is_file() for member in pin.members)
    )


def ensure_source(
    root: Path, pin: WheelPin, downloader: Downloader, report: Reporter, *, force: bool = False
) -> Path:
    """Return ``root/sources/<wheel>-<version>``, downloading and extracting it if needed.

    Work happens in a temporary folder under ``root`` that is renamed into place only
    when complete, so a failure (download, checksum, extraction) leaves nothing behind.
    """
    final = root / "sources" / pin.dirname
    if not force and _is_extracted(final, pin):
        report(f"{pin.requirement}: using cached {final}")
        return final
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        started = time.monotonic()
        (work / "download").mkdir()
        wheel = downloader(pin, work / "download")
        size_mb = wheel.stat().st_size / 1e6
        report(f"{pin.requirement}: downloaded {size_mb:.1f} MB in {time.monotonic() - started:.1f}s")
        verify_checksum(wheel, pin)
        staged = work / "extracted"
        _extract_members(wheel, pin, staged)
        (staged / STAMP_NAME).write_text(pin.sha256 + "\n", encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


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
    """Fetch the pinned demo wheels and prepare raw text and POS splits under the cache dir.

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

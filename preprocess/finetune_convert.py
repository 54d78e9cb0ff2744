"""Official downstream-task downloads -> the fine-tuning layout read by xlint's fairseq tasks.

``xlint data convert FORMAT --corpus CORPUS --out FT [LANG:]SPLIT=PATH ...`` reads
each file with :mod:`.task_formats`, encodes the text exactly as pretraining saw it
(the corpus' normalisation, Moses tokenisation and joint BPE, via :mod:`.encode`),
maps the subwords to the corpus dictionary and writes (atomically: a finished
folder or none)::

    FT/meta.json  FT/dict.txt  FT/<lang>/{train,dev,test}.jsonl

(record layouts: :mod:`xlint.user_dir.data.finetune_data`).  ``SPLIT`` is train, dev
(alias valid) or test.  ``LANG:`` names the language of a file whose records do
not carry one (CoNLL, CoNLL-U, MultiNLI, SQuAD) and selects one language from a
file that mixes several (WikiAnn, XNLI-1.0); TyDiQA ids and MLQA/XQuAD/UD file
names give their language.  A language that the corpus was not preprocessed for
can borrow another's normaliser with ``normalize_as`` (``{"de": "en"}``); the
BPE and the dictionary are shared by all languages anyway.

``--encoder RELEASE`` instead of ``--corpus`` encodes with an XLM-R release's
sentencepiece model and dictionary (:mod:`.encoders`: no normalisation beyond
sentencepiece's, no Moses); meta.json then records ``encoder.family = "roberta"``.
"""
from __future__ import annotations

import multiprocessing
import os
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from .encode import load_text_encoder
from .encoders import SentencePieceEncoder
from .errors import PreprocessError
from .task_formats import NLI_LABELS, FormatError, NliExample, QaExample, TaggedSentence
from .textio import read_json, sha256_file

FORMAT_VERSION = 1  # == xlint.user_dir.data.finetune_data.FORMAT_VERSION (checked by the tests)
SPLIT_ALIASES = {"train": "train", "dev": "dev", "valid": "dev", "validation": "dev", "test": "test"}
_SPEC = re.compile(r"^(?:(?P<lang>[A-Za-z][A-Za-z0-9_-]*):)?(?P<split>[a-z]+)=(?P<path>.+)$")
_WORD = re.compile(r"\S+")
_CHUNK = 500


class ConvertError(PreprocessError):
    """Bad conversion input or option (one line, naming the file or the argument)."""


@dataclass(frozen=True)
class InputSpec:
    """One input file: its split, its path and, if given, its language."""

    lang: str | None
    split: str
    path: Path

    def __str__(self) -> str:
        return f"{self.lang + ':' if self.lang else ''}{self.split}={self.path}"


def parse_input_spec(text: str) -> InputSpec:
    """``[LANG:]SPLIT=PATH`` -> :class:`InputSpec` (SPLIT: train, dev/valid/validation, test)."""
    match = _SPEC.match(text)
    if not match:
        raise ConvertError(f"input {text!r}: expected [LANG:]SPLIT=PATH, e.g. de:train=de_gsd-ud-train.conllu")
    split = SPLIT_ALIASES.get(match["split"])
    if split is None:
        raise ConvertError(f"input {text!r}: unknown split {match['split']!r} (train, dev or test)")
    path = Path(match["path"])
    if not path.is_file():
        raise ConvertError(f"input {text!r}: {path} is not a file")
    return InputSpec(match["lang"], split, path)


# --------------------------------------------------------------------------- encoding


class CorpusEncoder:
    """The pretraining corpus' text pipeline and dictionary, with a per-word cache."""

    def __init__(self, corpus: Path, normalize_as: dict[str, str] | None = None) -> None:
        from fairseq.data import Dictionary

        self.corpus = Path(corpus).resolve()
        metadata_path = self.corpus / "metadata.json"
        if not metadata_path.is_file():
            raise ConvertError(f"--corpus {corpus}: no metadata.json (not an `xlint preprocess` output)")
        self.metadata = read_json(metadata_path)
        self.dict_path = self.corpus / "dict.txt"
        if not self.dict_path.is_file():
            raise ConvertError(f"--corpus {corpus}: no dict.txt")
        self.dictionary = Dictionary.load(str(self.dict_path))
        self.bpe_kind = self.metadata["bpe"]["kind"]
        self.normalize_as = dict(normalize_as or {})
        for lang, target in self.normalize_as.items():
            if target not in self.metadata["languages"]:
                raise ConvertError(f"--normalize-as {lang}={target}: {target} was not preprocessed in {corpus} "
                                   f"(it has {', '.join(self.metadata['languages'])})")
        self._word_cache: dict[tuple[str, str], tuple[list[str], list[int]]] = {}

    def encoder_language(self, lang: str) -> str:
        target = self.normalize_as.get(lang, lang)
        if target not in self.metadata["languages"]:
            raise ConvertError(f"language {lang!r} was not preprocessed in {self.corpus} (it has "
                               f"{', '.join(self.metadata['languages'])}); pass --normalize-as {lang}=<one of them>")
        return target

    def word(self, lang: str, word: str) -> tuple[list[str], list[int]]:
        """Pieces and ids of one word; a word that normalises to nothing is ``<unk>``."""
        key = (lang, word)
        cached = self._word_cache.get(key)
        if cached is None:
            pieces = load_text_encoder(str(self.corpus), self.encoder_language(lang)).encode_word(word)
            ids = [self.dictionary.index(piece) for piece in pieces] or [self.dictionary.unk()]
            cached = (pieces, ids)
            if len(self._word_cache) < 2_000_000:
                self._word_cache[key] = cached
        return cached

    def line(self, lang: str, text: str) -> list[int]:
        pieces = load_text_encoder(str(self.corpus), self.encoder_language(lang)).encode_line(text).split()
        return [self.dictionary.index(piece) for piece in pieces]

    def piece_surface(self, piece: str) -> str:
        if self.bpe_kind == "sentencepiece":
            return piece.replace("\u2581", "")
        return piece[:-2] if piece.endswith("@@") else piece

    def context(self, lang: str, text: str) -> tuple[list[int], list[list[int]]]:
        """Ids of a QA context, word by word, and each subword's character span in ``text``."""
        tokens: list[int] = []
        offsets: list[list[int]] = []
        for match in _WORD.finditer(text):
            pieces, ids = self.word(lang, match.group())
            if not pieces:  # normalised to nothing: one <unk> over the whole word
                offsets.append([match.start(), match.end()])
            else:
                offsets.extend(align_word_pieces(self, match.group(), match.start(), pieces))
            tokens.extend(ids)
        return tokens, offsets

    def describe(self) -> dict[str, Any]:
        """What meta.json records about the encoding."""
        return {"corpus": str(self.corpus), "dictionary_sha256": sha256_file(self.dict_path),
                "bpe": {"kind": self.bpe_kind, "sha256": self.metadata["bpe"].get("sha256")},
                "normalize_as": self.normalize_as}


#: what encodes the text: an xlint corpus' pipeline or an XLM-R release's
TextEncoder = Union[CorpusEncoder, SentencePieceEncoder]


def _example_id(path: Path, line: int | None, fallback: int) -> str:
    return f"{path.name}:{line if line is not None else fallback}"


def encode_tagged(encoder: TextEncoder, sentence: TaggedSentence, lang: str, example_id: str) -> dict[str, Any]:
    tokens: list[int] = []
    starts: list[int] = []
    for word in sentence.tokens:
        starts.append(len(tokens))
        tokens.extend(encoder.word(lang, word)[1])
    return {"id": example_id, "words": list(sentence.tokens), "tags": list(sentence.tags),
            "tokens": tokens, "word_starts": starts}


def encode_nli(encoder: TextEncoder, example: NliExample, lang: str, example_id: str) -> dict[str, Any]:
    return {"id": example_id, "premise": example.premise, "hypothesis": example.hypothesis, "label": example.label,
            "premise_tokens": encoder.line(lang, example.premise),
            "hypothesis_tokens": encoder.line(lang, example.hypothesis)}


def align_word_pieces(encoder: TextEncoder, word: str, word_start: int, pieces: Sequence[str]) -> list[list[int]]:
    """Character spans of a word's pieces: each piece's surface is searched in the word
    from where the previous one ended; a piece that cannot be found (the normaliser
    changed its characters) gets the whole word's span."""
    spans: list[list[int]] = []
    cursor = 0
    for piece in pieces:
        surface = encoder.piece_surface(piece)
        found = word.find(surface, cursor) if surface else -1
        if found < 0:
            spans.append([word_start, word_start + len(word)])
        else:
            spans.append([word_start + found, word_start + found + len(surface)])
            cursor = found + len(surface)
    return spans


def encode_qa(encoder: TextEncoder, example: QaExample, lang: str) -> dict[str, Any]:
    context_tokens, offsets = encoder.context(lang, example.context)
    span = None
    if example.answers:
        start = example.answers[0].answer_start
        end = start + len(example.answers[0].text)
        inside = [i for i, (s, e) in enumerate(offsets) if s < end and e > start]
        if inside:
            span = [inside[0], inside[-1]]
    return {"id": example.id, "question": example.question, "context": example.context,
            "answers": [{"text": a.text, "answer_start": a.answer_start} for a in example.answers],
            "question_tokens": encoder.line(lang, example.question), "context_tokens": context_tokens,
            "context_offsets": offsets, "answer_token_span": span}


# --------------------------------------------------------------------------- parallel encoding

_worker_state: tuple[TextEncoder, Callable] | None = None


def _encode_chunk(chunk: list[tuple[Any, str, str]]) -> list[dict[str, Any]]:
    assert _worker_state is not None
    encoder, function = _worker_state
    return [function(encoder, record, lang, example_id) for record, lang, example_id in chunk]


def _encode_all(encoder: TextEncoder, function: Callable, jobs: list[tuple[Any, str, str]], workers: int,
                progress: Callable[[int], None] | None) -> list[dict[str, Any]]:
    global _worker_state
    _worker_state = (encoder, function)
    chunks = [jobs[i:i + _CHUNK] for i in range(0, len(jobs), _CHUNK)]
    workers = max(1, min(workers, len(chunks)))
    out: list[dict[str, Any]] = []
    try:
        if workers == 1:
            results: Iterable[list[dict[str, Any]]] = (_encode_chunk(chunk) for chunk in chunks)
            for result in results:
                out.extend(result)
                if progress:
                    progress(len(result))
        else:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                for result in pool.imap(_encode_chunk, chunks):
                    out.extend(result)
                    if progress:
                        progress(len(result))
    finally:
        _worker_state = None
    return out


# --------------------------------------------------------------------------- conversion


@dataclass
class ConvertResult:
    out: Path
    meta: dict[str, Any]


def _assign_languages(spec: InputSpec, records: list[Any]) -> list[Any]:
    """Records with their language: ``spec.lang`` fills a missing one and selects from mixed files."""
    kept = []
    for record in records:
        if record.lang is None:
            if spec.lang is None:
                raise ConvertError(f"{spec.path}: the file does not tell its language; write LANG:"
                                   f"{spec.split}={spec.path}")
            record.lang = spec.lang
        if spec.lang is None or record.lang == spec.lang:
            kept.append(record)
    if not kept:
        raise ConvertError(f"{spec.path}: no record of language {spec.lang!r}" if spec.lang else
                           f"{spec.path}: no record")
    return kept


def convert(
    inputs: Sequence[InputSpec],
    *,
    reader: Callable[[Path, str | None], list[Any]],
    task: str,
    kind: str,
    source_format: str,
    corpus: Path | None,
    out: Path,
    encoder_dir: Path | None = None,
    labels: Sequence[str] | None = None,
    languages: Sequence[str] | None = None,
    normalize_as: dict[str, str] | None = None,
    qa_metric: str | None = None,
    force: bool = False,
    workers: int = 1,
    progress: Callable[[str, int], Callable[[int], None] | None] | None = None,
) -> ConvertResult:
    """Read, encode and write a fine-tuning folder (see the module docstring).

    ``reader(path, lang)`` returns records of :mod:`.task_formats`; ``task`` is
    tagging, classification or qa.  ``labels`` fixes the label set (tagging: default
    the sorted union of all tags with ``O`` first; classification: the NLI labels).
    Exactly one of ``corpus`` (an ``xlint preprocess`` output) and ``encoder_dir`` (an XLM-R
    release, :mod:`.encoders`) says how the text is encoded.
    """
    out = Path(out)
    if out.exists() and not force:
        raise ConvertError(f"--out {out} exists; pass --force to replace it")
    if not inputs:
        raise ConvertError("no input: give [LANG:]SPLIT=PATH arguments")
    if (corpus is None) == (encoder_dir is None):
        raise ConvertError("give exactly one of --corpus (an xlint corpus) and --encoder (an XLM-R release)")
    if encoder_dir is not None:
        if normalize_as:
            raise ConvertError("--normalize-as: an XLM-R release normalises every language the same way "
                               "(sentencepiece's NFKC); there is nothing to borrow")
        encoder: TextEncoder = SentencePieceEncoder(encoder_dir)
    else:
        encoder = CorpusEncoder(corpus, normalize_as)
    wanted = set(languages) if languages else None

    # 1. read every file (FormatError names the file and line)
    groups: dict[tuple[str, str], list[tuple[Any, str]]] = {}
    input_records = []
    for spec in inputs:
        records = _assign_languages(spec, reader(spec.path, spec.lang))
        input_records.append({"lang": spec.lang, "split": spec.split, "path": str(spec.path.resolve()),
                              "sha256": sha256_file(spec.path), "records": len(records)})
        for number, record in enumerate(records, start=1):
            if wanted is not None and record.lang not in wanted:
                continue
            example_id = getattr(record, "id", None) or _example_id(spec.path, getattr(record, "line", None), number)
            groups.setdefault((record.lang, spec.split), []).append((record, example_id))
    if not groups:
        raise ConvertError(f"no record left after --languages {','.join(languages or [])}")
    for lang in sorted({lang for lang, _ in groups}):
        encoder.encoder_language(lang)  # fail before encoding anything

    # 2. labels
    if task == "tagging":
        seen = {tag for records in groups.values() for record, _ in records for tag in record.tags}
        if labels is None:
            labels = (["O"] if "O" in seen else []) + sorted(seen - {"O"})
        else:
            unknown = sorted(seen - set(labels))
            if unknown:
                raise ConvertError(f"tags {' '.join(unknown)} are not in the given label set")
    elif task == "classification":
        labels = list(labels or NLI_LABELS)

    # 3. encode (one pool for all files: the per-word caches warm up once)
    function = {"tagging": lambda enc, rec, lang, eid: encode_tagged(enc, rec, lang, eid),
                "classification": lambda enc, rec, lang, eid: encode_nli(enc, rec, lang, eid),
                "qa": lambda enc, rec, lang, eid: encode_qa(enc, rec, lang)}[task]
    keys = list(groups)
    jobs = [(record, lang, example_id) for lang, split in keys for record, example_id in groups[(lang, split)]]
    report = progress("examples", len(jobs)) if progress else None
    flat = _encode_all(encoder, function, jobs, workers, report)
    encoded: dict[tuple[str, str], list[dict[str, Any]]] = {}
    position = 0
    for key in keys:
        encoded[key] = flat[position:position + len(groups[key])]
        position += len(groups[key])

    # 4. write
    splits: dict[str, dict[str, int]] = {}
    for lang, split in encoded:
        splits.setdefault(lang, {})[split] = len(encoded[(lang, split)])
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION, "task": task, "kind": kind, "source_format": source_format,
        **encoder.describe(), "splits": splits, "inputs": input_records,
    }
    if labels is not None:
        meta["labels"] = list(labels)
    if task == "qa":
        meta["qa_metric"] = qa_metric or "squad"
        meta["unlocated_answers"] = {f"{lang}/{split}": sum(r["answer_token_span"] is None for r in recs)
                                     for (lang, split), recs in encoded.items()}
    _write_folder(out, encoder.dict_path, meta, encoded, force)
    return ConvertResult(out, meta)


def _write_folder(out: Path, dict_path: Path, meta: dict[str, Any],
                  encoded: dict[tuple[str, str], list[dict[str, Any]]], force: bool) -> None:
    import json

    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir()
        shutil.copyfile(dict_path, partial / "dict.txt")
        for (lang, split), records in encoded.items():
            (partial / lang).mkdir(exist_ok=True)
            with open(partial / lang / f"{split}.jsonl", "w", encoding="utf-8", newline="\n") as handle:
                for record in records:
                    handle.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        with open(partial / "meta.json", "w", encoding="utf-8", newline="\n") as handle:
            json.dump(meta, handle, indent=2, sort_keys=True, ensure_ascii=False)
            handle.write("\n")
        if out.exists():
            if not force:
                raise ConvertError(f"--out {out} exists; pass --force to replace it")
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(partial, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(partial, out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


# --------------------------------------------------------------------------- readers per format


def reader_for(source_format: str, **options: Any) -> Callable[[Path, str | None], list[Any]]:
    """``reader(path, lang)`` for a ``xlint data convert`` format name."""
    from . import task_formats as tf

    iob = options.get("iob", "strict")
    tag_set = options.get("tag_set")
    if source_format == "wikiann":
        return lambda path, lang: tf.read_wikiann(path, iob=iob, tag_set=tag_set)
    if source_format in ("conll", "demo-pos"):
        return lambda path, lang: tf.read_conll(path, tag_column=options.get("tag_column", -1), lang=lang,
                                                iob=iob, tag_set=tag_set)
    if source_format == "conllu":
        return lambda path, lang: tf.read_conllu(path, column=options.get("column", "UPOS"), lang=lang,
                                                 tag_set=tag_set)
    if source_format == "xnli":
        return lambda path, lang: tf.read_nli_tsv(path, lang=lang)
    if source_format in ("squad", "tydiqa", "mlqa"):
        return lambda path, lang: tf.read_squad_json(path, lang=lang)
    raise ValueError(f"unknown format {source_format!r}")


__all__ = ["ConvertError", "ConvertResult", "CorpusEncoder", "SentencePieceEncoder", "FormatError", "InputSpec",
           "convert", "parse_input_spec", "reader_for", "SPLIT_ALIASES"]

"""Readers (and fixture writers) for the official XTREME downstream-task formats.

Users bring their own downloads; these functions turn them into small typed
records and refuse anything malformed with a :class:`FormatError` whose single
line names the file and the line (or, for SQuAD-style JSON, the question id):

* NER: WikiAnn / PAN-X as distributed by XTREME (``lang:token<TAB>tag``) and
  plain CoNLL (token ... tag columns, ``-DOCSTART-`` skipped) -> :class:`TaggedSentence`.
* POS: Universal Dependencies CoNLL-U (UPOS or XPOS column) -> :class:`TaggedSentence`.
* NLI: XNLI-1.0 dev/test tsv, MultiNLI ``multinli_1.0_train.txt`` and the
  XNLI-MT-1.0 ``premise<TAB>hypo<TAB>label`` files -> :class:`NliExample`.
* QA: SQuAD v1.1, MLQA and TyDiQA-GoldP JSON -> :class:`QaExample`.

Every text file is read as UTF-8 (a leading byte-order mark is dropped); invalid
UTF-8 is a :class:`FormatError` at the line where it occurs.
"""
from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import PreprocessError
from .textio import UTF8_BOM, atomic_text_writer, read_numbered_user_lines

IobPolicy = Literal["strict", "repair", "off"]
"""How tag readers treat IOB2: ``strict`` rejects an ``I-X`` that does not continue
an ``X`` entity, ``repair`` turns it into ``B-X`` (which also converts IOB1 files
such as the original CoNLL-2003 to IOB2), ``off`` accepts any tag string."""

NLI_LABELS = ("entailment", "neutral", "contradiction")
_NLI_LABEL_ALIASES = {"contradictory": "contradiction"}
_NLI_NO_GOLD_LABEL = "-"  # MultiNLI: the annotators did not agree

UPOS_TAGS = frozenset(
    "ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ SYM VERB X".split()
)
"""The 17 universal part-of-speech tags of UD v2 (pass as ``tag_set`` to check UPOS)."""

TYDIQA_LANGUAGES = {
    "arabic": "ar", "bengali": "bn", "english": "en", "finnish": "fi", "indonesian": "id",
    "korean": "ko", "russian": "ru", "swahili": "sw", "telugu": "te",
}
"""TyDiQA question ids start with the language's English name (``arabic-1234...``)."""

_IOB2_TAG = re.compile(r"[BI]-\S+")
_WIKIANN_LANG = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_CONLLU_WORD_ID = re.compile(r"[1-9][0-9]*")
_CONLLU_RANGE_ID = re.compile(r"[1-9][0-9]*-[1-9][0-9]*")
_CONLLU_EMPTY_NODE_ID = re.compile(r"[0-9]+\.[1-9][0-9]*")
_CONLLU_COLUMNS = ("ID", "FORM", "LEMMA", "UPOS", "XPOS", "FEATS", "HEAD", "DEPREL", "DEPS", "MISC")
_UD_FILE_NAME = re.compile(r"([a-z]{2,3})_[a-z0-9]+-ud-[a-z]+\.conllu")
_MLQA_FILE_NAME = re.compile(r"context-([a-z]{2})-question-[a-z]{2}")
_XQUAD_FILE_NAME = re.compile(r"xquad\.([a-z]{2})\.json")
_XNLI_MT_FILE_NAME = re.compile(r".*\.([a-z]{2})\.tsv")


class FormatError(PreprocessError, ValueError):
    """A downloaded task file that does not follow its official format.

    The message is one line, ``FILE:LINE: problem`` for text formats and
    ``FILE: question ID: problem`` for SQuAD-style JSON; the parts are also kept
    as the attributes ``path``, ``line`` and ``question_id``.
    """

    def __init__(self, path: Path | str, problem: str, *, line: int | None = None,
                 question_id: str | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.question_id = question_id
        if line is not None:
            where = f"{path}:{line}"
        elif question_id is not None:
            where = f"{path}: question {question_id!r}"
        else:
            where = f"{path}"
        super().__init__(" ".join(f"{where}: {problem}".splitlines()))


# --------------------------------------------------------------------------- records


@dataclass
class TaggedSentence:
    """One sentence of a tagging task: a tag per token, and its language when known."""

    tokens: list[str]
    tags: list[str]
    lang: str | None = None
    line: int | None = field(default=None, compare=False)
    """Line of the file where the sentence starts (not compared)."""


@dataclass
class NliExample:
    """One premise/hypothesis pair; ``label`` is one of :data:`NLI_LABELS`."""

    premise: str
    hypothesis: str
    label: str
    lang: str | None = None
    line: int | None = field(default=None, compare=False)


@dataclass
class QaAnswer:
    """A gold answer: its text and the character offset where it starts in the context."""

    text: str
    answer_start: int


@dataclass
class QaExample:
    """One extractive question with its context and gold answers (SQuAD v1.1 layout)."""

    id: str
    context: str
    question: str
    answers: list[QaAnswer]
    lang: str | None = None


# --------------------------------------------------------------------------- reading text


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise FormatError(path, f"cannot read the file ({error.strerror})") from None


def _numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, text)`` for each line of a UTF-8 file, without its line ending."""
    try:
        lines = read_numbered_user_lines(path, error=lambda file, line, problem: FormatError(file, problem, line=line))
        yield from lines
    except OSError as error:
        raise FormatError(path, f"cannot read the file ({error.strerror})") from None


def _blocks(lines: Iterable[tuple[int, str]]) -> Iterator[list[tuple[int, str]]]:
    """Group numbered lines into blocks separated by blank (whitespace-only) lines."""
    block: list[tuple[int, str]] = []
    for number, text in lines:
        if text.strip():
            block.append((number, text))
        elif block:
            yield block
            block = []
    if block:
        yield block


# --------------------------------------------------------------------------- tag checks


def _checked_iob2(path: Path, tags: list[str], lines: list[int], policy: IobPolicy) -> list[str]:
    """Validate (or repair) one sentence's IOB2 tags according to ``policy``."""
    if policy == "off":
        return tags
    checked: list[str] = []
    previous = "O"
    for tag, line in zip(tags, lines):
        if tag != "O" and not _IOB2_TAG.fullmatch(tag):
            raise FormatError(path, f"tag {tag!r} is not an IOB2 tag (O, B-TYPE or I-TYPE)", line=line)
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            if policy == "strict":
                raise FormatError(
                    path,
                    f"invalid IOB2 transition {previous!r} -> {tag!r} "
                    f"({tag} must follow B-{tag[2:]} or {tag}; iob='repair' turns it into B-{tag[2:]})",
                    line=line,
                )
            tag = "B-" + tag[2:]
        checked.append(tag)
        previous = tag
    return checked


def _check_tag_set(path: Path, tag: str, line: int, tag_set: Collection[str] | None) -> None:
    if tag_set is not None and tag not in tag_set:
        raise FormatError(path, f"tag {tag!r} is not in the tag set ({' '.join(sorted(tag_set))})", line=line)


# --------------------------------------------------------------------------- NER readers


def _wikiann_token(path: Path, line: int, text: str) -> tuple[str, str, str]:
    """Split one ``lang:token<TAB>tag`` line into ``(lang, token, tag)``."""
    fields = text.split("\t")
    if len(fields) != 2:
        raise FormatError(path, f"expected 2 tab-separated columns (lang:token, tag), found {len(fields)}",
                          line=line)
    prefixed, tag = fields
    lang, colon, token = prefixed.partition(":")
    if not colon or not _WIKIANN_LANG.fullmatch(lang):
        raise FormatError(path, f"token {prefixed!r} lacks the 'lang:' prefix of WikiAnn/PAN-X", line=line)
    if not token or not tag:
        raise FormatError(path, "empty token or tag", line=line)
    return lang, token, tag


def read_wikiann(path: Path | str, *, iob: IobPolicy = "strict",
                 tag_set: Collection[str] | None = None) -> list[TaggedSentence]:
    """Read WikiAnn / PAN-X as distributed by XTREME: ``lang:token<TAB>tag`` lines.

    Sentences are separated by blank lines; the ``lang:`` prefix (split at the
    first colon, so the token ``en::`` is ``:``) is removed from every token and
    becomes the sentence's language, which must be the same for all its tokens.
    """
    path = Path(path)
    sentences = []
    for block in _blocks(_numbered_lines(path)):
        parsed = [_wikiann_token(path, number, text) for number, text in block]
        languages = {lang for lang, _, _ in parsed}
        if len(languages) > 1:
            raise FormatError(path, f"sentence mixes languages {' '.join(sorted(languages))}", line=block[0][0])
        sentences.append(_tagged_sentence(
            path, [token for _, token, _ in parsed], [tag for _, _, tag in parsed],
            [number for number, _ in block], lang=parsed[0][0], iob=iob, tag_set=tag_set,
        ))
    return sentences


def _tagged_sentence(path: Path, tokens: list[str], tags: list[str], lines: list[int], *,
                     lang: str | None, iob: IobPolicy, tag_set: Collection[str] | None,
                     first_line: int | None = None) -> TaggedSentence:
    """Check the tags of one parsed sentence (``lines``: each token's line) and build its record."""
    for tag, line in zip(tags, lines):
        _check_tag_set(path, tag, line, tag_set)
    return TaggedSentence(tokens, _checked_iob2(path, tags, lines, iob), lang,
                          line=first_line if first_line is not None else lines[0])


def read_conll(path: Path | str, *, tag_column: int = -1, delimiter: str | None = None,
               lang: str | None = None, iob: IobPolicy = "strict",
               tag_set: Collection[str] | None = None) -> list[TaggedSentence]:
    """Read plain CoNLL (2002/2003 style): the token first, the tag in ``tag_column``.

    Columns are split on ``delimiter`` (default: any whitespace); every token line
    of the file must have the same number of columns, at least two.  Lines whose
    first column is ``-DOCSTART-`` are skipped.  The original CoNLL-2003 files
    are IOB1: read them with ``iob="repair"`` to get IOB2.
    """
    path = Path(path)
    first_row: tuple[int, int] | None = None  # (line, number of columns) of the first token line
    sentences = []
    for block in _blocks(_numbered_lines(path)):
        rows = [(number, text.split(delimiter)) for number, text in block]
        rows = [(number, columns) for number, columns in rows if columns[0] != "-DOCSTART-"]
        for number, columns in rows:
            first_row = first_row or (number, len(columns))
            _check_conll_columns(path, number, len(columns), first_row, tag_column)
        if rows:
            sentences.append(_tagged_sentence(
                path, [columns[0] for _, columns in rows], [columns[tag_column] for _, columns in rows],
                [number for number, _ in rows], lang=lang, iob=iob, tag_set=tag_set,
            ))
    return sentences


def _check_conll_columns(path: Path, line: int, width: int, first_row: tuple[int, int], tag_column: int) -> None:
    """A CoNLL token line needs 2+ columns, as many as the file's first token line, incl. ``tag_column``."""
    first_line, first_width = first_row
    if width < 2:
        raise FormatError(path, f"expected at least 2 columns (token ... tag), found {width}", line=line)
    if width != first_width:
        raise FormatError(path, f"expected {first_width} columns like line {first_line}, found {width}", line=line)
    if not -width <= tag_column < width:
        raise FormatError(path, f"tag column {tag_column} does not exist in {width} columns", line=line)


# --------------------------------------------------------------------------- UD reader


def infer_ud_language(path: Path | str) -> str | None:
    """The language code of a UD treebank file named like ``en_ewt-ud-dev.conllu``, else ``None``."""
    match = _UD_FILE_NAME.fullmatch(Path(path).name)
    return match.group(1) if match else None


def read_conllu(path: Path | str, *, column: Literal["upos", "xpos"] = "upos", lang: str | None = None,
                tag_set: Collection[str] | None = None) -> list[TaggedSentence]:
    """Read a Universal Dependencies CoNLL-U file as (FORM, UPOS) sentences.

    Every non-comment line needs the 10 tab-separated CoNLL-U columns.  Comment
    lines (``#``), multiword-token ranges (``1-2``) and empty nodes (``8.1``) are
    skipped; word ids must run 1, 2, 3, ... within a sentence.  ``lang`` defaults
    to the code in a UD file name (``de_gsd-ud-test.conllu`` -> ``de``).
    """
    path = Path(path)
    tag_index = _CONLLU_COLUMNS.index(column.upper())
    lang = lang if lang is not None else infer_ud_language(path)
    sentences = []
    for block in _blocks(_numbered_lines(path)):
        words: list[tuple[int, list[str]]] = []
        for number, text in block:
            if text.startswith("#"):
                continue
            columns = text.split("\t")
            if len(columns) != len(_CONLLU_COLUMNS):
                raise FormatError(path, f"expected 10 tab-separated CoNLL-U columns, found {len(columns)}",
                                  line=number)
            word_id = columns[0]
            if _CONLLU_RANGE_ID.fullmatch(word_id) or _CONLLU_EMPTY_NODE_ID.fullmatch(word_id):
                continue
            if not _CONLLU_WORD_ID.fullmatch(word_id):
                raise FormatError(path, f"invalid CoNLL-U token id {word_id!r}", line=number)
            if int(word_id) != len(words) + 1:
                raise FormatError(path, f"token id {word_id} where {len(words) + 1} was expected", line=number)
            words.append((number, columns))
        if words:
            sentences.append(_tagged_sentence(
                path, [columns[1] for _, columns in words], [columns[tag_index] for _, columns in words],
                [number for number, _ in words], lang=lang, iob="off", tag_set=tag_set, first_line=block[0][0],
            ))
    return sentences


# --------------------------------------------------------------------------- NLI reader


@dataclass(frozen=True)
class _NliLayout:
    name: str
    premise: str
    hypothesis: str
    label: str
    language: str | None

    def required(self) -> tuple[str, ...]:
        columns = (self.premise, self.hypothesis, self.label)
        return columns + ((self.language,) if self.language else ())


_NLI_LAYOUTS = (
    _NliLayout("XNLI-1.0", "sentence1", "sentence2", "gold_label", "language"),
    _NliLayout("MultiNLI", "sentence1", "sentence2", "gold_label", None),
    _NliLayout("XNLI-MT-1.0", "premise", "hypo", "label", None),
)


def _nli_layout(path: Path, line: int, header: list[str]) -> _NliLayout:
    for layout in _NLI_LAYOUTS:
        if all(column in header for column in layout.required()):
            return layout
    raise FormatError(path, "unrecognised NLI header: expected XNLI-1.0 (language, gold_label, sentence1, "
                            "sentence2, ...), MultiNLI (gold_label, ..., sentence1, sentence2, ...) "
                            "or XNLI-MT-1.0 (premise, hypo, label)", line=line)


def _nli_label(path: Path, line: int, raw: str) -> str | None:
    """The canonical label of ``raw``, ``None`` for MultiNLI's no-consensus ``-``."""
    label = _NLI_LABEL_ALIASES.get(raw.strip(), raw.strip())
    if label == _NLI_NO_GOLD_LABEL:
        return None
    if label not in NLI_LABELS:
        raise FormatError(path, f"unknown NLI label {raw!r} (expected {', '.join(NLI_LABELS)})", line=line)
    return label


def read_nli_tsv(path: Path | str, *, lang: str | None = None,
                 skip_unlabelled: bool = True) -> list[NliExample]:
    """Read an XNLI-1.0 dev/test tsv, MultiNLI's ``multinli_1.0_train.txt`` or an XNLI-MT-1.0 tsv.

    The layout is recognised from the header line.  Fields are split on tabs only
    (quotes are text).  A row may leave out trailing columns the reader does not
    need but never has more fields than the header.  ``contradictory`` (XNLI-MT)
    becomes ``contradiction``; rows without a gold label (``-``) are skipped
    unless ``skip_unlabelled`` is false, when they are an error.  The language is
    the ``language`` column for XNLI-1.0, else ``lang``, else ``en`` for MultiNLI
    or the code in an XNLI-MT file name (``multinli.train.de.tsv`` -> ``de``).
    """
    path = Path(path)
    lines = (item for item in _numbered_lines(path) if item[1].strip())
    first = next(lines, None)
    if first is None:
        raise FormatError(path, "empty file: expected a header line", line=1)
    header_line, header_text = first
    header = header_text.split("\t")
    layout = _nli_layout(path, header_line, header)
    index = {column: header.index(column) for column in layout.required()}
    needed = max(index.values()) + 1
    default_lang = lang if lang is not None else _default_nli_language(path, layout)
    examples = []
    for number, text in lines:
        fields = text.split("\t")
        if not needed <= len(fields) <= len(header):
            raise FormatError(path, f"expected {len(header)} tab-separated columns ({layout.name}), "
                                    f"found {len(fields)}", line=number)
        label = _nli_label(path, number, fields[index[layout.label]])
        if label is None:
            if skip_unlabelled:
                continue
            raise FormatError(path, "row has no gold label", line=number)
        row_lang = fields[index[layout.language]] if layout.language else default_lang
        examples.append(NliExample(fields[index[layout.premise]], fields[index[layout.hypothesis]], label,
                                   row_lang, line=number))
    return examples


def _default_nli_language(path: Path, layout: _NliLayout) -> str | None:
    if layout.name == "MultiNLI":
        return "en"
    match = _XNLI_MT_FILE_NAME.fullmatch(path.name)
    return match.group(1) if match else None


# --------------------------------------------------------------------------- QA reader


def _load_json(path: Path) -> Any:
    """Parse a UTF-8 JSON file; bad bytes or syntax are reported with their line."""
    data = _read_bytes(path)
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise FormatError(path, f"invalid UTF-8 ({error.reason})",
                          line=data[:error.start].count(b"\n") + 1) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise FormatError(path, f"invalid JSON ({error.msg}, column {error.colno})", line=error.lineno) from None


_JSON_TYPE_NAMES = {dict: "object", list: "array", str: "string", int: "integer"}


def _expect(path: Path, value: Any, kind: type, what: str, question_id: str | None = None) -> Any:
    """Return ``value`` if it is a ``kind`` (``bool`` never counts as ``int``), else raise."""
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise FormatError(path, f"{what} should be a JSON {_JSON_TYPE_NAMES[kind]}", question_id=question_id)
    return value


def infer_qa_language(path: Path | str, question_id: str = "") -> str | None:
    """The language of a QA file or question from its conventional name, else ``None``.

    MLQA ``*-context-de-question-en.json`` -> ``de`` (the context, i.e. answer,
    language), XQuAD ``xquad.de.json`` -> ``de``, and TyDiQA ids ``arabic-...`` -> ``ar``.
    """
    name = Path(path).name
    for pattern in (_MLQA_FILE_NAME, _XQUAD_FILE_NAME):
        match = pattern.search(name)
        if match:
            return match.group(1)
    return TYDIQA_LANGUAGES.get(question_id.split("-", 1)[0])


def _qa_answers(path: Path, qa: dict, question_id: str, context: str, *, check_spans: bool,
                require_answers: bool) -> list[QaAnswer]:
    raw_answers = _expect(path, qa.get("answers", []), list, "'answers'", question_id)
    if require_answers and not raw_answers:
        raise FormatError(path, "has no gold answer", question_id=question_id)
    answers = []
    for raw in raw_answers:
        raw = _expect(path, raw, dict, "an answer", question_id)
        text = _expect(path, raw.get("text"), str, "answer 'text'", question_id)
        start = _expect(path, raw.get("answer_start"), int, "'answer_start'", question_id)
        if not text:
            raise FormatError(path, "has an empty answer text", question_id=question_id)
        found = context[start:start + len(text)] if start >= 0 else ""
        if check_spans and found != text:
            raise FormatError(path, f"answer {text!r} does not match the context at answer_start {start} "
                                    f"(found {found!r})", question_id=question_id)
        answers.append(QaAnswer(text, start))
    return answers


def read_squad_json(path: Path | str, *, lang: str | None = None, check_spans: bool = True,
                    require_answers: bool = True) -> list[QaExample]:
    """Read SQuAD v1.1-layout JSON: SQuAD, XQuAD, MLQA and TyDiQA-GoldP files.

    Layout: ``{"data": [{"paragraphs": [{"context", "qas": [{"id", "question",
    "answers": [{"text", "answer_start"}]}]}]}]}`` (a bare list of articles is
    accepted too).  With ``check_spans`` every answer must satisfy
    ``context[answer_start:answer_start + len(text)] == text``; with
    ``require_answers`` every question needs at least one answer.  Question ids
    must be unique.  ``lang`` defaults to :func:`infer_qa_language`.
    """
    path = Path(path)
    document = _load_json(path)
    articles = document.get("data") if isinstance(document, dict) else document
    articles = _expect(path, articles, list, "the top level ('data')")
    examples: list[QaExample] = []
    seen: set[str] = set()
    for article_number, article in enumerate(articles):
        where = f"data[{article_number}]"
        article = _expect(path, article, dict, where)
        for paragraph_number, paragraph in enumerate(_expect(path, article.get("paragraphs"), list,
                                                             f"{where}.paragraphs")):
            where = f"data[{article_number}].paragraphs[{paragraph_number}]"
            paragraph = _expect(path, paragraph, dict, where)
            context = _expect(path, paragraph.get("context"), str, f"{where}.context")
            for qa_number, qa in enumerate(_expect(path, paragraph.get("qas"), list, f"{where}.qas")):
                qa = _expect(path, qa, dict, f"{where}.qas[{qa_number}]")
                question_id = _expect(path, qa.get("id"), str, f"the id of {where}.qas[{qa_number}]")
                if question_id in seen:
                    raise FormatError(path, "duplicate question id", question_id=question_id)
                seen.add(question_id)
                question = _expect(path, qa.get("question"), str, "'question'", question_id)
                answers = _qa_answers(path, qa, question_id, context, check_spans=check_spans,
                                      require_answers=require_answers)
                question_lang = lang if lang is not None else infer_qa_language(path, question_id)
                examples.append(QaExample(question_id, context, question, answers, question_lang))
    return examples


# --------------------------------------------------------------------------- grouping


def group_by_language(records: Iterable[Any]) -> dict[str | None, list[Any]]:
    """Records (anything with a ``lang`` attribute) grouped by language, in first-seen order."""
    groups: dict[str | None, list[Any]] = {}
    for record in records:
        groups.setdefault(record.lang, []).append(record)
    return groups


# --------------------------------------------------------------------------- writers


_LINE_BREAKS_AND_TABS = "\t\n\r"
_WHITESPACE = " " + _LINE_BREAKS_AND_TABS


def _field(value: str, what: str, forbidden: str = _LINE_BREAKS_AND_TABS) -> str:
    """``value`` if it can be written as one field (no character of ``forbidden``), else ValueError."""
    if not value or any(character in value for character in forbidden):
        raise ValueError(f"{what} {value!r} cannot be written as one field")
    return value


def write_wikiann(path: Path | str, sentences: Iterable[TaggedSentence]) -> None:
    """Write sentences as WikiAnn / PAN-X (``lang:token<TAB>tag``); each needs a ``lang``."""
    with atomic_text_writer(Path(path)) as handle:
        for sentence in sentences:
            lang = _field(sentence.lang or "", "language")
            for token, tag in zip(sentence.tokens, sentence.tags, strict=True):
                handle.write(f"{lang}:{_field(token, 'token')}\t{_field(tag, 'tag')}\n")
            handle.write("\n")


def write_conll(path: Path | str, sentences: Iterable[TaggedSentence]) -> None:
    """Write sentences as two-column CoNLL (``token<TAB>tag``, blank line between sentences)."""
    with atomic_text_writer(Path(path)) as handle:
        for sentence in sentences:
            for token, tag in zip(sentence.tokens, sentence.tags, strict=True):
                handle.write(f"{_field(token, 'token', _WHITESPACE)}\t{_field(tag, 'tag')}\n")
            handle.write("\n")


def write_conllu(path: Path | str, sentences: Iterable[TaggedSentence]) -> None:
    """Write sentences as minimal CoNLL-U: ID, FORM and UPOS filled, the other columns ``_``."""
    with atomic_text_writer(Path(path)) as handle:
        for number, sentence in enumerate(sentences, start=1):
            handle.write(f"# sent_id = {number}\n# text = {' '.join(sentence.tokens)}\n")
            for word_id, (token, tag) in enumerate(zip(sentence.tokens, sentence.tags, strict=True), start=1):
                columns = [str(word_id), _field(token, "token"), "_", _field(tag, "tag")] + ["_"] * 6
                handle.write("\t".join(columns) + "\n")
            handle.write("\n")


def write_nli_tsv(path: Path | str, examples: Iterable[NliExample]) -> None:
    """Write NLI pairs as an XNLI-1.0-style tsv with the columns the reader needs."""
    with atomic_text_writer(Path(path)) as handle:
        handle.write("language\tgold_label\tsentence1\tsentence2\n")
        for example in examples:
            columns = [example.lang or "", example.label, example.premise, example.hypothesis]
            handle.write("\t".join(_field(value, "NLI field") for value in columns) + "\n")


def write_squad_json(path: Path | str, examples: Sequence[QaExample]) -> None:
    """Write QA examples as SQuAD v1.1 JSON, one paragraph per run of examples sharing a context."""
    paragraphs: list[dict[str, Any]] = []
    for example in examples:
        if not paragraphs or paragraphs[-1]["context"] != example.context:
            paragraphs.append({"context": example.context, "qas": []})
        answers = [{"text": answer.text, "answer_start": answer.answer_start} for answer in example.answers]
        paragraphs[-1]["qas"].append({"id": example.id, "question": example.question, "answers": answers})
    document = {"version": "1.1", "data": [{"title": "", "paragraphs": paragraphs}]}
    with atomic_text_writer(Path(path)) as handle:
        json.dump(document, handle, ensure_ascii=False, indent=1)
        handle.write("\n")

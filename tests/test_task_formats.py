"""Readers of the official XTREME task formats: fixtures in each format, malformed files, writers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from xlint.preprocess.errors import PreprocessError
from xlint.preprocess.task_formats import (
    UPOS_TAGS,
    FormatError,
    NliExample,
    QaAnswer,
    QaExample,
    TaggedSentence,
    group_by_language,
    infer_qa_language,
    read_conll,
    read_conllu,
    read_nli_tsv,
    read_squad_json,
    read_wikiann,
    write_conll,
    write_conllu,
    write_nli_tsv,
    write_squad_json,
    write_wikiann,
)

FIXTURES = Path(__file__).parent / "fixtures" / "formats"


def write_text(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def assert_format_error(error: pytest.ExceptionInfo[FormatError], path: Path, line: int, fragment: str) -> None:
    """The message is one line that starts with FILE:LINE and mentions ``fragment``."""
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:{line}: "), message
    assert fragment in message
    assert error.value.line == line


# --------------------------------------------------------------------------- WikiAnn / PAN-X


def test_wikiann_strips_language_prefix() -> None:
    sentences = read_wikiann(FIXTURES / "panx-de-dev.tsv")
    assert sentences == [
        TaggedSentence(["Die", "Universität", "Heidelberg", "liegt", "in", "Baden-Württemberg", "."],
                       ["O", "B-ORG", "I-ORG", "O", "O", "B-LOC", "O"], "de"),
        TaggedSentence(["Angela", "Merkel", ":", "Berlin", ",", "Paris"],
                       ["B-PER", "I-PER", "O", "B-LOC", "O", "B-LOC"], "de"),
    ]
    assert [sentence.line for sentence in sentences] == [1, 9]


def test_wikiann_bad_column_count(tmp_path: Path) -> None:
    path = write_text(tmp_path, "bad.tsv", "en:Paris\tB-LOC\nen:is\tO\textra\n")
    with pytest.raises(FormatError) as error:
        read_wikiann(path)
    assert_format_error(error, path, 2, "expected 2 tab-separated columns")


def test_wikiann_missing_prefix(tmp_path: Path) -> None:
    path = write_text(tmp_path, "bad.tsv", "en:Paris\tB-LOC\n\nLondon\tB-LOC\n")
    with pytest.raises(FormatError) as error:
        read_wikiann(path)
    assert_format_error(error, path, 3, "'lang:' prefix")


def test_wikiann_mixed_languages_in_sentence(tmp_path: Path) -> None:
    path = write_text(tmp_path, "bad.tsv", "\nen:Paris\tB-LOC\nfr:est\tO\n")
    with pytest.raises(FormatError) as error:
        read_wikiann(path)
    assert_format_error(error, path, 2, "mixes languages en fr")


def test_invalid_iob_transition_is_an_error_by_default(tmp_path: Path) -> None:
    path = write_text(tmp_path, "bad.tsv", "en:New\tB-LOC\nen:York\tI-LOC\nen:Smith\tI-PER\n")
    with pytest.raises(FormatError) as error:
        read_wikiann(path)
    assert_format_error(error, path, 3, "invalid IOB2 transition 'I-LOC' -> 'I-PER'")


def test_iob_repair_turns_dangling_inside_tags_into_begin(tmp_path: Path) -> None:
    path = write_text(tmp_path, "bad.tsv", "en:New\tB-LOC\nen:Smith\tI-PER\nen:Jones\tI-PER\nen:x\tO\nen:UN\tI-ORG\n")
    [sentence] = read_wikiann(path, iob="repair")
    assert sentence.tags == ["B-LOC", "B-PER", "I-PER", "O", "B-ORG"]
    [unchecked] = read_wikiann(path, iob="off")
    assert unchecked.tags == ["B-LOC", "I-PER", "I-PER", "O", "I-ORG"]


def test_tag_that_is_not_iob2(tmp_path: Path) -> None:
    path = write_text(tmp_path, "bad.tsv", "en:Paris\tLOC\n")
    with pytest.raises(FormatError) as error:
        read_wikiann(path)
    assert_format_error(error, path, 1, "not an IOB2 tag")


def test_tag_outside_the_tag_set(tmp_path: Path) -> None:
    path = write_text(tmp_path, "bad.tsv", "en:Paris\tB-LOC\n\nen:Apple\tB-MISC\n")
    with pytest.raises(FormatError) as error:
        read_wikiann(path, tag_set={"O", "B-LOC", "I-LOC", "B-PER", "I-PER", "B-ORG", "I-ORG"})
    assert_format_error(error, path, 3, "'B-MISC' is not in the tag set")


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.tsv"
    path.write_bytes("en:Paris\tB-LOC\n\nde:M\u00fcnchen\tB-LOC\n".encode("latin-1"))
    with pytest.raises(FormatError) as error:
        read_wikiann(path)
    assert_format_error(error, path, 3, "invalid UTF-8")


def test_byte_order_mark_and_crlf_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.tsv"
    path.write_bytes(b"\xef\xbb\xbfen:Paris\tB-LOC\r\nen:.\tO\r\n\r\n")
    assert read_wikiann(path) == [TaggedSentence(["Paris", "."], ["B-LOC", "O"], "en")]


def test_missing_file_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="cannot read the file"):
        read_wikiann(tmp_path / "absent.tsv")


def test_format_error_is_a_value_error_and_a_preprocess_error() -> None:
    assert issubclass(FormatError, ValueError)
    assert issubclass(FormatError, PreprocessError)


# --------------------------------------------------------------------------- plain CoNLL


def test_conll2003_iob1_needs_repair() -> None:
    path = FIXTURES / "conll2003-iob1.txt"
    with pytest.raises(FormatError) as error:
        read_conll(path)
    assert_format_error(error, path, 3, "'O' -> 'I-ORG'")
    sentences = read_conll(path, iob="repair", lang="en")
    assert [sentence.tokens[0] for sentence in sentences] == ["EU", "Peter", "BRUSSELS"]
    assert sentences[0].tags == ["B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"]
    assert sentences[1].tags == ["B-PER", "I-PER"]
    assert sentences[2].tags == ["B-LOC", "O"]
    assert {sentence.lang for sentence in sentences} == {"en"}
    assert [sentence.line for sentence in sentences] == [3, 13, 18]


def test_conll_other_tag_column() -> None:
    sentences = read_conll(FIXTURES / "conll2003-iob1.txt", tag_column=1, iob="off")
    assert sentences[1].tags == ["NNP", "NNP"]


def test_conll_two_columns() -> None:
    sentences = read_conll(FIXTURES / "esp.testa")
    assert sentences[0].tags[:2] == ["B-LOC", "I-LOC"]
    assert sentences[1].tokens == ["El", "Abogado", "General", "del", "Estado"]


def test_conll_inconsistent_column_count(tmp_path: Path) -> None:
    path = write_text(tmp_path, "bad.conll", "EU NNP B-ORG\nrejects VBZ O\n\nGerman B-MISC\n")
    with pytest.raises(FormatError) as error:
        read_conll(path)
    assert_format_error(error, path, 4, "expected 3 columns like line 1, found 2")


def test_conll_single_column(tmp_path: Path) -> None:
    path = write_text(tmp_path, "bad.conll", "EU\n")
    with pytest.raises(FormatError) as error:
        read_conll(path)
    assert_format_error(error, path, 1, "at least 2 columns")


# --------------------------------------------------------------------------- CoNLL-U


def test_conllu_skips_comments_multiword_ranges_and_empty_nodes() -> None:
    sentences = read_conllu(FIXTURES / "fr_gsd-ud-dev.conllu", tag_set=UPOS_TAGS)
    assert sentences == [
        TaggedSentence(["Le", "chat", "de", "le", "voisin", "dort", "."],
                       ["DET", "NOUN", "ADP", "DET", "NOUN", "VERB", "PUNCT"], "fr"),
        TaggedSentence(["Marie", "mange", "et", "Paul", "aussi", "."],
                       ["PROPN", "VERB", "CCONJ", "PROPN", "ADV", "PUNCT"], "fr"),
    ]
    assert [sentence.line for sentence in sentences] == [1, 13]


def test_conllu_explicit_language_and_xpos(tmp_path: Path) -> None:
    path = write_text(tmp_path, "sample.conllu", "1\tHallo\thallo\tINTJ\tITJ\t_\t0\troot\t_\t_\n")
    assert read_conllu(path, column="xpos", lang="de") == [TaggedSentence(["Hallo"], ["ITJ"], "de")]
    assert read_conllu(path)[0].lang is None


def test_conllu_needs_ten_columns(tmp_path: Path) -> None:
    good = "1\tLe\tle\tDET\t_\t_\t2\tdet\t_\t_\n"
    path = write_text(tmp_path, "bad.conllu", "# text = Le chat\n" + good + "2\tchat\tchat\tNOUN\t_\t_\t0\troot\n")
    with pytest.raises(FormatError) as error:
        read_conllu(path)
    assert_format_error(error, path, 3, "expected 10 tab-separated CoNLL-U columns, found 8")


def test_conllu_word_ids_must_be_consecutive(tmp_path: Path) -> None:
    row = "\t{form}\t_\tNOUN\t_\t_\t0\troot\t_\t_\n"
    path = write_text(tmp_path, "bad.conllu", "1" + row.format(form="a") + "3" + row.format(form="b"))
    with pytest.raises(FormatError) as error:
        read_conllu(path)
    assert_format_error(error, path, 2, "token id 3 where 2 was expected")


def test_conllu_tag_outside_upos(tmp_path: Path) -> None:
    path = write_text(tmp_path, "bad.conllu", "1\tchat\tchat\tNN\t_\t_\t0\troot\t_\t_\n")
    with pytest.raises(FormatError) as error:
        read_conllu(path, tag_set=UPOS_TAGS)
    assert_format_error(error, path, 1, "'NN' is not in the tag set")


# --------------------------------------------------------------------------- NLI


def test_xnli_dev_tsv_languages_from_column() -> None:
    examples = read_nli_tsv(FIXTURES / "xnli.dev.tsv")
    assert [(example.lang, example.label) for example in examples] == [
        ("en", "neutral"), ("en", "contradiction"), ("de", "entailment")]
    assert examples[2] == NliExample("Und er sagte: Mama, ich bin daheim.",
                                     "Er sagte seiner Mutter, er sei nach Hause gekommen.", "entailment", "de")
    assert examples[0].line == 2
    assert list(group_by_language(examples)) == ["en", "de"]


def test_multinli_train_skips_rows_without_gold_label() -> None:
    examples = read_nli_tsv(FIXTURES / "multinli_1.0_train.txt")
    assert [example.label for example in examples] == ["neutral", "entailment", "contradiction"]
    assert {example.lang for example in examples} == {"en"}
    assert examples[0].premise.startswith("Conceptually cream skimming")
    with pytest.raises(FormatError) as error:
        read_nli_tsv(FIXTURES / "multinli_1.0_train.txt", skip_unlabelled=False)
    assert_format_error(error, FIXTURES / "multinli_1.0_train.txt", 4, "no gold label")


def test_xnli_mt_maps_contradictory_and_language_from_name() -> None:
    examples = read_nli_tsv(FIXTURES / "multinli.train.de.tsv")
    assert [example.label for example in examples] == ["neutral", "contradiction", "entailment"]
    assert {example.lang for example in examples} == {"de"}
    assert read_nli_tsv(FIXTURES / "multinli.train.de.tsv", lang="xx")[0].lang == "xx"


def test_nli_unknown_label(tmp_path: Path) -> None:
    path = write_text(tmp_path, "bad.tsv", "premise\thypo\tlabel\na\tb\tneutral\nc\td\tmaybe\n")
    with pytest.raises(FormatError) as error:
        read_nli_tsv(path)
    assert_format_error(error, path, 3, "unknown NLI label 'maybe'")


def test_nli_too_many_columns(tmp_path: Path) -> None:
    path = write_text(tmp_path, "bad.tsv", "premise\thypo\tlabel\na\tb\tneutral\textra\n")
    with pytest.raises(FormatError) as error:
        read_nli_tsv(path)
    assert_format_error(error, path, 2, "expected 3 tab-separated columns (XNLI-MT-1.0), found 4")


def test_nli_too_few_columns(tmp_path: Path) -> None:
    header = "language\tgold_label\tsentence1\tsentence2\tpairID\n"
    path = write_text(tmp_path, "bad.tsv", header + "en\tneutral\ta\n")
    with pytest.raises(FormatError) as error:
        read_nli_tsv(path)
    assert_format_error(error, path, 2, "found 3")


def test_nli_unknown_header(tmp_path: Path) -> None:
    path = write_text(tmp_path, "bad.tsv", "text\tlabel\n")
    with pytest.raises(FormatError) as error:
        read_nli_tsv(path)
    assert_format_error(error, path, 1, "unrecognised NLI header")


# --------------------------------------------------------------------------- QA


def test_squad_multiple_gold_answers() -> None:
    examples = read_squad_json(FIXTURES / "squad-v1.1-dev-sample.json", lang="en")
    assert [example.id for example in examples] == ["56be4db0acb8001400a502ec", "56be4db0acb8001400a502ed"]
    assert [answer.text for answer in examples[1].answers] == [
        "Carolina Panthers", "the National Football Conference (NFC) champion Carolina Panthers", "Panthers"]
    assert examples[0].answers[0] == QaAnswer("Denver Broncos", 177)
    assert examples[0].question == "Which NFL team represented the AFC at Super Bowl 50?"
    assert examples[0].lang == "en"


def test_mlqa_language_from_file_name() -> None:
    examples = read_squad_json(FIXTURES / "dev-context-de-question-de.json")
    assert {example.lang for example in examples} == {"de"}
    assert examples[1].answers[0].text == "die älteste Universität im heutigen Deutschland"


def test_tydiqa_language_from_question_id() -> None:
    examples = read_squad_json(FIXTURES / "tydiqa-goldp-dev-sample.json")
    assert [(example.lang, example.answers[0].text) for example in examples] == [
        ("ar", "القاهرة"), ("sw", "Nairobi")]
    assert infer_qa_language("xquad.th.json") == "th"
    assert infer_qa_language("test-context-zh-question-en.json") == "zh"
    assert infer_qa_language("train.json", "english-1-0") == "en"
    assert infer_qa_language("train.json", "56be4db0") is None


def squad_document(answers: list[dict], question_id: str = "q1") -> dict:
    context = "Paris is the capital of France."
    return {"data": [{"paragraphs": [{"context": context, "qas": [
        {"id": question_id, "question": "What is the capital of France?", "answers": answers}]}]}]}


def write_json(tmp_path: Path, payload: object) -> Path:
    return write_text(tmp_path, "squad.json", json.dumps(payload))


def test_qa_span_mismatch_names_question(tmp_path: Path) -> None:
    path = write_json(tmp_path, squad_document([{"text": "Paris", "answer_start": 3}], "5733be284776f41900661182"))
    with pytest.raises(FormatError) as error:
        read_squad_json(path)
    message = str(error.value)
    assert message.startswith(f"{path}: question '5733be284776f41900661182': answer 'Paris' does not match")
    assert "found 'is is'" in message and "\n" not in message
    assert error.value.question_id == "5733be284776f41900661182"
    assert read_squad_json(path, check_spans=False)[0].answers == [QaAnswer("Paris", 3)]


def test_qa_missing_answer(tmp_path: Path) -> None:
    path = write_json(tmp_path, squad_document([]))
    with pytest.raises(FormatError, match=r": question 'q1': has no gold answer$"):
        read_squad_json(path)
    assert read_squad_json(path, require_answers=False)[0].answers == []


def test_qa_answer_start_must_be_an_integer(tmp_path: Path) -> None:
    path = write_json(tmp_path, squad_document([{"text": "Paris", "answer_start": "0"}]))
    with pytest.raises(FormatError, match="question 'q1': 'answer_start' should be a JSON integer"):
        read_squad_json(path)


def test_qa_duplicate_question_id(tmp_path: Path) -> None:
    document = squad_document([{"text": "Paris", "answer_start": 0}])
    qas = document["data"][0]["paragraphs"][0]["qas"]
    qas.append(dict(qas[0]))
    with pytest.raises(FormatError, match="question 'q1': duplicate question id"):
        read_squad_json(write_json(tmp_path, document))


def test_qa_invalid_json_names_the_line(tmp_path: Path) -> None:
    path = write_text(tmp_path, "broken.json", '{"data": [\n  {"paragraphs": [}\n]}\n')
    with pytest.raises(FormatError) as error:
        read_squad_json(path)
    assert_format_error(error, path, 2, "invalid JSON")


def test_qa_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes('{"data": [\n{"title": "M\u00fcnchen", "paragraphs": []}]}'.encode("latin-1"))
    with pytest.raises(FormatError) as error:
        read_squad_json(path)
    assert_format_error(error, path, 2, "invalid UTF-8")


def test_qa_structure_errors_name_the_place(tmp_path: Path) -> None:
    path = write_json(tmp_path, {"data": [{"paragraphs": [{"qas": []}]}]})
    with pytest.raises(FormatError, match=r"data\[0\]\.paragraphs\[0\]\.context should be a JSON string"):
        read_squad_json(path)


# --------------------------------------------------------------------------- writers


def test_tagging_writers_round_trip(tmp_path: Path) -> None:
    sentences = [TaggedSentence(["Angela", "Merkel", ":"], ["B-PER", "I-PER", "O"], "de"),
                 TaggedSentence(["Paris"], ["B-LOC"], "de")]
    write_wikiann(tmp_path / "panx.tsv", sentences)
    assert read_wikiann(tmp_path / "panx.tsv") == sentences
    write_conll(tmp_path / "ner.conll", sentences)
    assert read_conll(tmp_path / "ner.conll", lang="de") == sentences
    pos = [TaggedSentence(["Le", "chat"], ["DET", "NOUN"], "fr")]
    write_conllu(tmp_path / "fr_gsd-ud-test.conllu", pos)
    assert read_conllu(tmp_path / "fr_gsd-ud-test.conllu", tag_set=UPOS_TAGS) == pos


def test_writers_refuse_unwritable_fields(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="token 'New York'"):
        write_conll(tmp_path / "x.conll", [TaggedSentence(["New York"], ["B-LOC"])])
    with pytest.raises(ValueError, match="language"):
        write_wikiann(tmp_path / "x.tsv", [TaggedSentence(["Paris"], ["B-LOC"])])


def test_nli_and_qa_writers_round_trip(tmp_path: Path) -> None:
    pairs = [NliExample("A man sleeps.", "Nobody sleeps.", "contradiction", "en"),
             NliExample("Ein Mann schläft.", "Jemand schläft.", "entailment", "de")]
    write_nli_tsv(tmp_path / "nli.tsv", pairs)
    assert read_nli_tsv(tmp_path / "nli.tsv") == pairs
    questions = read_squad_json(FIXTURES / "squad-v1.1-dev-sample.json", lang="en")
    questions.append(QaExample("q3", "Ein anderer Kontext.", "Welcher?", [QaAnswer("anderer", 4)], "en"))
    write_squad_json(tmp_path / "qa.json", questions)
    assert read_squad_json(tmp_path / "qa.json", lang="en") == questions
    document = json.loads((tmp_path / "qa.json").read_text(encoding="utf-8"))
    assert len(document["data"][0]["paragraphs"]) == 2

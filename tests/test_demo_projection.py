"""Tests of the silver English POS projection (Greek gold tags through the manual alignments)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from xlint.preprocess.demo_data import GREEK_TAG_MAP, SHARED_TAGS
from xlint.preprocess.demo_projection import (
    MIN_KNOWN_COUNT,
    RULES,
    AlignmentRecord,
    TypeDictionary,
    build_type_dictionary,
    project_tags,
    project_word,
    read_alignments,
)
from xlint.preprocess.demo_readers import BsbToken, GreekWord, read_bsb_tokens, read_sblgnt_words
from xlint.preprocess.demo_sources import DataFormatError

FIXTURES = Path(__file__).parent / "fixtures" / "demo_data"
ALIGNMENTS = FIXTURES / "SBLGNT-BSB-manual.json"


def _fixture_projection():
    return project_tags(read_sblgnt_words(FIXTURES / "SBLGNT.tsv"), GREEK_TAG_MAP,
                        read_bsb_tokens(FIXTURES / "nt_BSB.tsv"), read_alignments(ALIGNMENTS), ALIGNMENTS)


def _dictionary(**counts: dict[str, int]) -> TypeDictionary:
    return TypeDictionary({word: Counter(tags) for word, tags in counts.items()})


# --------------------------------------------------------------------------- reading


def test_read_alignments_fixture() -> None:
    records = read_alignments(ALIGNMENTS)
    assert len(records) == 28
    first = records[0]
    assert first.record_id == "40001001.001"
    assert first.source == ("n40001001001",)
    assert first.target == ("40001001001", "40001001002", "40001001003", "40001001004")
    assert first.shape == "1-n"
    assert Counter(record.shape for record in records) == {"1-1": 14, "1-n": 12, "n-n": 2}


def test_read_alignments_errors_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"records": [\n{"source": ["n1"],}\n]}', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"broken.json:2: invalid JSON"):
        read_alignments(broken)
    no_target = tmp_path / "no_target.json"
    no_target.write_text('{"records": [{"source": ["n40001001001"], "target": []}]}', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"no_target.json: record 0 has no non-empty"):
        read_alignments(no_target)
    no_records = tmp_path / "no_records.json"
    no_records.write_text('{"documents": []}', encoding="utf-8")
    with pytest.raises(DataFormatError, match="no 'records' list"):
        read_alignments(no_records)


def test_read_bsb_tokens_marks_punctuation_and_source_verse() -> None:
    tokens = read_bsb_tokens(FIXTURES / "nt_BSB.tsv")
    assert tokens[0] == BsbToken("40001001001", "40001001", "40001001", "This", False, False)
    comma = next(token for token in tokens if token.text == ",")
    assert comma.punctuation and not next(token for token in tokens if token.text == "record").punctuation


# --------------------------------------------------------------------------- the rule


def test_one_to_one_copies_the_greek_tag() -> None:
    assert project_word("wept", ["VERB"], True, _dictionary()) == ("VERB", RULES[0])


def test_known_word_takes_a_record_tag_it_often_has() -> None:
    # "will" in a VERB record ("he will come" <- one Greek verb): VERB, though NOUN is its 1-to-1 majority
    dictionary = _dictionary(will={"NOUN": 55, "VERB": 25, "PRON": 4})
    assert project_word("will", ["VERB"], False, dictionary) == ("VERB", RULES[1])


def test_known_function_word_keeps_its_own_tag_in_a_content_record() -> None:
    # "the" in "of the genealogy" <- one Greek noun: DET, not NOUN
    dictionary = _dictionary(the={"DET": 5792, "PRON": 52, "NOUN": 28})
    assert project_word("The", ["NOUN"], False, dictionary) == ("DET", RULES[2])


def test_rare_word_takes_the_content_first_record_tag() -> None:
    # "Jesus" <- "ὁ Ἰησοῦς" (DET + NOUN) when "Jesus" is rare in one-to-one records
    assert project_word("Jesus", ["DET", "NOUN"], False, _dictionary(jesus={"NOUN": 3})) == ("NOUN", RULES[3])
    assert project_word("Jesus", ["DET", "NOUN"], False, _dictionary()) == ("NOUN", RULES[3])


def test_unaligned_words() -> None:
    dictionary = _dictionary(the={"DET": MIN_KNOWN_COUNT})
    assert project_word("the", None, False, dictionary) == ("DET", RULES[4])
    assert project_word("Immanuel", None, False, dictionary) == (None, RULES[5])


def test_type_dictionary_counts_only_one_to_one_records() -> None:
    greek = {"n1": "DET", "n2": "NOUN", "n3": "NOUN"}
    english = {token_id: BsbToken(token_id, "40001001", "40001001", text, False, text == ",")
               for token_id, text in (("t1", "the"), ("t2", "the"), ("t3", "record"), ("t4", ","))}
    records = [AlignmentRecord("a", ("n1",), ("t1",)), AlignmentRecord("b", ("n2",), ("t2", "t3")),
               AlignmentRecord("c", ("n3",), ("t4",))]
    dictionary = build_type_dictionary(records, greek, english)
    assert dictionary.counts == {"the": Counter({"DET": 1})}


# --------------------------------------------------------------------------- the fixture verses


def test_project_tags_on_the_fixture_verses() -> None:
    projection = _fixture_projection()
    verses = {verse.verse: verse for verse in projection.verses}
    assert sorted(verses) == ["40001001", "40009003", "40024025", "40025017", "43011035"]
    assert verses["43011035"].words == (("Jesus", "NOUN"), ("wept", "VERB"))  # ὁ (DET) is unaligned Greek
    assert verses["43011035"].greek_verses == frozenset({"43011035"})
    # no word is frequent in five verses, so many-word records give their content-first tag
    assert verses["40001001"].words[:4] == (("This", "NOUN"), ("is", "NOUN"), ("the", "NOUN"), ("record", "NOUN"))
    assert all(tag in SHARED_TAGS for verse in projection.verses for _, tag in verse.words)
    assert projection.translated["40001023"] == frozenset({"40001023"})  # dropped, but its Greek verse is known

    stats = projection.stats.as_dict()
    assert stats["verses"] == 6 and stats["verses_kept"] == 5 and stats["verses_dropped_unknown_tag"] == 1
    assert stats["english_tokens"] == stats["english_words"] + stats["punctuation_tokens_dropped"] == 99
    assert stats["words_by_rule"][RULES[5]] == stats["english_words"] - stats["aligned_english_words"]
    assert sum(stats["words_by_rule"].values()) == stats["english_words"]
    assert sum(stats["words_by_record_shape"].values()) == stats["aligned_english_words"]


def test_project_tags_rejects_unknown_ids_and_tokens_in_two_records(tmp_path: Path) -> None:
    greek = [GreekWord("n40001001001", "40001001", "Βίβλος", "noun")]
    english = [BsbToken("40001001001", "40001001", "40001001", "book", False, False)]
    unknown = [AlignmentRecord("r1", ("n40001001001",), ("40001001009",))]
    with pytest.raises(DataFormatError, match=r"x.json: record r1 names unknown word id '40001001009'"):
        project_tags(greek, GREEK_TAG_MAP, english, unknown, tmp_path / "x.json")
    twice = [AlignmentRecord("r1", ("n40001001001",), ("40001001001",)),
             AlignmentRecord("r2", ("n40001001001",), ("40001001001",))]
    with pytest.raises(DataFormatError, match="BSB token 40001001001 is in records r1 and r2"):
        project_tags(greek, GREEK_TAG_MAP, english, twice, tmp_path / "x.json")

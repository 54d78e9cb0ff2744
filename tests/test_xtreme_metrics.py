"""XTREME metrics against hand-worked values and independent computations."""
from __future__ import annotations

import random
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import pytest

from xlint.metrics.xtreme import (
    accuracy,
    average_over_languages,
    exact_match,
    max_over_golds,
    mlqa_normalize,
    mlqa_scores,
    ner_f1,
    per_language,
    pos_scores,
    predictions_in_order,
    qa_scores,
    span_scores,
    split_by_language,
    squad_normalize,
    squad_scores,
    token_accuracy,
    token_f1,
)

METRICS_FILE = Path(__file__).resolve().parents[1] / "user_dir" / "metrics" / "xtreme.py"


def test_module_imports_only_the_standard_library() -> None:
    """Loaded by path (not via the plugin package), the module pulls in no seqeval, numpy, torch or fairseq."""
    script = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('m', {str(METRICS_FILE)!r})\n"
        "module = importlib.util.module_from_spec(spec); sys.modules['m'] = module\n"
        "spec.loader.exec_module(module)\n"
        "heavy = [n for n in sys.modules if n.split('.')[0] in ('seqeval', 'sklearn', 'numpy', 'torch', 'fairseq')]\n"
        "print(heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------- accuracy and languages


def test_accuracy() -> None:
    gold = ["entailment", "neutral", "contradiction", "neutral"]
    predicted = ["entailment", "contradiction", "contradiction", "neutral"]
    assert accuracy(gold, predicted) == 75.0


def test_per_language_scores_each_whole_subset_and_averages() -> None:
    langs = ["en", "de", "en", "de", "de"]
    gold = ["a", "a", "b", "b", "b"]
    predicted = ["a", "b", "b", "b", "a"]
    scores = per_language(accuracy, langs, gold, predicted)
    assert scores == {"en": 100.0, "de": pytest.approx(100 / 3)}
    assert average_over_languages(scores) == pytest.approx((100 + 100 / 3) / 2)
    assert average_over_languages(scores, exclude=("en",)) == pytest.approx(100 / 3)
    assert split_by_language(langs, gold, predicted)["en"] == (["a", "b"], ["a", "b"])


def test_length_mismatches_and_empty_inputs_are_errors() -> None:
    with pytest.raises(ValueError, match="2 gold labels but 1 predicted"):
        accuracy(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="sentence 1 has 2 gold tags but 1 predicted"):
        ner_f1([["O"], ["O", "O"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="no questions"):
        squad_scores([], [])
    with pytest.raises(ValueError, match="no language scores"):
        average_over_languages({"en": 1.0}, exclude=("en",))


# --------------------------------------------------------------------------- NER span F1


def test_ner_f1_on_tricky_iob_by_hand() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"],
            ["O", "B-ORG", "I-ORG", "O"]]
    predicted = [["I-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-LOC"],
                 ["O", "B-ORG", "I-PER", "O"]]
    # gold chunks: PER(0-1) LOC(3) LOC(4-5) | ORG(1-2)                -> 4
    # predicted:   PER(0-1) (I- without B- opens a chunk) LOC(3-5)     -> adjacent LOCs merged
    #              | ORG(1) PER(2) (I-PER after B-ORG opens a PER)      -> 4
    # correct: PER(0-1) only -> P = R = F1 = 1/4
    scores = span_scores(gold, predicted)
    assert (scores.precision, scores.recall, scores.f1) == (25.0, 25.0, 25.0)


def test_ner_f1_precision_recall_differ_by_hand() -> None:
    gold = [["B-LOC", "B-LOC", "O", "B-PER"]]     # LOC(0) LOC(1) PER(3)
    predicted = [["B-LOC", "I-LOC", "O", "B-PER"]]  # LOC(0-1) PER(3)
    # correct: PER(3) -> P = 1/2, R = 1/3, F1 = 2 * (1/6) / (5/6) = 2/5
    scores = span_scores(gold, predicted)
    assert scores.precision == pytest.approx(50.0)
    assert scores.recall == pytest.approx(100 / 3)
    assert scores.f1 == pytest.approx(40.0)


def test_ner_chunks_never_cross_sentences() -> None:
    assert ner_f1([["B-LOC"], ["B-LOC"]], [["I-LOC"], ["I-LOC"]]) == 100.0
    assert ner_f1((("B-LOC",), ("B-LOC",)), (("I-LOC",), ("I-LOC",))) == 100.0  # tuples work too


def test_ner_f1_is_over_the_whole_set_not_a_mean_of_batches() -> None:
    perfect = [["B-PER", "O", "B-LOC", "O", "B-ORG"]]
    wrong = [["B-MISC"]]
    gold = perfect + wrong
    predicted = perfect + [["B-PER"]]
    # whole set: 3 of 4 predicted and 3 of 4 gold chunks correct -> 75; mean of per-sentence F1 would be 50
    assert ner_f1(gold, predicted) == pytest.approx(75.0)
    assert (ner_f1(perfect, perfect) + ner_f1(wrong, [["B-PER"]])) / 2 == 50.0


def test_ner_f1_without_any_entity_is_zero() -> None:
    assert ner_f1([["O", "O"]], [["O", "O"]]) == 0.0


# --------------------------------------------------------------------------- POS


def test_pos_accuracy_versus_seqeval_f1() -> None:
    gold = [["NOUN", "NOUN", "VERB", "PUNCT"]]
    predicted = [["NOUN", "VERB", "VERB", "PUNCT"]]
    # tokens: 3 of 4 right. seqeval chunks are runs of identical tags:
    # gold NOUN(0-1) VERB(2) PUNCT(3), predicted NOUN(0) VERB(1-2) PUNCT(3) -> only PUNCT matches: 1/3
    scores = pos_scores(gold, predicted)
    assert scores.accuracy == 75.0
    assert scores.f1 == pytest.approx(100 / 3)
    assert token_accuracy(gold, predicted) == 75.0


def test_pos_seqeval_quirks_of_s_initial_and_conj_tags() -> None:
    # tags starting with S are IOBES singletons: SCONJ SCONJ is two chunks, NOUN NOUN one
    assert pos_scores([["SCONJ", "SCONJ"]], [["SCONJ", "NOUN"]]).f1 == 50.0
    assert pos_scores([["NOUN", "NOUN"]], [["NOUN", "VERB"]]).f1 == 0.0
    # CCONJ and SCONJ share seqeval's chunk type "CONJ" (seqeval >= 1.0)
    confused = pos_scores([["SCONJ"]], [["CCONJ"]])
    assert (confused.accuracy, confused.f1) == (0.0, 100.0)
    # X has seqeval's type of O, so a sentence-final X never closes: gold NOUN(0) only,
    # predicted NOUN(0) VERB(1) -> P 1/2, R 1 -> F1 2/3
    final_x = pos_scores([["NOUN", "X"]], [["NOUN", "VERB"]])
    assert (final_x.accuracy, final_x.f1) == (50.0, pytest.approx(200 / 3))


def test_pos_scores_silence_seqeval_tag_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pos_scores([["NOUN", "VERB"]], [["NOUN", "VERB"]])


def runs_f1(gold: list[list[str]], predicted: list[list[str]]) -> float:
    """Independent reference: F1 (percent) over maximal runs of identical tags, per sentence."""
    def runs(sentences: list[list[str]]) -> set[tuple[int, int, int, str]]:
        found = set()
        for number, tags in enumerate(sentences):
            start = 0
            for position in range(1, len(tags) + 1):
                if position == len(tags) or tags[position] != tags[start]:
                    found.add((number, start, position - 1, tags[start]))
                    start = position
        return found
    gold_runs, predicted_runs = runs(gold), runs(predicted)
    correct = len(gold_runs & predicted_runs)
    if correct == 0:
        return 0.0
    precision, recall = correct / len(predicted_runs), correct / len(gold_runs)
    return 100 * 2 * precision * recall / (precision + recall)


def test_pos_f1_equals_f1_over_runs_of_identical_tags() -> None:
    """For UPOS tags other than SCONJ, SYM, CCONJ and X (see the quirks) seqeval F1 = F1 over tag runs."""
    tags = ["NOUN", "VERB", "ADJ", "ADP", "DET", "PROPN", "PRON", "PUNCT", "INTJ", "AUX", "NUM", "PART"]
    generator = random.Random(13)
    for _ in range(100):
        gold = [[generator.choice(tags[:4]) for _ in range(generator.randint(1, 6))] for _ in range(3)]
        predicted = [[tag if generator.random() < 0.7 else generator.choice(tags) for tag in sentence]
                     for sentence in gold]
        assert pos_scores(gold, predicted).f1 == pytest.approx(runs_f1(gold, predicted))


# --------------------------------------------------------------------------- SQuAD normalisation and scores


@pytest.mark.parametrize("text, normalized", [
    ("The Eiffel Tower!", "eiffel tower"),
    ("An apple a  day", "apple day"),
    ("U.S.A.", "usa"),
    ("rock'n'roll", "rocknroll"),
    ("Theater another", "theater another"),       # articles only as whole words
    ("the-end", "theend"),                         # punctuation goes first, then articles
    ("\u201cParis\u201d 24\u201310", "\u201cparis\u201d 24\u201310"),  # SQuAD keeps non-ASCII punctuation
])
def test_squad_normalize(text: str, normalized: str) -> None:
    assert squad_normalize(text) == normalized


def test_squad_f1_and_em_by_hand() -> None:
    # "the" is dropped: prediction {denver, broncos, team} vs gold {denver, broncos}
    assert token_f1("the Denver Broncos team", "Denver Broncos") == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert exact_match("the Denver Broncos team", "Denver Broncos") == 0.0
    assert exact_match("The Denver Broncos.", "denver broncos") == 1.0
    # repeated tokens count once per occurrence: {new, new, york} & {new, york} = 2 -> P 2/3, R 1
    assert token_f1("new new york", "New York") == pytest.approx(0.8)
    # both normalise to "": exact match, but F1 is 0 (official behaviour)
    assert exact_match("the", "a") == 1.0
    assert token_f1("the", "a") == 0.0


def test_squad_max_over_multiple_golds_by_hand() -> None:
    golds = ["Carolina Panthers", "the National Football Conference (NFC) champion Carolina Panthers", "Panthers"]
    prediction = "NFC champion Carolina Panthers"
    # vs gold 1: common 2, P 2/4, R 2/2 -> 2/3; vs gold 2 (7 tokens): common 4, P 1, R 4/7 -> 8/11;
    # vs gold 3: common 1, P 1/4, R 1 -> 2/5
    assert max_over_golds(token_f1, prediction, golds) == pytest.approx(8 / 11)
    assert max_over_golds(exact_match, "Panthers", golds) == 1.0


def test_squad_scores_over_questions_by_hand() -> None:
    gold_answers = [["Denver Broncos"],
                    ["Carolina Panthers", "Panthers"],
                    ["Levi's Stadium"]]
    by_id = {"q1": "the Denver Broncos team", "q2": "Panthers"}
    predictions = predictions_in_order(["q1", "q2", "q3"], by_id)
    assert predictions == ["the Denver Broncos team", "Panthers", None]
    scores = squad_scores(gold_answers, predictions)
    # EM: 0 + 1 + 0 (unanswered) over 3; F1: 0.8 + 1 + 0 over 3
    assert scores.exact_match == pytest.approx(100 / 3)
    assert scores.f1 == pytest.approx(60.0)
    assert (scores.count, scores.missing) == (3, 1)


# --------------------------------------------------------------------------- MLQA normalisation


@pytest.mark.parametrize("text, lang, normalized", [
    ("Die älteste Universität im heutigen Deutschland", "de", "älteste universität im heutigen deutschland"),
    ("Derby dem Dach, eines Tages", "de", "derby dach tages"),
    ("La Coruña y los Ángeles", "es", "coruña y ángeles"),
    ("¿Dónde está el museo?", "es", "dónde está museo"),
    ("những ngôi nhà của tôi", "vi", "ngôi nhà tôi"),
    ("भारत की राजधानी।", "hi", "भारत की राजधानी"),
    ("北京是中国的首都", "zh", "北 京 是 中 国 的 首 都"),
    ("2008年北京奥运会, Beijing Olympics", "zh", "2008 年 北 京 奥 运 会 beijing olympics"),
    ("«المدينة المنورة»", "ar", "مدينة منورة"),
    ("بالمدينة", "ar", "ب مدينة"),  # every ال is removed, not only a prefix
    ("\u201cThe Paris\u201d 24\u201310", "en", "paris 2410"),  # Unicode punctuation goes
])
def test_mlqa_normalize(text: str, lang: str, normalized: str) -> None:
    assert mlqa_normalize(text, lang) == normalized


def test_mlqa_german_articles_change_f1() -> None:
    prediction, gold = "älteste Universität", "die älteste Universität im heutigen Deutschland"
    # de: gold has 5 tokens after removing "die" -> P 1, R 2/5 -> 4/7; SQuAD keeps "die" -> R 1/3 -> 1/2
    scores = mlqa_scores([[gold]], [prediction], "de")
    assert scores.f1 == pytest.approx(100 * 4 / 7)
    assert squad_scores([[gold]], [prediction]).f1 == pytest.approx(50.0)


def test_mlqa_chinese_is_scored_per_character() -> None:
    # zh: {北, 京} vs {北, 京, 市} -> P 1, R 2/3 -> F1 0.8; SQuAD sees two different single tokens
    assert mlqa_scores([["北京市"]], ["北京"], "zh").f1 == pytest.approx(80.0)
    assert mlqa_scores([["北京市"]], ["北京"], "zh").exact_match == 0.0
    assert squad_scores([["北京市"]], ["北京"]).f1 == 0.0


def test_mlqa_scores_match_generic_qa_scores_with_language_normaliser() -> None:
    golds = [["der Rhein"], ["los Pirineos", "Pirineos"]]
    predictions = ["Rhein", None]
    expected = qa_scores(golds, predictions, lambda text: mlqa_normalize(text, "de"))
    assert mlqa_scores(golds, predictions, "de") == expected
    assert expected.exact_match == 50.0 and expected.missing == 1


def test_mlqa_unknown_language_is_an_error() -> None:
    with pytest.raises(ValueError, match="not 'fr'"):
        mlqa_normalize("le chat", "fr")
    with pytest.raises(ValueError, match="not 'fr'"):
        mlqa_scores([["le chat"]], ["chat"], "fr")


def test_token_f1_counts_multiset_overlap() -> None:
    """Independent check of the F1 formula on a case with repeated tokens."""
    prediction, gold = "y x y z", "x y w y y"
    overlap = sum((Counter(prediction.split()) & Counter(gold.split())).values())  # x, y, y -> 3
    precision, recall = overlap / 4, overlap / 5
    assert token_f1(prediction, gold) == pytest.approx(2 * precision * recall / (precision + recall))

"""Downstream metrics computed the way XTREME computes them.

Every function scores a whole evaluation set at once (never an average of
per-batch scores).  Aggregate scores are percentages in [0, 100], as XTREME's
``evaluate.py`` and the official SQuAD/MLQA scripts report them; the per-pair
helpers :func:`exact_match` and :func:`token_f1` return [0, 1] like the
official scripts do.  Importing this module loads only the standard library;
seqeval (and, through it, scikit-learn) is imported on first use.

Tagging (XTREME ``panx`` and ``udpos``): span F1 from ``seqeval.metrics.f1_score``
in its default, conlleval-compatible mode (micro-averaged over all chunks).
XTREME feeds the raw UD POS tags to the same function, so its "POS F1" is not
a per-token score.  What seqeval (1.2.2, the pinned version) does with a plain
tag such as ``NOUN``: the first character is read as the IOB prefix (``N``) and
the rest as the chunk type (``OUN``).  Prefixes other than B/I/E/S/O neither
open nor close chunks by themselves, so

* a maximal run of identical tags becomes ONE chunk (``NOUN NOUN`` is one
  two-token "OUN" chunk), and a prediction must reproduce the run's exact
  boundaries to score: ``NOUN NOUN`` predicted as ``NOUN VERB`` gets no credit
  for the first, correctly tagged token, unlike token accuracy;
* tags starting with ``S`` (SCONJ, SYM) are read as IOBES singletons: every
  token is its own chunk;
* ``CCONJ`` and ``SCONJ`` share the chunk type ``CONJ``, so one predicted for
  the other can count as correct, and a CCONJ run directly followed by SCONJ
  loses its chunk;
* ``X`` gets the type ``_``, which is also the type seqeval gives to ``O``
  (its own sentence-end marker), so an ``X`` run that ends a sentence is never
  closed and silently drops out of both gold and predicted chunks.

seqeval releases from before its July 2020 change of type parsing (what
XTREME installed when it was published) took the whole tag after the last
``-`` as the type, so CCONJ and SCONJ were distinct and a sentence-final ``X``
was counted there; the run and singleton rules above are the same.  Report
POS token accuracy (:func:`pos_scores` gives both) when a per-token number is
meant.

QA (XTREME ``xquad``/``tydiqa``: SQuAD v1.1 script; ``mlqa``: MLQA script):
exact match and bag-of-tokens F1 after answer normalisation, maximised over
the gold answers of a question and averaged over all questions; a question
without a prediction scores 0.
"""
from __future__ import annotations

import re
import string
import unicodedata
import warnings
from collections import Counter
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
Normalizer = Callable[[str], str]

# --------------------------------------------------------------------------- validation


def _check_same_length(gold: Sequence, predicted: Sequence, what: str) -> None:
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold {what} but {len(predicted)} predicted")
    if not gold:
        raise ValueError(f"no {what} to score")


def _tag_lists(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]
               ) -> tuple[list[list[str]], list[list[str]]]:
    """Both tag sets as lists of lists (seqeval only flattens real lists), lengths checked."""
    _check_same_length(gold, predicted, "sentences")
    for index, (gold_tags, predicted_tags) in enumerate(zip(gold, predicted)):
        if len(gold_tags) != len(predicted_tags):
            raise ValueError(f"sentence {index} has {len(gold_tags)} gold tags but {len(predicted_tags)} predicted")
    return [list(tags) for tags in gold], [list(tags) for tags in predicted]


# --------------------------------------------------------------------------- classification


def accuracy(gold: Sequence[Hashable], predicted: Sequence[Hashable]) -> float:
    """Percentage of examples whose prediction equals the gold label.

    ``accuracy = 100 * |{i : predicted_i == gold_i}| / N`` (XNLI, PAWS-X).
    """
    _check_same_length(gold, predicted, "labels")
    return 100.0 * sum(g == p for g, p in zip(gold, predicted)) / len(gold)


# --------------------------------------------------------------------------- tagging


@dataclass(frozen=True)
class SpanScores:
    """Micro-averaged chunk precision, recall and F1, in percent."""

    precision: float
    recall: float
    f1: float


@dataclass(frozen=True)
class PosScores:
    """POS token accuracy and XTREME's seqeval "POS F1", in percent."""

    accuracy: float
    f1: float


def token_accuracy(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> float:
    """Percentage of tokens, over the whole set, whose predicted tag equals the gold tag.

    ``token_accuracy = 100 * sum_s |{t : pred[s][t] == gold[s][t]}| / sum_s |gold[s]|``
    """
    gold_lists, predicted_lists = _tag_lists(gold, predicted)
    total = sum(len(tags) for tags in gold_lists)
    if total == 0:
        raise ValueError("no tokens to score")
    correct = sum(g == p for gold_tags, predicted_tags in zip(gold_lists, predicted_lists)
                  for g, p in zip(gold_tags, predicted_tags))
    return 100.0 * correct / total


def span_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> SpanScores:
    """seqeval's conlleval-compatible chunk precision/recall/F1 over the whole set, in percent.

    Chunks are ``(type, first token, last token)``, never crossing sentences; an
    ``I-X`` that does not continue an ``X`` chunk starts one (conlleval rule).
    With C the chunks in both gold and prediction:
    ``P = |C| / |predicted chunks|``, ``R = |C| / |gold chunks|``,
    ``F1 = 2PR / (P + R)`` (0 when a denominator is 0), each times 100.
    """
    from seqeval.metrics import f1_score, precision_score, recall_score

    gold_lists, predicted_lists = _tag_lists(gold, predicted)
    return SpanScores(
        precision=100.0 * precision_score(gold_lists, predicted_lists, zero_division=0),
        recall=100.0 * recall_score(gold_lists, predicted_lists, zero_division=0),
        f1=100.0 * f1_score(gold_lists, predicted_lists, zero_division=0),
    )


def ner_f1(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> float:
    """XTREME's NER score: the seqeval span F1 of :func:`span_scores`, in percent."""
    return span_scores(gold, predicted).f1


def pos_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> PosScores:
    """POS token accuracy and the seqeval F1 that XTREME reports for UD-POS, in percent.

    ``accuracy`` is :func:`token_accuracy`; ``f1`` is :func:`span_scores` on the
    raw tags (runs of identical tags are chunks; see the module docstring).
    seqeval's warning that a tag "seems not to be NE tag" is silenced here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".* seems not to be NE tag")
        f1 = span_scores(gold, predicted).f1
    return PosScores(accuracy=token_accuracy(gold, predicted), f1=f1)


# --------------------------------------------------------------------------- QA normalisation

_SQUAD_PUNCTUATION = frozenset(string.punctuation)
_MLQA_ARTICLES = {
    "en": ("a", "an", "the"),
    "es": ("un", "una", "unos", "unas", "el", "la", "los", "las"),
    "vi": ("của", "là", "cái", "chiếc", "những"),
    "de": ("ein", "eine", "einen", "einem", "eines", "einer", "der", "die", "das", "den", "dem", "des"),
}
_ARTICLE_PATTERNS = {lang: re.compile(r"\b(?:" + "|".join(words) + r")\b") for lang, words in _MLQA_ARTICLES.items()}
_ARABIC_DEFINITE_ARTICLE = "ال"
MLQA_LANGUAGES = ("en", "es", "de", "vi", "ar", "hi", "zh")
_MIXED_SEGMENTATION_LANGUAGES = frozenset({"zh"})


def _is_mlqa_punctuation(character: str) -> bool:
    """MLQA's punctuation: any Unicode ``P*`` category character, plus ASCII ``string.punctuation``."""
    return character in _SQUAD_PUNCTUATION or unicodedata.category(character).startswith("P")


def _is_cjk_ideograph(character: str) -> bool:
    """The CJK range the MLQA script splits into single characters (U+4E00..U+9FA5)."""
    return "\u4e00" <= character <= "\u9fa5"


def squad_normalize(text: str) -> str:
    """The SQuAD v1.1 answer normaliser.

    lowercase -> drop ASCII punctuation (``string.punctuation``) -> replace the
    words ``a``/``an``/``the`` by a space -> collapse whitespace to single spaces.
    """
    text = "".join(character for character in text.lower() if character not in _SQUAD_PUNCTUATION)
    text = _ARTICLE_PATTERNS["en"].sub(" ", text)
    return " ".join(text.split())


def _remove_mlqa_articles(text: str, lang: str) -> str:
    """MLQA's language-specific article removal (each article word becomes a space).

    Arabic: the official pattern ``\\sال^|ال`` can only ever match its second
    branch, so every occurrence of ``ال`` is replaced, prefix or not.  Hindi and
    Chinese have no articles.
    """
    if lang == "ar":
        return text.replace(_ARABIC_DEFINITE_ARTICLE, " ")
    pattern = _ARTICLE_PATTERNS.get(lang)
    return pattern.sub(" ", text) if pattern else text


def _mixed_segmentation(text: str) -> list[str]:
    """Chinese tokenisation of the MLQA script: each CJK ideograph and each
    punctuation character is a token; the text between them is split on whitespace."""
    tokens: list[str] = []
    pending: list[str] = []
    for character in text:
        if _is_cjk_ideograph(character) or _is_mlqa_punctuation(character):
            tokens.extend("".join(pending).split())
            pending.clear()
            tokens.append(character)
        else:
            pending.append(character)
    tokens.extend("".join(pending).split())
    return tokens


def mlqa_normalize(text: str, lang: str) -> str:
    """The MLQA answer normaliser for the answer (context) language ``lang``.

    lowercase -> drop Unicode punctuation -> remove the language's articles
    (en: a an the; es: un una unos unas el la los las; de: ein eine einen einem
    eines einer der die das den dem des; vi: của là cái chiếc những; ar: every
    ``ال``; hi, zh: none) -> tokenise (zh: :func:`_mixed_segmentation`, others:
    whitespace) -> join the tokens with single spaces.
    """
    if lang not in MLQA_LANGUAGES:
        raise ValueError(f"MLQA normalisation knows {', '.join(MLQA_LANGUAGES)}, not {lang!r}")
    text = "".join(character for character in text.lower() if not _is_mlqa_punctuation(character))
    text = _remove_mlqa_articles(text, lang)
    tokens = _mixed_segmentation(text) if lang in _MIXED_SEGMENTATION_LANGUAGES else text.split()
    return " ".join(tokens)


# --------------------------------------------------------------------------- QA scores


def exact_match(prediction: str, gold: str, normalize: Normalizer = squad_normalize) -> float:
    """1.0 if the normalised strings are equal, else 0.0."""
    return float(normalize(prediction) == normalize(gold))


def token_f1(prediction: str, gold: str, normalize: Normalizer = squad_normalize) -> float:
    """Bag-of-tokens F1 of the normalised strings, split on whitespace, in [0, 1].

    With ``common = |tokens(prediction) ∩ tokens(gold)|`` as multisets:
    ``P = common / |tokens(prediction)|``, ``R = common / |tokens(gold)|``,
    ``F1 = 2PR / (P + R)``, and 0 when ``common`` is 0 (even if both are empty).
    """
    predicted_tokens = normalize(prediction).split()
    gold_tokens = normalize(gold).split()
    common = sum((Counter(predicted_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision = common / len(predicted_tokens)
    recall = common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def max_over_golds(score: Callable[[str, str], float], prediction: str, golds: Sequence[str]) -> float:
    """``max_g score(prediction, g)`` over a question's gold answers."""
    if not golds:
        raise ValueError("a question needs at least one gold answer")
    return max(score(prediction, gold) for gold in golds)


@dataclass(frozen=True)
class QaScores:
    """Exact match and F1 in percent over ``count`` questions, ``missing`` of them unanswered."""

    exact_match: float
    f1: float
    count: int
    missing: int


def qa_scores(gold_answers: Sequence[Sequence[str]], predictions: Sequence[str | None],
              normalize: Normalizer = squad_normalize) -> QaScores:
    """EM and F1 over all questions, each maximised over the question's gold answers.

    ``EM = 100/N * sum_q max_g exact_match(pred_q, g)``,
    ``F1 = 100/N * sum_q max_g token_f1(pred_q, g)``; a ``None`` prediction
    (unanswered question) scores 0 for both and is counted in ``missing``.
    """
    _check_same_length(gold_answers, predictions, "questions")
    total_em = total_f1 = 0.0
    missing = 0
    for golds, prediction in zip(gold_answers, predictions):
        if prediction is None:
            missing += 1
            continue
        total_em += max_over_golds(lambda p, g: exact_match(p, g, normalize), prediction, golds)
        total_f1 += max_over_golds(lambda p, g: token_f1(p, g, normalize), prediction, golds)
    count = len(gold_answers)
    return QaScores(100.0 * total_em / count, 100.0 * total_f1 / count, count, missing)


def squad_scores(gold_answers: Sequence[Sequence[str]], predictions: Sequence[str | None]) -> QaScores:
    """SQuAD v1.1 EM/F1 (XQuAD, TyDiQA-GoldP in XTREME): :func:`qa_scores` with :func:`squad_normalize`."""
    return qa_scores(gold_answers, predictions, squad_normalize)


def mlqa_scores(gold_answers: Sequence[Sequence[str]], predictions: Sequence[str | None], lang: str) -> QaScores:
    """MLQA EM/F1 for context language ``lang``: :func:`qa_scores` with :func:`mlqa_normalize`."""
    if lang not in MLQA_LANGUAGES:
        raise ValueError(f"MLQA normalisation knows {', '.join(MLQA_LANGUAGES)}, not {lang!r}")
    return qa_scores(gold_answers, predictions, lambda text: mlqa_normalize(text, lang))


def predictions_in_order(question_ids: Sequence[str], predictions: Mapping[str, str]) -> list[str | None]:
    """Predictions keyed by question id, aligned to ``question_ids`` (``None`` where missing)."""
    return [predictions.get(question_id) for question_id in question_ids]


# --------------------------------------------------------------------------- languages


def split_by_language(langs: Sequence[str], gold: Sequence[T], predicted: Sequence[T]
                      ) -> dict[str, tuple[list[T], list[T]]]:
    """``{lang: (gold items, predicted items)}`` for aligned sequences, languages in first-seen order."""
    _check_same_length(gold, predicted, "items")
    if len(langs) != len(gold):
        raise ValueError(f"{len(langs)} languages for {len(gold)} items")
    groups: dict[str, tuple[list[T], list[T]]] = {}
    for lang, gold_item, predicted_item in zip(langs, gold, predicted):
        gold_group, predicted_group = groups.setdefault(lang, ([], []))
        gold_group.append(gold_item)
        predicted_group.append(predicted_item)
    return groups


def per_language(metric: Callable[[list, list], float], langs: Sequence[str], gold: Sequence,
                 predicted: Sequence) -> dict[str, float]:
    """``metric(gold, predicted)`` computed on each language's whole subset.

    E.g. ``per_language(accuracy, langs, gold_labels, predicted_labels)`` or
    ``per_language(ner_f1, langs, gold_tags, predicted_tags)``.
    """
    return {lang: metric(gold_items, predicted_items)
            for lang, (gold_items, predicted_items) in split_by_language(langs, gold, predicted).items()}


def average_over_languages(scores: Mapping[str, float], exclude: Collection[str] = ()) -> float:
    """Unweighted mean of per-language scores, ``sum_l score_l / L`` (XTREME's ``avg_*``).

    ``exclude`` drops languages first, e.g. ``("en",)`` for the zero-shot
    average over target languages only.
    """
    kept = [score for lang, score in scores.items() if lang not in exclude]
    if not kept:
        raise ValueError("no language scores to average")
    return sum(kept) / len(kept)

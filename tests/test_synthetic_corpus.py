"""xlint.preprocess.synthetic_corpus: the layouts, the counts, determinism by seed, disjoint vocabularies."""
from __future__ import annotations

import json
from collections import Counter

import pytest
from fairseq.data import Dictionary, data_utils

from xlint.preprocess.synthetic_corpus import (SPLITS, CorpusSpec, build_synthetic_corpus, generate_sentences,
                                               numbered_words)

SIZES = {"train": 30, "valid": 5, "test": 4, "metadev": 3}


def small_spec(seed: int = 7, distribution: str = "uniform") -> CorpusSpec:
    return CorpusSpec.numbered(["aa", "bb"], 20, SIZES, length=(2, 6), distribution=distribution, seed=seed)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return build_synthetic_corpus(small_spec(), root / "DATA", roberta_dir=root / "ROBERTA", roberta_language="bb")


def load(prefix, dictionary):
    dataset = data_utils.load_indexed_dataset(str(prefix), dictionary, "mmap")
    assert dataset is not None, f"no dataset at {prefix}"
    return dataset


def test_xlm_mlm_layout_holds_every_split_of_every_language(corpus):
    dictionary = Dictionary.load(str(corpus.path / "dict.txt"))
    metadata = json.loads((corpus.path / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["languages"] == corpus.languages == ["aa", "bb"]
    for lang in corpus.languages:
        for split in SPLITS:
            dataset = load(corpus.path / lang / split, dictionary)
            sentences = corpus.sentences[lang][split]
            assert len(dataset) == corpus.count(lang, split) == SIZES[split]
            assert metadata["splits"][lang][split] == {"sentences": SIZES[split], "tokens": corpus.tokens[lang][split]}
            assert corpus.tokens[lang][split] == sum(len(s.split()) + 1 for s in sentences)  # + EOS
            assert [dictionary.string(dataset[i]) for i in range(len(dataset))] == sentences


def test_roberta_layout_is_the_asked_language_with_the_same_dictionary(corpus):
    roberta = corpus.roberta_path
    assert corpus.roberta_language == "bb"
    assert (roberta / "dict.txt").read_bytes() == (corpus.path / "dict.txt").read_bytes()
    for split in SPLITS:
        for ext in ("bin", "idx"):
            assert (roberta / f"{split}.{ext}").read_bytes() == (corpus.path / "bb" / f"{split}.{ext}").read_bytes()


def test_dictionary_holds_the_training_words_of_all_languages(corpus):
    dictionary = Dictionary.load(str(corpus.path / "dict.txt"))
    train_words = {w for lang in corpus.languages for s in corpus.sentences[lang]["train"] for w in s.split()}
    assert train_words <= set(dictionary.symbols)
    assert len(dictionary) % 8 == 0  # fairseq-preprocess's padding factor


def test_sentences_are_determined_by_the_seed():
    assert generate_sentences(small_spec(seed=7)) == generate_sentences(small_spec(seed=7))
    assert generate_sentences(small_spec(seed=7)) != generate_sentences(small_spec(seed=8))


def test_languages_draw_only_their_own_words_within_the_length_range():
    spec = small_spec(distribution="zipf")
    sentences = generate_sentences(spec)
    for lang in spec.languages:
        words = [w for split in spec.splits(lang) for s in sentences[lang][split] for w in s.split()]
        assert set(words) <= set(numbered_words(lang, 20))
        assert all(2 <= len(s.split()) <= 6 for split in spec.splits(lang) for s in sentences[lang][split])


def test_zipf_draws_favour_the_first_words():
    spec = CorpusSpec.numbered(["aa"], 50, {"train": 400}, length=(10, 10), distribution="zipf", seed=3)
    counts = Counter(w for s in generate_sentences(spec)["aa"]["train"] for w in s.split())
    assert counts["aa0"] > counts["aa1"] > counts["aa10"] > counts["aa49"]


def test_split_sizes_and_lengths_follow_the_spec_per_language():
    spec = CorpusSpec(vocabularies={"en": ["a", "b"], "fr": ["c", "d"]},
                      sentences={"en": {"train": 5, "valid": 2}, "fr": {"train": 3, "metadev": 1}}, length=(4, 4))
    sentences = generate_sentences(spec)
    assert {lang: {split: len(s) for split, s in splits.items()} for lang, splits in sentences.items()} == \
        {"en": {"train": 5, "valid": 2}, "fr": {"train": 3, "metadev": 1}}
    assert {len(s.split()) for splits in sentences.values() for s in (x for v in splits.values() for x in v)} == {4}


@pytest.mark.parametrize("vocabularies, sentences, match", [
    ({"en": ["a", "b"], "fr": ["b", "c"]}, {"en": {"train": 1}, "fr": {"train": 1}}, "both en and fr"),
    ({"en": ["a"]}, {"en": {"valid": 1}}, "no train split"),
    ({"en": ["a"]}, {"en": {"train": 1, "dev": 1}}, "unknown splits"),
    ({"en": ["a"]}, {"en": {"train": 0}}, "at least one sentence"),
    ({"en": ["a b"]}, {"en": {"train": 1}}, "whitespace-free"),
    ({"en": []}, {"en": {"train": 1}}, "empty vocabulary"),
    ({"en": ["a"]}, {"fr": {"train": 1}}, "differ"),
])
def test_inconsistent_specs_are_refused(vocabularies, sentences, match):
    with pytest.raises(ValueError, match=match):
        CorpusSpec(vocabularies=vocabularies, sentences=sentences)


def test_bad_length_and_distribution_are_refused():
    with pytest.raises(ValueError, match="length range"):
        CorpusSpec(vocabularies={"en": ["a"]}, sentences={"en": {"train": 1}}, length=(5, 2))
    with pytest.raises(ValueError, match="distribution"):
        CorpusSpec(vocabularies={"en": ["a"]}, sentences={"en": {"train": 1}}, distribution="normal")

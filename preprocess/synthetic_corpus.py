"""Synthetic multilingual text, binarized with fairseq's own binarizer (tests and benchmarks).

One home for the pseudo-language corpora that the test fixtures and the benchmarks
train on.  A :class:`CorpusSpec` says which languages there are, each language's
words (languages never share a word), how many sentences each split gets, how long
sentences are and how words are drawn (``uniform`` or ``zipf``: P(rank r) ~ 1/r^s).
One :class:`random.Random` seeded with ``spec.seed`` draws every sentence, language
by language and split by split in :data:`SPLITS` order, so a spec always gives the
same text.

:func:`build_synthetic_corpus` writes the layout of the ``xlm_mlm`` task::

    DATA/dict.txt                                  one dictionary over all training text
    DATA/<lang>/{train,valid,test,metadev}.{bin,idx}   the splits the spec asks for
    DATA/metadata.json                             {"languages": [...], "splits": counts}

and, when asked, fairseq's ``masked_lm`` (roberta) layout of one language
(``ROBERTA/dict.txt``, ``ROBERTA/<split>.{bin,idx}``) with the same dictionary and
the same binarized files.  :func:`write_corpus` does the binarization for sentences
from elsewhere (real text).  The dictionary and the datasets are what
``fairseq-preprocess --only-source --srcdict dict.txt`` writes (fairseq's
``Dictionary`` and ``VocabularyDatasetBinarizer``, ``mmap`` datasets, EOS appended),
independently of ``xlint preprocess``.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from fairseq.binarizer import FileBinarizer, VocabularyDatasetBinarizer
from fairseq.data import Dictionary
from fairseq.tasks import FairseqTask

#: the splits of the ``xlm_mlm`` layout, in the order their sentences are drawn
SPLITS: Tuple[str, ...] = ("train", "valid", "test", "metadev")
DISTRIBUTIONS: Tuple[str, ...] = ("uniform", "zipf")
DATASET_IMPL = "mmap"
#: fairseq-preprocess's default: the dictionary is padded to a multiple of 8 symbols
DICTIONARY_PADDING_FACTOR = 8
METADATA_FILE = "metadata.json"
DICT_FILE = "dict.txt"

#: sentences[lang][split]: one string of space-separated words per sentence
Sentences = Dict[str, Dict[str, List[str]]]


def numbered_words(language: str, size: int) -> List[str]:
    """``size`` pseudo-words ``<language>0``, ``<language>1``, ... (most frequent first under Zipf)."""
    return [f"{language}{index}" for index in range(size)]


@dataclass(frozen=True)
class CorpusSpec:
    """What to draw: languages (the order of ``vocabularies``), their words, split sizes, lengths, seed."""

    #: language -> its words; every language has its own, disjoint from the others'
    vocabularies: Mapping[str, Sequence[str]]
    #: language -> split -> number of sentences; every language has a ``train`` split
    sentences: Mapping[str, Mapping[str, int]]
    #: words per sentence, both ends included
    length: Tuple[int, int] = (3, 12)
    distribution: str = "uniform"
    #: s of the Zipf distribution (``distribution="zipf"`` only)
    zipf_exponent: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.vocabularies:
            raise ValueError("a corpus needs at least one language")
        if set(self.sentences) != set(self.vocabularies):
            raise ValueError(f"languages of the split sizes {sorted(self.sentences)} differ from "
                             f"those of the vocabularies {sorted(self.vocabularies)}")
        low, high = self.length
        if not 1 <= low <= high:
            raise ValueError(f"sentence length range {self.length} must satisfy 1 <= min <= max")
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution {self.distribution!r} is not one of {DISTRIBUTIONS}")
        for language in self.languages:
            _check_split_sizes(language, self.sentences[language])
        _check_vocabularies(self.vocabularies)

    @classmethod
    def numbered(cls, languages: Sequence[str], words_per_language: int, sentences: Mapping[str, int],
                 **options: object) -> "CorpusSpec":
        """Every language with ``words_per_language`` :func:`numbered_words` and the same split sizes."""
        return cls(vocabularies={lang: numbered_words(lang, words_per_language) for lang in languages},
                   sentences={lang: dict(sentences) for lang in languages}, **options)

    @property
    def languages(self) -> List[str]:
        return list(self.vocabularies)

    def splits(self, language: str) -> List[str]:
        """The language's splits, in :data:`SPLITS` order."""
        return [split for split in SPLITS if split in self.sentences[language]]


def _check_split_sizes(language: str, sizes: Mapping[str, int]) -> None:
    unknown = sorted(set(sizes) - set(SPLITS))
    if unknown:
        raise ValueError(f"{language}: unknown splits {unknown} (the layout has {SPLITS})")
    if "train" not in sizes:
        raise ValueError(f"{language}: no train split")
    empty = sorted(split for split, count in sizes.items() if count < 1)
    if empty:
        raise ValueError(f"{language}: splits {empty} need at least one sentence")


def _check_vocabularies(vocabularies: Mapping[str, Sequence[str]]) -> None:
    owner: Dict[str, str] = {}
    for language, words in vocabularies.items():
        if not words:
            raise ValueError(f"{language}: empty vocabulary")
        for word in words:
            if not word or word != word.strip() or len(word.split()) != 1:
                raise ValueError(f"{language}: {word!r} is not one whitespace-free word")
            if owner.setdefault(word, language) != language:
                raise ValueError(f"{word!r} is in the vocabularies of both {owner[word]} and {language}")


class _WordDraw:
    """Draws one language's words from a shared generator: uniform or Zipf over the word list."""

    def __init__(self, words: Sequence[str], distribution: str, exponent: float) -> None:
        self.words = list(words)
        self.cumulative: Optional[List[float]] = None
        if distribution == "zipf":
            self.cumulative = list(itertools.accumulate(1.0 / (rank + 1) ** exponent
                                                        for rank in range(len(self.words))))

    def sentence(self, rng: random.Random, length: int) -> str:
        if self.cumulative is None:
            return " ".join(rng.choice(self.words) for _ in range(length))
        return " ".join(rng.choices(self.words, cum_weights=self.cumulative, k=length))


def generate_sentences(spec: CorpusSpec) -> Sentences:
    """Every sentence of the spec: ``sentences[lang][split]``, the same for the same spec."""
    rng = random.Random(spec.seed)
    low, high = spec.length
    out: Sentences = {}
    for language in spec.languages:
        draw = _WordDraw(spec.vocabularies[language], spec.distribution, spec.zipf_exponent)
        out[language] = {split: [draw.sentence(rng, rng.randint(low, high))
                                 for _ in range(spec.sentences[language][split])]
                         for split in spec.splits(language)}
    return out


@dataclass
class SyntheticCorpus:
    """A written corpus: the ``xlm_mlm`` data folder, the raw sentences of every split, counts."""

    path: Path
    languages: List[str]
    #: sentences[lang][split]: the raw sentences written for that split
    sentences: Sentences = field(default_factory=dict)
    #: tokens[lang][split]: binarized tokens, the EOS of every sentence included
    tokens: Dict[str, Dict[str, int]] = field(default_factory=dict)
    dictionary_size: int = 0
    #: fairseq ``masked_lm`` layout of ``roberta_language``, when one was asked for
    roberta_path: Optional[Path] = None
    roberta_language: Optional[str] = None

    def count(self, lang: str, split: str) -> int:
        return len(self.sentences[lang][split])


def build_dictionary(train_files: Sequence[Path], max_symbols: Optional[int] = None) -> Dictionary:
    """fairseq-preprocess's dictionary of the files (``--nwordssrc max_symbols``, specials included)."""
    return FairseqTask.build_dictionary([str(path) for path in train_files], workers=1, threshold=0,
                                        nwords=max_symbols or -1, padding_factor=DICTIONARY_PADDING_FACTOR)


def binarize_file(text_file: Path, dictionary: Dictionary, output_prefix: Path) -> int:
    """``output_prefix.{bin,idx}`` from one sentence per line (EOS appended); return the token count."""
    summary = FileBinarizer.multiprocess_dataset(
        str(text_file), DATASET_IMPL, VocabularyDatasetBinarizer(dictionary, append_eos=True),
        str(output_prefix), vocab_size=len(dictionary), num_workers=1)
    return summary.num_tok


def write_corpus(sentences: Mapping[str, Mapping[str, Sequence[str]]], data_dir: Path, *,
                 roberta_dir: Optional[Path] = None, roberta_language: Optional[str] = None,
                 max_dictionary_size: Optional[int] = None, raw_dir: Optional[Path] = None) -> SyntheticCorpus:
    """Binarize ``sentences[lang][split]`` into the ``xlm_mlm`` layout (and roberta's, for one language).

    The dictionary is built from every language's train split.  ``raw_dir`` keeps the
    text files that were binarized (``<lang>.<split>.txt``); without it they go to a
    temporary folder.  ``roberta_language`` defaults to the first language when
    ``roberta_dir`` is given.
    """
    corpus = SyntheticCorpus(path=data_dir, languages=list(sentences),
                             sentences={lang: {split: list(lines) for split, lines in splits.items()}
                                        for lang, splits in sentences.items()})
    if roberta_dir is not None:
        roberta_language = roberta_language or corpus.languages[0]
        if roberta_language not in sentences:
            raise ValueError(f"roberta language {roberta_language!r} is not one of {corpus.languages}")
    with _text_folder(raw_dir) as text_dir:
        text_files = _write_text_files(corpus.sentences, text_dir)
        dictionary = build_dictionary([text_files[lang]["train"] for lang in corpus.languages],
                                      max_dictionary_size)
        data_dir.mkdir(parents=True, exist_ok=True)
        dictionary.save(str(data_dir / DICT_FILE))
        corpus.dictionary_size = len(dictionary)
        for language in corpus.languages:
            (data_dir / language).mkdir(exist_ok=True)
            corpus.tokens[language] = {split: binarize_file(path, dictionary, data_dir / language / split)
                                       for split, path in text_files[language].items()}
    _write_metadata(corpus)
    if roberta_dir is not None:
        _copy_as_masked_lm(corpus, roberta_language, roberta_dir)
        corpus.roberta_path, corpus.roberta_language = roberta_dir, roberta_language
    return corpus


def build_synthetic_corpus(spec: CorpusSpec, data_dir: Path, *, roberta_dir: Optional[Path] = None,
                           roberta_language: Optional[str] = None, max_dictionary_size: Optional[int] = None,
                           raw_dir: Optional[Path] = None) -> SyntheticCorpus:
    """Draw the spec's sentences and write them (see :func:`write_corpus`)."""
    return write_corpus(generate_sentences(spec), data_dir, roberta_dir=roberta_dir,
                        roberta_language=roberta_language, max_dictionary_size=max_dictionary_size,
                        raw_dir=raw_dir)


@contextlib.contextmanager
def _text_folder(raw_dir: Optional[Path]) -> Iterator[Path]:
    """``raw_dir`` (kept), or a temporary folder removed afterwards."""
    if raw_dir is not None:
        raw_dir.mkdir(parents=True, exist_ok=True)
        yield raw_dir
        return
    with tempfile.TemporaryDirectory(prefix="synthetic-corpus-") as scratch:
        yield Path(scratch)


def _write_text_files(sentences: Sentences, text_dir: Path) -> Dict[str, Dict[str, Path]]:
    files: Dict[str, Dict[str, Path]] = {}
    for language, splits in sentences.items():
        files[language] = {}
        for split, lines in splits.items():
            path = text_dir / f"{language}.{split}.txt"
            path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
            files[language][split] = path
    return files


def _write_metadata(corpus: SyntheticCorpus) -> None:
    splits = {lang: {split: {"sentences": corpus.count(lang, split), "tokens": count}
                     for split, count in corpus.tokens[lang].items()} for lang in corpus.languages}
    metadata = {"languages": corpus.languages, "dict_size": corpus.dictionary_size, "splits": splits,
                "synthetic": True}
    (corpus.path / METADATA_FILE).write_text(json.dumps(metadata, indent=1) + "\n", encoding="utf-8")


def _copy_as_masked_lm(corpus: SyntheticCorpus, language: str, roberta_dir: Path) -> None:
    """roberta's ``masked_lm`` reads ``DATA/dict.txt`` and ``DATA/<split>.{bin,idx}``: one language."""
    roberta_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(corpus.path / DICT_FILE, roberta_dir / DICT_FILE)
    for split in corpus.tokens[language]:
        for ext in ("bin", "idx"):
            shutil.copyfile(corpus.path / language / f"{split}.{ext}", roberta_dir / f"{split}.{ext}")

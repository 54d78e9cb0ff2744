"""The benchmark's corpus, binarized once into roberta's layout (first language) and xlint's (all)."""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

from xlint.preprocess.synthetic_corpus import CorpusSpec, Sentences, generate_sentences, write_corpus

from .settings import SENTENCE_LENGTH, VALID_SENTENCES, ZIPF_EXPONENT


@dataclass(frozen=True)
class BenchData:
    #: fairseq ``masked_lm`` layout of the first language: DATA/{dict.txt,train,valid}
    roberta: Path
    #: ``xlm_mlm`` layout of every language: DATA/{dict.txt,metadata.json,<lang>/{train,valid}}
    xlint: Path

    @property
    def dictionary(self) -> Path:
        return self.xlint / "dict.txt"

    @classmethod
    def under(cls, work: Path) -> "BenchData":
        return cls(roberta=work / "data_roberta", xlint=work / "data_xlint")


def synthetic_spec(args: argparse.Namespace) -> CorpusSpec:
    """Zipf-distributed pseudo-words, ``--vocab`` of them per language, ``--train-tokens`` words each.

    The dictionary keeps the ``--vocab`` most frequent words of all languages together
    (the rarest words of each language become ``<unk>``), the same number of rows for
    every variant.
    """
    mean_words = sum(SENTENCE_LENGTH) / 2
    return CorpusSpec.numbered(
        args.language_list, args.vocab,
        {"train": math.ceil(args.train_tokens / mean_words), "valid": VALID_SENTENCES},
        length=SENTENCE_LENGTH, distribution="zipf", zipf_exponent=ZIPF_EXPONENT, seed=args.seed)


def repeated_lines(path: Path, n_words: int) -> List[str]:
    """The file's non-empty lines, repeated until they hold at least ``n_words`` words."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise SystemExit(f"{path} holds no text")
    out, count = [], 0
    while count < n_words:
        for line in lines:
            out.append(line)
            count += len(line.split())
            if count >= n_words:
                break
    return out


def real_text(raw_dir: Path, languages: List[str], n_words: int) -> Sentences:
    """``raw_dir/<lang>.txt`` per language: train repeated up to ``n_words``, valid its first lines."""
    sentences: Dict[str, Dict[str, List[str]]] = {}
    for lang in languages:
        train = repeated_lines(raw_dir / f"{lang}.txt", n_words)
        sentences[lang] = {"train": train, "valid": train[: max(1, min(VALID_SENTENCES, len(train) // 20))]}
    return sentences


def build_data(work: Path, args: argparse.Namespace) -> BenchData:
    """Binarize once; every run of every variant reads these folders."""
    data = BenchData.under(work)
    sentences = (real_text(args.raw_dir, args.language_list, args.train_tokens) if args.raw_dir is not None
                 else generate_sentences(synthetic_spec(args)))
    write_corpus(sentences, data.xlint, roberta_dir=data.roberta, roberta_language=args.language_list[0],
                 max_dictionary_size=args.vocab, raw_dir=work / "raw")
    return data

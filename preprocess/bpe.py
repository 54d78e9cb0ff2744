"""One joint subword model for all languages: sampling its training text, learning it, applying it.

Training text is a temperature-sampled mix of the languages' train splits
(:func:`sample_bpe_training_text`), so that low-resource languages get more of
the vocabulary than their share of the data would give them (XLM, Sec. 3.1).

Two kinds of model (``--bpe``):

* ``subword_nmt`` (default): subword-nmt BPE with ``total_symbols`` so that the
  vocabulary size counts characters as well as merges; stored as ``bpe/codes``;
  pieces carry the ``@@`` continuation marker.
* ``sentencepiece``: a SentencePiece model (unigram by default, ``bpe`` on
  request) trained on the same Moses-tokenised text, without BOS/EOS/PAD pieces
  (fairseq adds its own); stored as ``bpe/spm.model`` and ``bpe/spm.vocab``.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..analysis.seeding import stable_seed
from ..analysis.temperature import temperature_probabilities
from .errors import PreprocessError
from .textio import atomic_output, atomic_text_writer, read_own_lines

logger = logging.getLogger(__name__)

SUBWORD_NMT = "subword_nmt"
SENTENCEPIECE = "sentencepiece"
BPE_KINDS = (SUBWORD_NMT, SENTENCEPIECE)
SPM_MODEL_TYPES = ("unigram", "bpe")
DEFAULT_VOCAB_SIZE = 32000
DEFAULT_BPE_SAMPLE_SENTENCES = 1_000_000
#: SentencePiece character coverage for a mix of many scripts (rarer characters become <unk>).
SPM_CHARACTER_COVERAGE = 0.9999
#: SentencePiece trains on at most this many sentences of the sample (a random subset beyond it).
SPM_MAX_TRAINING_SENTENCES = 10_000_000
_SPM_ERROR_PREFIX = re.compile(r"^[A-Z_]+: \S+ \[.*?\] ")


def bpe_model_files(kind: str) -> tuple[str, ...]:
    """File names under ``OUT/bpe/`` that make up a model of ``kind``; the first is the one hashed."""
    if kind == SUBWORD_NMT:
        return ("codes",)
    if kind == SENTENCEPIECE:
        return ("spm.model", "spm.vocab")
    raise ValueError(f"unknown BPE kind {kind!r}; expected one of {BPE_KINDS}")


# --------------------------------------------------------------------------- sampling


def bpe_sample_quotas(train_sentences: Mapping[str, int], total: int, temperature: float) -> dict[str, dict]:
    """Per language, the temperature probability and the number of sentences to sample.

    The mix has ``min(total, sum of train sizes)`` sentences split by
    P_i = q_i^(1/T) / sum_j q_j^(1/T); every language gets at least one.
    """
    languages = list(train_sentences)
    sizes = [train_sentences[language] for language in languages]
    probabilities = temperature_probabilities(sizes, temperature)
    mix_size = min(total, sum(sizes))
    return {
        language: {"probability": float(probability), "sentences": max(1, int(round(probability * mix_size)))}
        for language, probability in zip(languages, probabilities)
    }


def _line_multiplicities(available: int, wanted: int, rng: np.random.Generator) -> np.ndarray:
    """How often each of ``available`` lines enters a sample of ``wanted`` lines.

    Each line is taken ``wanted // available`` times and a random
    ``wanted % available`` of them once more (so no line is repeated needlessly).
    """
    multiplicities = np.full(available, wanted // available, dtype=np.int64)
    multiplicities[rng.choice(available, size=wanted % available, replace=False)] += 1
    return multiplicities


def sample_bpe_training_text(
    train_files: Mapping[str, Path], quotas: Mapping[str, dict], train_sentences: Mapping[str, int],
    destination: Path, seed: int,
) -> None:
    """Write the temperature-sampled mix of train splits described by ``quotas`` to ``destination``."""
    with atomic_text_writer(destination) as output:
        for language, path in train_files.items():
            rng = np.random.default_rng([seed, stable_seed("bpe-sample", language)])
            multiplicities = _line_multiplicities(train_sentences[language], quotas[language]["sentences"], rng)
            for line, copies in zip(read_own_lines(path), multiplicities):
                for _ in range(copies):
                    output.write(line + "\n")


# --------------------------------------------------------------------------- learning


def _character_symbols(sample: Path) -> int:
    """Distinct characters of the sample, word-internal and word-final counted apart (as subword-nmt does)."""
    internal: set[str] = set()
    final: set[str] = set()
    for line in read_own_lines(sample):
        for word in line.split():
            internal.update(word[:-1])
            final.add(word[-1])
    return len(internal) + len(final)


def _learn_subword_nmt(sample: Path, bpe_dir: Path, vocab_size: int, workers: int, progress: bool) -> None:
    from subword_nmt.learn_bpe import learn_bpe

    show_progress = progress and sys.stderr.isatty()  # subword-nmt's progress bar and notes go to stderr
    with atomic_output(bpe_dir / "codes") as temporary:
        with open(sample, encoding="utf-8") as infile, open(temporary, "w", encoding="utf-8") as outfile, \
                contextlib.redirect_stderr(sys.stderr if show_progress else io.StringIO()) as notes:
            learn_bpe(infile, outfile, vocab_size, total_symbols=True, num_workers=workers)
        if not show_progress:
            for note in notes.getvalue().splitlines():
                if note.startswith(("Number of", "Reducing", "no pair")):
                    logger.info("subword-nmt: %s", note)
        with open(temporary, encoding="utf-8") as codes:
            merges = sum(1 for line in codes if not line.startswith("#version"))
        if merges == 0:
            raise PreprocessError(
                f"--vocab-size {vocab_size} leaves no room for BPE merges: the training text already has "
                f"{_character_symbols(sample)} character symbols; choose a larger vocabulary"
            )


def _learn_sentencepiece(sample: Path, bpe_dir: Path, vocab_size: int, workers: int, seed: int,
                         model_type: str) -> None:
    import sentencepiece

    bpe_dir.mkdir(parents=True, exist_ok=True)
    prefix = bpe_dir / f".spm.partial-{os.getpid()}"
    sentencepiece.set_random_generator_seed(seed)
    try:
        sentencepiece.SentencePieceTrainer.train(
            input=str(sample), model_prefix=str(prefix), vocab_size=vocab_size, model_type=model_type,
            character_coverage=SPM_CHARACTER_COVERAGE, num_threads=workers, hard_vocab_limit=False,
            input_sentence_size=SPM_MAX_TRAINING_SENTENCES, shuffle_input_sentence=True,
            bos_id=-1, eos_id=-1, pad_id=-1, unk_id=0, minloglevel=2,
            normalization_rule_name="identity",  # the text is normalised already; keep ZWJ/ZWNJ
        )
    except (RuntimeError, OSError) as error:
        reason = _SPM_ERROR_PREFIX.sub("", str(error).strip().splitlines()[-1])
        raise PreprocessError(f"sentencepiece could not train a {vocab_size}-piece model: {reason}") from None
    # the vocab file goes first so that spm.model, the file checked, appears last
    for name in ("spm.vocab", "spm.model"):
        os.replace(f"{prefix}.{name.split('.')[1]}", bpe_dir / name)


def learn_bpe_model(kind: str, sample: Path, bpe_dir: Path, vocab_size: int, *, workers: int = 1, seed: int = 1,
                    spm_model_type: str = "unigram", progress: bool = True) -> None:
    """Learn a ``kind`` model with ``vocab_size`` symbols from ``sample`` into ``bpe_dir``."""
    if kind == SUBWORD_NMT:
        _learn_subword_nmt(sample, bpe_dir, vocab_size, workers, progress)
    elif kind == SENTENCEPIECE:
        _learn_sentencepiece(sample, bpe_dir, vocab_size, workers, seed, spm_model_type)
    else:
        raise ValueError(f"unknown BPE kind {kind!r}; expected one of {BPE_KINDS}")


# --------------------------------------------------------------------------- applying


class BpeEncoder:
    """Callable ``tokenised line -> space-separated subword pieces`` for a model in ``bpe_dir``.

    The underlying model is loaded on first use and not pickled, so an instance
    is cheap to send to worker processes.
    """

    def __init__(self, kind: str, bpe_dir: Path) -> None:
        bpe_model_files(kind)  # validates kind
        self.kind = kind
        self.bpe_dir = Path(bpe_dir)
        self._model: Any = None

    def __getstate__(self) -> dict:
        return {"kind": self.kind, "bpe_dir": self.bpe_dir}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["kind"], state["bpe_dir"])

    def _load(self) -> Any:
        if self.kind == SUBWORD_NMT:
            from subword_nmt.apply_bpe import BPE

            with open(self.bpe_dir / "codes", encoding="utf-8") as codes:
                try:
                    return BPE(codes)
                except SystemExit:  # subword-nmt exits on a malformed codes file
                    raise PreprocessError(f"{self.bpe_dir / 'codes'} is not a valid subword-nmt codes file") from None
        import sentencepiece

        return sentencepiece.SentencePieceProcessor(model_file=str(self.bpe_dir / "spm.model"))

    def pieces(self, line: str) -> list[str]:
        """The subword pieces of a tokenised line."""
        if self._model is None:
            self._model = self._load()
        if not line.strip():
            return []
        if self.kind == SUBWORD_NMT:
            return self._model.segment(line).split()
        return self._model.encode(line, out_type=str)

    def __call__(self, line: str) -> str:
        return " ".join(self.pieces(line))

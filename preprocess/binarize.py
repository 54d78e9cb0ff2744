"""The shared fairseq dictionary and per-split binarisation with fairseq's own binarizer.

Output is what ``fairseq-preprocess --only-source --srcdict dict.txt
--dataset-impl mmap`` writes: ``<prefix>.bin``/``<prefix>.idx`` memory-mapped
indexed datasets, one sentence per item, each ending with the EOS index.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Iterable

import torch
from fairseq.binarizer import BinarizeSummary, FileBinarizer, VocabularyDatasetBinarizer
from fairseq.data import Dictionary

from .parallel import useful_workers
from .textio import atomic_output, read_own_lines, temporary_sibling

DATASET_IMPL = "mmap"
#: fairseq-preprocess's default: the dictionary is padded to a multiple of 8 symbols.
DICTIONARY_PADDING_FACTOR = 8
#: Below this many bytes per worker a split is binarised on fewer processes.
_MIN_BYTES_PER_WORKER = 4 << 20


def count_tokens(paths: Iterable[Path]) -> Counter:
    """Whitespace-token counts over all lines of ``paths``."""
    counts: Counter = Counter()
    for path in paths:
        for line in read_own_lines(path):
            counts.update(line.split())
    return counts


def build_shared_dictionary(bpe_train_files: Iterable[Path], dict_path: Path) -> int:
    """Build the fairseq dictionary of all BPE'd train text, save it to ``dict_path``; return its size.

    fairseq's ``finalize`` orders symbols by frequency with ties broken by the
    symbol itself, so the dictionary does not depend on the order of the files.
    """
    dictionary = Dictionary()
    for symbol, count in count_tokens(bpe_train_files).items():
        dictionary.add_symbol(symbol, n=count)
    dictionary.finalize(padding_factor=DICTIONARY_PADDING_FACTOR)
    with atomic_output(dict_path) as temporary:
        dictionary.save(str(temporary))
    return len(dictionary)


class FastVocabularyBinarizer(VocabularyDatasetBinarizer):
    """fairseq's ``VocabularyDatasetBinarizer`` (EOS appended, unknowns counted) with a faster line encoder.

    ``Dictionary.encode_line`` fills a torch tensor one element at a time, which
    dominates binarisation time; this builds the same ids from a list at once.
    """

    def binarize_line(self, line: str, summary: BinarizeSummary) -> torch.IntTensor:
        if summary.replaced is None:
            summary.replaced = Counter()
        words = self.tokenize(line)
        unk_index = self.dict.unk_index
        ids = [self.dict.indices.get(word, unk_index) for word in words]
        summary.replaced.update(
            word for word, index in zip(words, ids) if index == unk_index and word != self.dict.unk_word
        )
        ids.append(self.dict.eos_index)
        summary.num_seq += 1
        summary.num_tok += len(ids)
        return torch.IntTensor(ids)


def binarize_split(text_file: Path, dict_path: Path, output_prefix: Path, workers: int = 1) -> dict[str, int]:
    """Binarise ``text_file`` into ``output_prefix.{bin,idx}``; return sentence, token and unknown counts.

    Tokens include the end-of-sentence marker appended to every sentence, so
    ``tokens`` equals the sum of the dataset's item sizes.  The index file is
    moved into place last: its presence means the pair is complete.
    """
    dictionary = Dictionary.load(str(dict_path))
    partial_prefix = temporary_sibling(output_prefix)
    partial_files = {suffix: Path(f"{partial_prefix}{suffix}") for suffix in (".bin", ".idx")}
    try:
        summary = FileBinarizer.multiprocess_dataset(
            str(text_file), DATASET_IMPL, FastVocabularyBinarizer(dictionary, append_eos=True),
            str(partial_prefix), vocab_size=len(dictionary),
            num_workers=useful_workers(text_file, workers, _MIN_BYTES_PER_WORKER),
        )
        for suffix, partial in partial_files.items():
            os.replace(partial, Path(f"{output_prefix}{suffix}"))
    finally:  # fairseq's per-worker pieces are named <prefix>.pt<N>.{bin,idx}
        for partial in [*partial_files.values(), *partial_prefix.parent.glob(f"{partial_prefix.name}.pt*")]:
            partial.unlink(missing_ok=True)
    return {"sentences": summary.num_seq, "tokens": summary.num_tok, "unknown": summary.num_replaced}

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
    from fairseq.data import Dictionary

    dictionary = Dictionary()
    for symbol, count in count_tokens(bpe_train_files).items():
        dictionary.add_symbol(symbol, n=count)
    dictionary.finalize(padding_factor=DICTIONARY_PADDING_FACTOR)
    with atomic_output(dict_path) as temporary:
        dictionary.save(str(temporary))
    return len(dictionary)


def binarize_split(text_file: Path, dict_path: Path, output_prefix: Path, workers: int = 1) -> dict[str, int]:
    """Binarise ``text_file`` into ``output_prefix.{bin,idx}``; return sentence, token and unknown counts.

    Tokens include the end-of-sentence marker appended to every sentence, so
    ``tokens`` equals the sum of the dataset's item sizes.  The index file is
    moved into place last: its presence means the pair is complete.
    """
    from fairseq.binarizer import FileBinarizer, VocabularyDatasetBinarizer
    from fairseq.data import Dictionary

    dictionary = Dictionary.load(str(dict_path))
    useful_workers = max(1, min(workers, text_file.stat().st_size // _MIN_BYTES_PER_WORKER))
    partial_prefix = temporary_sibling(output_prefix)
    partial_files = {suffix: Path(f"{partial_prefix}{suffix}") for suffix in (".bin", ".idx")}
    try:
        summary = FileBinarizer.multiprocess_dataset(
            str(text_file), DATASET_IMPL, VocabularyDatasetBinarizer(dictionary, append_eos=True),
            str(partial_prefix), vocab_size=len(dictionary), num_workers=useful_workers,
        )
        for suffix, partial in partial_files.items():
            os.replace(partial, Path(f"{output_prefix}{suffix}"))
    finally:
        for partial in partial_files.values():
            partial.unlink(missing_ok=True)
    return {"sentences": summary.num_seq, "tokens": summary.num_tok, "unknown": summary.num_replaced}

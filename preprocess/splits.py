"""Deduplication, the fixed-seed train/valid/test/metadev split and train subsampling.

A language comes either as one file (``all``), from which every held-out split
is carved at random, or as the user's own split files, of which ``train`` is
required; a held-out split the user did not give is then carved from ``train``.

* Deduplication (optional) keeps the first occurrence of each normalised line
  over all of a language's sources, reading them in the order test, valid,
  metadev, train, so a user's held-out sentence never also appears in train.
  Lines are compared by a 64-bit BLAKE2b hash, which keeps memory at 8 bytes a
  line (a collision among 10^8 lines has probability ~3e-4).
* Carving shuffles the pool with ``numpy.random.default_rng`` seeded from the
  run's seed and the *base* language code, so ``fr`` and ``fr_l`` made from the
  same file get identical valid/test/metadev sets, and takes valid, test and
  metadev (in that order) from the front.  The rest is train.
* Subsampling keeps N train sentences chosen with a generator seeded from the
  seed and the *full* code (``fr_l``).
* Every split file keeps the sentences in their input order.

Held-out sizes default to 5% of the pool each, at least 1 and at most 5,000
sentences (:func:`default_heldout_size`).
"""
from __future__ import annotations

import hashlib
import logging
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..analysis.seeding import stable_seed
from .errors import PreprocessError
from .textio import atomic_text_writer, read_own_lines

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test", "metadev")
HELDOUT_SPLITS = ("valid", "test", "metadev")
WHOLE_FILE_SOURCE = "all"
#: Order in which sources claim duplicated lines: held-out data wins over train.
_DEDUPE_PRIORITY = ("test", "valid", "metadev", "train", WHOLE_FILE_SOURCE)
DEFAULT_HELDOUT_FRACTION = 0.05
DEFAULT_HELDOUT_CAP = 5000
_DROPPED = -1


def default_heldout_size(pool_sentences: int) -> int:
    """5% of the pool, at least 1 and at most 5,000 sentences."""
    return max(1, min(DEFAULT_HELDOUT_CAP, int(pool_sentences * DEFAULT_HELDOUT_FRACTION)))


def _line_hashes(path: Path) -> np.ndarray:
    hashes = (
        int.from_bytes(hashlib.blake2b(line.encode("utf-8"), digest_size=8).digest(), "little")
        for line in read_own_lines(path)
    )
    return np.fromiter(hashes, dtype=np.uint64)


def _first_occurrence_masks(hashes: Mapping[str, np.ndarray], order: Sequence[str]) -> dict[str, np.ndarray]:
    """Per source, True where the line is the first of its kind in ``order``."""
    joined = np.concatenate([hashes[name] for name in order]) if order else np.zeros(0, np.uint64)
    keep = np.zeros(joined.size, dtype=bool)
    keep[np.unique(joined, return_index=True)[1]] = True
    masks, start = {}, 0
    for name in order:
        masks[name] = keep[start:start + hashes[name].size]
        start += hashes[name].size
    return masks


@dataclass(frozen=True)
class SplitOptions:
    """How to split one language; sizes of None mean :func:`default_heldout_size`."""

    heldout_sizes: Mapping[str, int | None]
    dedupe: bool
    seed: int
    split_seed_key: str
    """Seeds the carving; the base language code."""
    subsample: int | None = None
    subsample_seed_key: str = ""
    """Seeds the subsampling; the full language code."""


def _carve_sizes(missing: Sequence[str], pool_size: int, options: SplitOptions, what: str) -> dict[str, int]:
    sizes = {}
    for split in missing:
        requested = options.heldout_sizes.get(split)
        sizes[split] = default_heldout_size(pool_size) if requested is None else requested
    if sum(sizes.values()) >= pool_size:
        held_out = "".join(f", {split} {size}" for split, size in sizes.items())
        raise PreprocessError(
            f"{what}: {pool_size} usable train sentences, too few for a train split{held_out};"
            " give more text or lower --valid-size/--test-size/--metadev-size"
        )
    return sizes


def _assign_pool(kept: np.ndarray, sizes: Mapping[str, int], options: SplitOptions) -> np.ndarray:
    """Split indices for the pool source: carved held-out splits, train for the rest."""
    assignment = np.full(kept.size, _DROPPED, dtype=np.int8)
    candidates = np.flatnonzero(kept)
    assignment[candidates] = SPLITS.index("train")
    shuffled = np.random.default_rng([options.seed, stable_seed(options.split_seed_key)]).permutation(candidates)
    start = 0
    for split, size in sizes.items():
        assignment[shuffled[start:start + size]] = SPLITS.index(split)
        start += size
    return assignment


def _subsample_train(assignments: Mapping[str, np.ndarray], options: SplitOptions, what: str) -> int | None:
    """Drop all but ``options.subsample`` train sentences; return the train size before, if it shrank."""
    train_id = SPLITS.index("train")
    train_positions = [(name, np.flatnonzero(values == train_id)) for name, values in assignments.items()]
    available = sum(positions.size for _, positions in train_positions)
    if options.subsample is None or options.subsample >= available:
        if options.subsample is not None:
            logger.warning("%s: --subsample %d is not below the %d train sentences; keeping them all",
                           what, options.subsample, available)
        return None
    rng = np.random.default_rng([options.seed, stable_seed("subsample", options.subsample_seed_key)])
    chosen = np.zeros(available, dtype=bool)
    chosen[rng.choice(available, size=options.subsample, replace=False)] = True
    start = 0
    for name, positions in train_positions:
        assignments[name][positions[~chosen[start:start + positions.size]]] = _DROPPED
        start += positions.size
    return available


def _write_splits(sources: Mapping[str, Path], assignments: Mapping[str, np.ndarray], out_dir: Path) -> dict[str, int]:
    counts = dict.fromkeys(SPLITS, 0)
    with ExitStack() as stack:
        writers = [stack.enter_context(atomic_text_writer(out_dir / f"{split}.tok")) for split in SPLITS]
        for name, path in sources.items():
            for line, split_id in zip(read_own_lines(path), assignments[name]):
                if split_id != _DROPPED:
                    writers[split_id].write(line + "\n")
                    counts[SPLITS[split_id]] += 1
    return counts


def split_language(sources: Mapping[str, Path], out_dir: Path, options: SplitOptions, what: str) -> dict:
    """Write ``out_dir/{train,valid,test,metadev}.tok`` from normalised source files.

    ``sources`` maps ``"all"`` (one file per language) or split names (the
    user's split files, ``train`` required) to normalised text files.  Returns
    ``{"sentences": {split: n}, "duplicates_removed": n, "train_before_subsample": n | None}``.
    """
    order = [name for name in _DEDUPE_PRIORITY if name in sources]
    hashes = {name: _line_hashes(sources[name]) for name in order}
    if options.dedupe:
        kept = _first_occurrence_masks(hashes, order)
    else:
        kept = {name: np.ones(values.size, dtype=bool) for name, values in hashes.items()}
    pool_name = WHOLE_FILE_SOURCE if WHOLE_FILE_SOURCE in sources else "train"
    missing = [split for split in HELDOUT_SPLITS if split not in sources]
    sizes = _carve_sizes(missing, int(kept[pool_name].sum()), options, what)
    assignments = {pool_name: _assign_pool(kept[pool_name], sizes, options)}
    for name in order:
        if name != pool_name:
            assignments[name] = np.where(kept[name], SPLITS.index(name), _DROPPED).astype(np.int8)
    train_before = _subsample_train(assignments, options, what)
    counts = _write_splits({name: sources[name] for name in order}, assignments, out_dir)
    return {
        "sentences": counts,
        "duplicates_removed": int(sum(values.size - int(kept[name].sum()) for name, values in hashes.items())),
        "train_before_subsample": train_before,
    }

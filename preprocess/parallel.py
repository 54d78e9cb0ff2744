"""Apply a picklable per-line function to a stream of lines on several processes."""
from __future__ import annotations

import itertools
import multiprocessing
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from tqdm import tqdm

from .textio import atomic_text_writer

LineFunction = Callable[[str], str]
_CHUNK_LINES = 2000
_worker_function: LineFunction | None = None


@dataclass(frozen=True)
class TransformCounts:
    """How many lines went in and how many (non-empty) lines came out."""

    lines_in: int
    lines_out: int


def useful_workers(path: Path, workers: int, min_bytes_per_worker: int = 256 << 10) -> int:
    """``workers``, reduced so that each process gets at least ``min_bytes_per_worker`` of ``path``.

    Starting a process pool costs a fraction of a second, more than the work on a small file.
    """
    return max(1, min(workers, path.stat().st_size // min_bytes_per_worker))


def _install_worker_function(function: LineFunction) -> None:
    """Pool initializer: keep ``function`` for the chunks; leave Ctrl-C to the parent, which ends the pool."""
    global _worker_function
    _worker_function = function
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _apply_worker_function(chunk: list[str]) -> list[str]:
    assert _worker_function is not None, "worker started without its function"
    try:
        return [_worker_function(line) for line in chunk]
    except SystemExit as exit_request:  # would kill the worker and leave the pool waiting forever
        raise RuntimeError(f"line function called sys.exit({exit_request.code!r}) in a worker") from None


def _chunks(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(lines)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _map_chunks(function: LineFunction, chunks: Iterator[list[str]], workers: int) -> Iterator[list[str]]:
    if workers <= 1:
        yield from ([function(line) for line in chunk] for chunk in chunks)
        return
    context = multiprocessing.get_context("fork")
    with context.Pool(workers, initializer=_install_worker_function, initargs=(function,)) as pool:
        yield from pool.imap(_apply_worker_function, chunks, chunksize=1)


def transform_lines_to_file(
    lines: Iterable[str],
    function: LineFunction,
    destination: Path,
    *,
    workers: int = 1,
    description: str = "",
    progress: bool = True,
    total: int | None = None,
) -> TransformCounts:
    """Write ``function(line)`` for every line to ``destination`` (atomically), in input order.

    Lines that come out empty are dropped.  ``workers`` > 1 uses a process pool
    (fork), sending ``function`` to each worker once.
    """
    lines_in = lines_out = 0
    bar = tqdm(total=total, desc=description, unit=" lines", disable=None if progress else True, leave=False)
    with bar, atomic_text_writer(destination) as output:
        for chunk in _map_chunks(function, _chunks(lines, _CHUNK_LINES), workers):
            kept = [line for line in chunk if line]
            if kept:
                output.write("\n".join(kept))
                output.write("\n")
            lines_in += len(chunk)
            lines_out += len(kept)
            bar.update(len(chunk))
    return TransformCounts(lines_in=lines_in, lines_out=lines_out)

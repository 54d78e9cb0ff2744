"""File helpers: strict reading of the user's text, atomic writing of every output.

Every file that preprocessing produces is written under a temporary name in the
same directory and moved into place with :func:`os.replace` only once complete,
so an interrupted run never leaves a file that looks finished.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from .errors import PreprocessError

UTF8_BOM = b"\xef\xbb\xbf"
_HASH_BLOCK_BYTES = 1 << 20


def check_input_file(path: Path, what: str) -> None:
    """Raise :class:`PreprocessError` unless ``path`` is an existing, non-empty regular file."""
    if not path.exists():
        raise PreprocessError(f"{what}: input file {path} does not exist")
    if not path.is_file():
        raise PreprocessError(f"{what}: input {path} is not a regular file")
    if path.stat().st_size == 0:
        raise PreprocessError(f"{what}: input file {path} is empty")


def _line_error(path: Path, line_number: int, problem: str) -> Exception:
    return PreprocessError(f"{path}:{line_number}: {problem}")


def read_numbered_user_lines(
    path: Path, error: Callable[[Path, int, str], Exception] = _line_error
) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, text)`` for the lines of a user's UTF-8 text file, without line endings.

    A UTF-8 byte-order mark at the start of the file is dropped.  Invalid UTF-8
    raises ``error(path, line number, problem)`` (a :class:`PreprocessError` naming
    the file, the 1-based line and the byte offset by default).  Only ``\\n`` (and
    ``\\r\\n``) end a line.
    """
    with open(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if line_number == 1 and raw.startswith(UTF8_BOM):
                raw = raw[len(UTF8_BOM):]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise error(path, line_number,
                            f"invalid UTF-8 ({err.reason} at byte {err.start} of the line)") from None
            yield line_number, text.rstrip("\r\n")


def read_user_lines(path: Path) -> Iterator[str]:
    """The lines of a user's UTF-8 text file (see :func:`read_numbered_user_lines`)."""
    for _, text in read_numbered_user_lines(path):
        yield text


def read_own_lines(path: Path) -> Iterator[str]:
    """Yield the lines of a file this package wrote (UTF-8, ``\\n`` endings), without ``\\n``."""
    with open(path, "r", encoding="utf-8", newline="\n") as handle:
        for line in handle:
            yield line[:-1] if line.endswith("\n") else line


def count_own_lines(path: Path) -> int:
    """Number of lines in a file this package wrote."""
    with open(path, "rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(_HASH_BLOCK_BYTES), b""))


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_HASH_BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def temporary_sibling(path: Path) -> Path:
    """A name next to ``path`` for writing it before :func:`os.replace` (hidden, per process)."""
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success move it to ``path``, on error delete it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(path)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_text_writer(path: Path) -> Iterator[IO[str]]:
    """Open ``path`` for writing UTF-8 text with ``\\n`` line endings, atomically."""
    with atomic_output(path) as temporary, open(temporary, "w", encoding="utf-8", newline="\n") as handle:
        yield handle


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8, ``\\n`` line endings), atomically."""
    with atomic_text_writer(path) as handle:
        handle.write(text)


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write ``payload`` as indented, key-sorted JSON, atomically."""
    with atomic_text_writer(path) as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, ensure_ascii=False)
        handle.write("\n")


def read_json(path: Path) -> Any:
    """Load a JSON file this package wrote; a corrupt one raises :class:`PreprocessError`."""
    try:
        with open(path, "r", encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as error:
        raise PreprocessError(f"cannot read {path}: {error}") from None

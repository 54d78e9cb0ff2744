"""Step stamps: a finished step records a key computed from everything it depends on.

A step is skipped on a re-run when its stamp holds the same key and all its
output files exist.  Keys chain: a step's key includes the keys of the steps
whose outputs it reads, so changing an early option redoes everything after it.
A stamp is written (atomically) only after the step's outputs are in place.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

from .textio import read_json, write_json_atomic


def hash_key(*parts: Any) -> str:
    """Hex sha256 of the canonical JSON of ``parts`` (paths are turned into strings)."""
    canonical = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class StepStamps:
    """The stamps of one output directory, kept as ``<stamp_dir>/<step>.json``."""

    def __init__(self, stamp_dir: Path) -> None:
        self.stamp_dir = stamp_dir

    def _path(self, step: str) -> Path:
        return self.stamp_dir / f"{step}.json"

    def finished_result(self, step: str, key: str, outputs: Iterable[Path]) -> dict | None:
        """The result recorded by ``step`` if it finished with ``key`` and its outputs exist, else None."""
        path = self._path(step)
        if not path.is_file():
            return None
        stamp = read_json(path)
        if stamp.get("key") != key or not all(Path(output).exists() for output in outputs):
            return None
        return stamp.get("result", {})

    def mark_finished(self, step: str, key: str, result: dict | None = None) -> None:
        """Record that ``step`` finished with ``key`` (call after its outputs are in place)."""
        write_json_atomic(self._path(step), {"key": key, "result": result or {}})

"""Per-update rows of a training-time probe in a JSONL file, kept consistent across resumes.

Probes that measure the model during ``fairseq-train`` (the gradient-similarity probe of
pretraining, the training curves of fine-tuning) write one JSON object per row with its
``"update"``.  Rank 0 appends rows line by line (flushed and fsynced); a process that starts
training at update U first drops the rows of updates >= U (rows that an interrupted run measured
after its last checkpoint, and the row of U itself, which the resumed run measures again), so
no update appears twice and a resumed run's file equals an uninterrupted run's.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Dict, List, Sequence


class UpdateRowsLog:
    """A JSONL file of rows keyed by ``"update"``: append line by line, drop the rows a resumed run redoes."""

    def __init__(self, path: str):
        self.path = path

    def read(self) -> List[Dict[str, Any]]:
        return read_rows(self.path)

    def keep_before(self, update: int) -> int:
        """Rewrite the file (atomically) without rows of updates >= ``update``; the number dropped."""
        if not os.path.exists(self.path):
            return 0
        rows = self.read()
        kept = [r for r in rows if int(r["update"]) < update]
        if len(kept) == len(rows) and _ends_with_newline(self.path):
            return 0
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(prefix=".rows.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                for row in kept:
                    f.write(json.dumps(row) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return len(rows) - len(kept)

    def append(self, rows: Sequence[Dict[str, Any]]) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            for row in rows:
                os.write(fd, (json.dumps(row) + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)


def _ends_with_newline(path: str) -> bool:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return True
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def read_rows(path: str) -> List[Dict[str, Any]]:
    """The complete rows of a JSONL file of update rows (a torn last line, from a crash, is skipped)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    return rows

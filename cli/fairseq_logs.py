"""fairseq's JSON log lines (``--log-format json``): one parser for every reader in xlint.

fairseq writes ``... | <tag> | {json}`` per log interval (tag ``train_inner``), per
epoch (``train``) and per validation (``valid``, or the subset name); values are
numbers or strings of numbers.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import click


def parse_log_records(lines: Iterable[str], tag: str) -> List[Dict[str, Any]]:
    """The JSON records of the lines ``| <tag> | {...}``, in order; unparsable payloads are skipped."""
    marker = f"| {tag} | "
    records = []
    for line in lines:
        _, sep, payload = line.partition(marker)
        if sep and payload.strip().startswith("{"):
            try:
                records.append(json.loads(payload))
            except ValueError:
                continue
    return records


def as_float(value: Any) -> Optional[float]:
    """A logged value as a float (fairseq logs some numbers as strings), or None."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def validation_history(log_lines: Sequence[str]) -> List[Dict[str, Any]]:
    """The validations of a run's whole log, first to last, without those a restart superseded.

    The log is appended to by every attempt, and an attempt that resumes from a
    checkpoint at update N validates again at the updates after N: a validation at
    update u replaces every validation logged before it at update u or later (an
    interrupted attempt's, or those of a run restarted from scratch).
    """
    history: List[Dict[str, Any]] = []
    for record in parse_log_records(log_lines, "valid"):
        updates = as_float(record.get("valid_num_updates"))
        if updates is None:
            continue
        history = [kept for kept in history if float(kept["valid_num_updates"]) < updates] + [record]
    return history


def resolve_log(run: Path) -> Path:
    """A run's ``train.log``: ``run`` itself if it is a file, else ``run/train.log`` (one-line error if neither)."""
    if run.is_file():
        return run
    if (run / "train.log").is_file():
        return run / "train.log"
    raise click.BadParameter(f"{run}: no train.log (the log `xlint pretrain` writes; or give the log file)",
                             param_hint="RUNS")

"""Compose and run fairseq command lines (the CLI never trains in-process)."""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Union

import click

OptionValue = Union[str, int, float, bool, None]


def user_dir_path() -> Path:
    """The folder to pass as ``--user-dir`` (found without importing fairseq)."""
    spec = importlib.util.find_spec("xlint.user_dir")
    if spec is None or not spec.submodule_search_locations:
        raise click.ClickException("xlint.user_dir is not importable: is xlint installed (`make install`)?")
    return Path(list(spec.submodule_search_locations)[0]).resolve()


def fairseq_script(name: str) -> str:
    """Path of a fairseq console script next to this interpreter, or the name on PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def options_to_args(options: Dict[str, OptionValue]) -> List[str]:
    """``{"max_update": 10, "cpu": True, "fp16": False}`` -> ``["--max-update", "10", "--cpu"]``.

    ``True`` gives a bare flag; ``False`` and ``None`` leave the option out.
    """
    args: List[str] = []
    for key, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        args.append(flag)
        if value is not True:
            args.append(str(value))
    return args


def fairseq_train_command(data: Union[str, Path], options: Dict[str, OptionValue],
                          extra_args: Sequence[str] = ()) -> List[str]:
    return [fairseq_script("fairseq-train"), str(data), "--user-dir", str(user_dir_path()),
            *options_to_args(options), *extra_args]


def run_command(command: Sequence[str], log_file: Optional[Path] = None, echo: bool = True,
                quiet: bool = False, env: Optional[Dict[str, str]] = None,
                on_line: Optional[Callable[[str], None]] = None, append: bool = False) -> None:
    """Run a command, streaming its output; fail with one line naming the log and the last message.

    Every output line is teed to ``log_file`` (appended to with ``append``, so that a
    resumed run keeps the history before it), echoed unless ``quiet``, and passed to
    ``on_line``.  ``env`` adds to (and overrides) this process's environment.
    """
    if echo:
        click.echo("+ " + shlex.join(command), err=True)
    environment = dict(os.environ, PYTHONUNBUFFERED="1")
    environment.update(env or {})
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_file, "a" if append else "w", encoding="utf-8") if log_file else None
    try:
        process = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, env=environment, bufsize=1)
        assert process.stdout is not None
        tail: List[str] = []
        for line in process.stdout:
            if log:
                log.write(line)
            tail = (tail + [line.rstrip()])[-20:]
            if not quiet:
                click.echo(line, nl=False, err=True)
            if on_line is not None:
                on_line(line)
        code = process.wait()
    except FileNotFoundError as err:
        raise click.ClickException(f"cannot run {command[0]}: {err.strerror}") from None
    finally:
        if log:
            log.close()
    if code != 0:
        last = next((line for line in reversed(tail) if line.strip() and "Traceback" not in line), "")
        where = f" (log: {log_file})" if log_file else ""
        raise click.ClickException(f"{Path(command[0]).name} exited with status {code}{where}: {last}")


@contextlib.contextmanager
def quiet_loggers() -> Iterator[None]:
    """fairseq's, hydra's and xlint's INFO and DEBUG messages off while working in-process."""
    loggers = [logging.getLogger(name) for name in ("fairseq", "hydra", "xlint")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)

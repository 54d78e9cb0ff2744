"""Compose and run fairseq command lines (the CLI never trains in-process)."""
from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

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
                quiet: bool = False, env: Optional[Dict[str, str]] = None) -> None:
    """Run a command, streaming its output (and teeing it to ``log_file``); fail with one line.

    ``env`` adds to (and overrides) this process's environment.
    """
    if echo:
        click.echo("+ " + shlex.join(command), err=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    log = open(log_file, "w", encoding="utf-8") if log_file else None
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, env=env, bufsize=1)
        assert process.stdout is not None
        tail: List[str] = []
        for line in process.stdout:
            if log:
                log.write(line)
            tail = (tail + [line.rstrip()])[-20:]
            if not quiet:
                click.echo(line, nl=False, err=True)
        code = process.wait()
    except FileNotFoundError as err:
        raise click.ClickException(f"cannot run {command[0]}: {err.strerror}") from None
    finally:
        if log:
            log.close()
    if code != 0:
        last = next((line for line in reversed(tail) if line.strip()), "")
        where = f" (log: {log_file})" if log_file else ""
        raise click.ClickException(f"{Path(command[0]).name} exited with status {code}{where}: {last}")

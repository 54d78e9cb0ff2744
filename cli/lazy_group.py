"""A click group whose subcommands are imported on first use (``xlint`` itself, ``xlint plot``).

So that ``xlint --help`` and every group's ``--help`` answer at once instead of importing
torch and fairseq: the listing comes from a table, the module only when the command runs.
"""
from __future__ import annotations

import importlib
from typing import Dict, List, Optional, Tuple

import click

#: subcommand -> (module under xlint.cli, attribute, one-line help for listings)
CommandTable = Dict[str, Tuple[str, str, str]]


def lazy_group_class(commands: CommandTable, section: str = "Commands") -> type:
    """A :class:`click.Group` subclass listing ``commands`` and importing each when it is used."""

    class LazyGroup(click.Group):
        def list_commands(self, ctx: click.Context) -> List[str]:
            return sorted(set(commands) | set(self.commands))

        def get_command(self, ctx: click.Context, name: str) -> Optional[click.Command]:
            if name in self.commands:
                return self.commands[name]
            if name not in commands:
                return None
            module_name, attribute, _ = commands[name]
            module = importlib.import_module(f"xlint.cli.{module_name}")
            return getattr(module, attribute)

        def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
            rows = [(name, commands[name][2] if name in commands else (self.commands[name].get_short_help_str()))
                    for name in self.list_commands(ctx)]
            with formatter.section(section):
                formatter.write_dl(rows)

    return LazyGroup

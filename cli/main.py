"""The ``xlint`` console script: one click group, one module per command family."""
from __future__ import annotations

import click

from .commands_data import data
from .commands_demo import demo
from .commands_preprocess import preprocess
from .commands_pretrain import pretrain, user_dir_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="xlint")
def cli() -> None:
    """xlint: negative interference and the cross-lingual transfer gap in multilingual MLMs."""


for _command in (preprocess, pretrain, user_dir_command, data, demo):
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="xlint")


if __name__ == "__main__":
    main()

"""``xlint data ...``: fetch and convert datasets.

The :data:`data` group is shared by every data command; ``fetch-demo`` prepares the
pinned real demo data (see :mod:`xlint.preprocess.demo_data`). Further commands
(``xlint data convert ...``) are added to the same group with ``@data.command``.
"""
from __future__ import annotations

from pathlib import Path

import click

from ..preprocess.demo_data import (
    CACHE_ENV_VAR,
    DEFAULT_CACHE_DIR,
    PINS,
    DemoData,
    DemoDataError,
    fetch_demo_data,
)


@click.group(name="data")
def data() -> None:
    """Fetch and convert datasets."""


def _describe(demo: DemoData) -> list[str]:
    """Human-readable lines: where each output file is and its counts."""
    lines = [f"demo data in {demo.root}"]
    for rel, counts in demo.counts.items():
        lines.append(f"  {rel:<22} {counts.sentences:>7,} sentences {counts.tokens:>9,} tokens")
    lines.append(f"  manifest: {demo.manifest_path}")
    return lines


_FETCH_DEMO_HELP = (
    "Fetch the pinned demo data and write raw text (grc, en, tr) and POS splits (grc, tr).\n\n"
    "Sources, downloaded with pip as data containers and never installed: "
    + "; ".join(f"{pin.requirement} ({pin.licence})" for pin in PINS)
    + "."
)


@data.command("fetch-demo", help=_FETCH_DEMO_HELP)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Where to put the data [default: ${CACHE_ENV_VAR} or {DEFAULT_CACHE_DIR}].",
)
@click.option("--force", is_flag=True, help="Download and convert again even if the cache is current.")
@click.option("--quiet", "-q", is_flag=True, help="Do not report progress on stderr.")
def fetch_demo(cache_dir: Path | None, force: bool, quiet: bool) -> None:
    """Run ``fetch_demo_data`` and print where the files are, with their counts."""
    try:
        demo = fetch_demo_data(cache_dir, progress=not quiet, force=force)
    except DemoDataError as error:
        raise click.ClickException(str(error)) from None
    except OSError as error:
        raise click.ClickException(f"could not prepare the demo data: {error}") from None
    for line in _describe(demo):
        click.echo(line)


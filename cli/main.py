"""The ``xlint`` console script: one click group, one module per command family.

Command modules are imported only when their command runs, so that ``xlint --help``
and ``xlint user-dir`` answer at once instead of importing torch and fairseq.
"""
from __future__ import annotations

import logging

import click

from .lazy_group import CommandTable, lazy_group_class

# fairseq's text-to-speech task logs at import: noise for every xlint command
logging.getLogger("fairseq.tasks.text_to_speech").setLevel(logging.WARNING)

#: command name -> (module under xlint.cli, attribute, one-line help for listings)
COMMANDS: CommandTable = {
    "preprocess": ("commands_preprocess", "preprocess", "Raw text per language -> fairseq-binarized data."),
    "pretrain": ("commands_pretrain", "pretrain", "Pretrain a multilingual MLM (presets over fairseq-train)."),
    "user-dir": ("commands_pretrain", "user_dir_command", "Print the path to pass as fairseq --user-dir."),
    "data": ("commands_data", "data", "Fetch the demo data and convert official downloads."),
    "demo": ("commands_demo", "demo", "The whole pipeline on real data (a few CPU minutes)."),
    "finetune": ("commands_finetune", "finetune", "Fine-tune a pretrained model downstream (POS/NER, XNLI, QA)."),
    "l0": ("commands_l0", "l0", "Per-language L0 masks over a frozen model and their comparison (Fig. 4)."),
    "evaluate": ("commands_finetune", "evaluate", "Per-language downstream scores of a fine-tuned checkpoint."),
    "interpolate": ("commands_interpolate", "interpolate", "Interpolated fine-tuned models (Wu et al. 2022)."),
    "grad-sim": ("commands_grad_sim", "grad_sim", "Gradient similarity between languages of checkpoints (Fig. 3)."),
    "fsf": ("commands_fsf", "fsf", "Fine-tuning slow and fast helpers: derive the weight sets from a layer sweep."),
    "plot": ("commands_plot", "plot", "The papers' figures (PNG + PDF): ppl, gradients, interpolation, gap, CKA."),
    "report": ("commands_report", "report", "A paper's table from finished runs, beside the published numbers."),
}


@click.group(cls=lazy_group_class(COMMANDS), context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="xlint")
def cli() -> None:
    """xlint: negative interference and the cross-lingual transfer gap in multilingual MLMs."""


def main() -> None:
    cli(prog_name="xlint")


if __name__ == "__main__":
    main()

"""``xlint plot``: the papers' figures, one subcommand per figure.

Subcommands are imported on first use from :data:`PLOTS` (subcommand -> module under
``xlint.cli``, attribute, one-line help): a new figure is one line here and its own
module (``plots_<name>.py``), whose click command saves PNG + PDF through
:mod:`.figures`.
"""
from __future__ import annotations

import click

from .lazy_group import CommandTable, lazy_group_class

#: subcommand -> (module under xlint.cli, attribute, one-line help for listings)
PLOTS: CommandTable = {
    "grad-sim": ("plots_grad_sim", "grad_sim_plot",
                 "Gradient cosine similarity over training, per pair and per layer (Wang et al. 2020, Fig. 3)."),
    "ppl": ("plots_ppl", "ppl_plot", "Validation perplexity per language over training (Wang et al. 2020, Fig. 2)."),
    "interpolation": ("plots_interpolation", "interpolation_plot",
                      "Interpolated models: 1D curves, 2D contours, delta geometry (Wu et al. 2022, Fig. 2-5)."),
}


@click.group("plot", cls=lazy_group_class(PLOTS, section="Figures"))
def plot() -> None:
    """Draw the papers' figures from xlint runs (PNG and PDF)."""

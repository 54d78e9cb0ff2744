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
    "guo-gap": ("plots_guo", "guo_gap_plot",
                "Gap P_src - mean P_tgt and training loss over updates, seed band (Guo et al. 2023, Fig. 1/2/4/5)."),
    "guo-cka": ("plots_guo", "guo_cka_plot",
                "Linear CKA to the pretrained model per layer over updates (Guo et al. 2023, Fig. 6)."),
    "guo-phases": ("plots_guo", "guo_phases_plot",
                   "A slow-fast run's phase, multipliers R/K_<set> and loss over updates (Guo et al. 2023)."),
    "guo-layers": ("plots_layer_sweep", "guo_layers_plot",
                   "Per-layer freeze / re-init scores beside direct fine-tuning (Guo et al. 2023, Fig. 3)."),
    "mono-vs-multi": ("plots_mono_vs_multi", "mono_vs_multi_plot",
                      "Mono against multilingual within-language scores per language (Wang et al. 2020, Fig. 1)."),
    "mlm-loss": ("plots_mlm_loss", "mlm_loss_plot",
                 "Average MLM training loss after warm-up per model (Wang et al. 2020, Fig. 4 right)."),
}


@click.group("plot", cls=lazy_group_class(PLOTS, section="Figures"))
def plot() -> None:
    """Draw the papers' figures from xlint runs (PNG and PDF)."""

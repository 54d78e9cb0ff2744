"""``xlint plot``: the papers' figures, one subcommand per figure.

Subcommands are imported on first use from :data:`PLOTS` (subcommand -> module under
``xlint.cli``, attribute, one-line help): a new figure is one line here and its own
module (``plots_<name>.py``), whose click command saves PNG + PDF through
:mod:`.figures`.
"""
from __future__ import annotations

import importlib
from typing import Dict, List, Optional, Tuple

import click

#: subcommand -> (module under xlint.cli, attribute, one-line help for listings)
PLOTS: Dict[str, Tuple[str, str, str]] = {
    "grad-sim": ("plots_grad_sim", "grad_sim_plot",
                 "Gradient cosine similarity over training, per pair and per layer (Wang et al. 2020, Fig. 3)."),
    "ppl": ("plots_ppl", "ppl_plot", "Validation perplexity per language over training (Wang et al. 2020, Fig. 2)."),
    "interpolation": ("plots_interpolation", "interpolation_plot",
                      "Interpolated models: 1D curves, 2D contours, delta geometry (Wu et al. 2022, Fig. 2-5)."),
}


class LazyPlotGroup(click.Group):
    """A click group whose subcommands come from :data:`PLOTS`, imported when they run."""

    def list_commands(self, ctx: click.Context) -> List[str]:
        return sorted(PLOTS)

    def get_command(self, ctx: click.Context, name: str) -> Optional[click.Command]:
        if name not in PLOTS:
            return None
        module_name, attribute, _ = PLOTS[name]
        module = importlib.import_module(f"{__package__}.{module_name}")
        return getattr(module, attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Figures"):
            formatter.write_dl([(name, PLOTS[name][2]) for name in self.list_commands(ctx)])


@click.group("plot", cls=LazyPlotGroup)
def plot() -> None:
    """Draw the papers' figures from xlint runs (PNG and PDF)."""

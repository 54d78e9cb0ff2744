"""Figure saving shared by the ``xlint plot`` commands: PNG and PDF, each written atomically."""
from __future__ import annotations

from pathlib import Path
from typing import List

FORMATS = ("png", "pdf")


def figure_stem(out: Path) -> Path:
    """``fig.png``, ``fig.pdf`` and ``fig`` all name the pair ``fig.png`` + ``fig.pdf``."""
    return out.with_suffix("") if out.suffix.lower() in (".png", ".pdf") else out


def save_figure(figure, out: Path, dpi: int = 110) -> List[Path]:
    """Save ``figure`` as ``<stem>.png`` and ``<stem>.pdf`` (atomically: nothing half-written) and close it."""
    import matplotlib.pyplot as plt

    from ..preprocess.textio import atomic_output

    stem = figure_stem(out)
    paths = []
    try:
        for fmt in FORMATS:
            path = stem.with_name(f"{stem.name}.{fmt}")
            with atomic_output(path) as temporary:
                figure.savefig(temporary, format=fmt, dpi=dpi, bbox_inches="tight")
            paths.append(path)
    finally:
        plt.close(figure)
    return paths


def new_figure(width: float, height: float, ncols: int = 1, nrows: int = 1, **kwargs):
    """A figure and its axes on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False, **kwargs)

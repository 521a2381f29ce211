"""Figures drawn without pyplot, so drawing never switches a notebook's matplotlib backend.

A :class:`matplotlib.figure.Figure` bound to its own Agg canvas renders headless whatever
backend is active; nothing here calls ``matplotlib.use`` and nothing registers with pyplot,
so figures need no closing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def new_figure(nrows: int, ncols: int, *, figsize: tuple[float, float]
               ) -> tuple[Figure, np.ndarray]:
    """A figure on an Agg canvas and its (nrows, ncols) array of axes."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def save_png(fig: Figure, path: str | Path, *, dpi: int = 120) -> None:
    """Write ``fig`` as PNG to ``path`` (callers pass an atomic temporary name)."""
    fig.savefig(path, format="png", dpi=dpi)

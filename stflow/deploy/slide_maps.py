"""PNG maps of a predicted slide's genes over its H&E, apart from building its AnnData.

Drawn on an Agg canvas of their own (:mod:`stflow.plotting`), so writing them never switches
the caller's matplotlib backend.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stflow.atomic import atomic_output
from stflow.plotting import new_figure, save_png

MAX_MARKERS = 100_000  # more spots are drawn as a raster: one marker each is slow and unreadable


def _spots_panel(ax, image: np.ndarray, image_scale: float, centres: np.ndarray,
                 values: np.ndarray, diameter_px: float, title: str, cmap: str) -> None:
    """Spots coloured by ``values`` over the image: each drawn at its physical size, or, for
    more than :data:`MAX_MARKERS` spots, as a raster of their mean value per cell."""
    ax.imshow(image)
    ax.set_xlim(0, image.shape[1])
    ax.set_ylim(image.shape[0], 0)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    fig = ax.figure
    if len(centres) > MAX_MARKERS:
        raster, extent = spot_raster(centres * image_scale, values, image.shape[:2],
                                     diameter_px * image_scale)
        dots = ax.imshow(raster, cmap=cmap, alpha=0.85, extent=extent, interpolation="nearest")
    else:
        xy = centres * image_scale
        fig.canvas.draw()  # the axes' size in points fixes the marker size of one spot
        width_pt = ax.get_window_extent().width * 72 / fig.dpi
        size = (diameter_px * image_scale * width_pt / image.shape[1]) ** 2
        dots = ax.scatter(xy[:, 0], xy[:, 1], c=values, s=max(size, 0.5), cmap=cmap,
                          linewidths=0, alpha=0.85)
    fig.colorbar(dots, ax=ax, fraction=0.046, pad=0.02)
    ax.set_title(title, fontsize=9)


def spot_raster(xy: np.ndarray, values: np.ndarray, shape: tuple[int, int], diameter: float
                ) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The mean of ``values`` per cell of a grid over an image of ``shape`` (cells one display
    pixel, or one spot diameter when spots are larger, so that no gaps open between them),
    NaN where no spot falls; with its imshow extent (left, right, bottom, top)."""
    cell = max(1.0, float(diameter))
    rows, cols = int(np.ceil(shape[0] / cell)), int(np.ceil(shape[1] / cell))
    c = np.clip((xy[:, 0] / cell).astype(np.int64), 0, cols - 1)
    r = np.clip((xy[:, 1] / cell).astype(np.int64), 0, rows - 1)
    index = r * cols + c
    sums = np.bincount(index, weights=values, minlength=rows * cols)
    counts = np.bincount(index, minlength=rows * cols)
    raster = np.full(rows * cols, np.nan)
    np.divide(sums, counts, out=raster, where=counts > 0)
    return raster.reshape(rows, cols), (0.0, cols * cell, rows * cell, 0.0)


def write_maps(out_dir: str | Path, genes: Sequence[str], all_genes: Sequence[str],
               mean: np.ndarray, second: tuple[np.ndarray, str], centres_px: np.ndarray,
               spatial: dict[str, Any], slide: str) -> list[Path]:
    """One PNG per gene (mean | ``second``, e.g. the interval width, over the H&E) into
    ``out_dir``, written atomically; ``second`` is (values, what they are)."""
    values, label = second
    library = next(iter(spatial.values()))
    image = library["images"]["hires"]
    image_scale = library["scalefactors"]["tissue_hires_scalef"]
    diameter = library["scalefactors"]["spot_diameter_fullres"]
    index = {g: i for i, g in enumerate(all_genes)}
    written = []
    with atomic_output(out_dir) as tmp:
        tmp.mkdir()
        for gene in genes:
            j = index[gene]
            aspect = image.shape[0] / image.shape[1]
            fig, axes = new_figure(1, 2, figsize=(10, 5 * aspect + 0.6))
            _spots_panel(axes[0, 0], image, image_scale, centres_px, mean[:, j], diameter,
                         f"{slide} {gene}: predicted log1p (mean)", "viridis")
            _spots_panel(axes[0, 1], image, image_scale, centres_px, values[:, j], diameter,
                         f"{slide} {gene}: {label}", "magma")
            fig.tight_layout()
            file = f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', gene)}.png"
            save_png(fig, tmp / file)
            written.append(Path(out_dir) / file)
    return written



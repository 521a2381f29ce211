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


def _spots_panel(ax, image: np.ndarray, image_scale: float, centres: np.ndarray,
                 values: np.ndarray, diameter_px: float, title: str, cmap: str) -> None:
    """Spots coloured by ``values`` over the image, each drawn at its physical size."""
    ax.imshow(image)
    xy = centres * image_scale
    ax.set_xlim(0, image.shape[1])
    ax.set_ylim(image.shape[0], 0)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    fig = ax.figure
    fig.canvas.draw()  # the axes' size in points fixes the marker size of one spot
    width_pt = ax.get_window_extent().width * 72 / fig.dpi
    size = (diameter_px * image_scale * width_pt / image.shape[1]) ** 2
    dots = ax.scatter(xy[:, 0], xy[:, 1], c=values, s=max(size, 0.5), cmap=cmap,
                      linewidths=0, alpha=0.85)
    fig.colorbar(dots, ax=ax, fraction=0.046, pad=0.02)
    ax.set_title(title, fontsize=9)


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



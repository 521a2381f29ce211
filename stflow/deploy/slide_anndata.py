"""What a person opens: an AnnData that scanpy draws over the H&E, and PNG maps of genes.

The image inside it is scanpy's ``uns["spatial"]`` (``stflow.data.spatial_image``), so
``sc.pl.spatial(adata, color=gene)`` needs nothing else.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from stflow.atomic import atomic_output  # noqa: E402
from stflow.data.graph import squidpy_graph  # noqa: E402
from stflow.provenance import log1p_uns  # noqa: E402

log = logging.getLogger(__name__)

def slide_anndata(mean: np.ndarray, sample_std: np.ndarray, genes: Sequence[str],
                  centres_px: np.ndarray, mpp: float, obs: pd.DataFrame,
                  spatial: dict[str, Any], info: dict[str, Any], intervals: Any = None,
                  neighbors: np.ndarray | None = None):
    """Mean in ``X``, the samples' uncalibrated spread in ``layers["sample_std"]``, the
    calibrated intervals and shift flag when the model has them, level-0 and micron
    coordinates, identity (``info``: the ``uns["stflow"]`` dict) and the kNN graph the model
    read (``neighbors``, as squidpy lays a graph out)."""
    import anndata as ad

    adata = ad.AnnData(X=np.asarray(mean, dtype=np.float32), obs=obs,
                       var=pd.DataFrame(index=pd.Index([str(g) for g in genes])))
    adata.layers["sample_std"] = np.asarray(sample_std, dtype=np.float32)
    adata.obsm["spatial"] = np.asarray(centres_px, dtype=np.float64)
    adata.obsm["spatial_um"] = adata.obsm["spatial"] * mpp
    adata.uns["spatial"] = spatial
    adata.uns["log1p"] = log1p_uns()
    if neighbors is not None:
        obsp, graph = squidpy_graph(neighbors, adata.obsm["spatial_um"], "predict-slide kNN")
        adata.obsp.update(obsp)
        adata.uns["spatial_neighbors"] = graph
    adata.uns["stflow"] = {**info, "intervals": {"method": "none", "reason": "the model "
                                                 "folder has no calibration"}}
    if intervals is not None:
        intervals.attach(adata)
    return adata


def write_h5ad(adata, path: str | Path) -> Path:
    """Write atomically (a finished name only once complete), compressed."""
    with atomic_output(path) as tmp:
        adata.write_h5ad(tmp, compression="gzip")
    return Path(path)


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
            fig, axes = plt.subplots(1, 2, figsize=(10, 5 * aspect + 0.6), squeeze=False)
            _spots_panel(axes[0, 0], image, image_scale, centres_px, mean[:, j], diameter,
                         f"{slide} {gene}: predicted log1p (mean)", "viridis")
            _spots_panel(axes[0, 1], image, image_scale, centres_px, values[:, j], diameter,
                         f"{slide} {gene}: {label}", "magma")
            fig.tight_layout()
            file = f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', gene)}.png"
            fig.savefig(tmp / file, dpi=120)
            plt.close(fig)
            written.append(Path(out_dir) / file)
    return written



"""What a person opens: an AnnData that scanpy draws over the H&E, and PNG maps of genes.

``uns["spatial"][library_id]`` follows scanpy's Visium layout (``images`` hires/lowres,
``scalefactors`` with ``tissue_{hires,lowres}_scalef`` and ``spot_diameter_fullres``), with
``obsm["spatial"]`` in level-0 pixels, so ``sc.pl.spatial(adata, color=gene)`` needs nothing
else.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from stflow.atomic import atomic_output  # noqa: E402
from stflow.data.graph import squidpy_graph  # noqa: E402
from stflow.provenance import log1p_uns  # noqa: E402

log = logging.getLogger(__name__)

HIRES_SIDE = 2048  # the tissue thumbnail (patches.extract.THUMB_SIDE); Visium "hires" is 2000
LOWRES_SIDE = 600


def spatial_uns(library_id: str, thumbnail: Image.Image, scale: float,
                spot_diameter_px: float, image_path: str | Path,
                hires_side: int = HIRES_SIDE) -> dict[str, Any]:
    """``uns["spatial"]`` for one slide from a thumbnail (``scale`` level-0 px per its px)."""
    images, factors = {}, {}
    for key, side in (("hires", hires_side), ("lowres", min(LOWRES_SIDE, hires_side))):
        factor = max(1, math.ceil(max(thumbnail.size) / side))
        image = thumbnail.reduce(factor) if factor > 1 else thumbnail
        images[key] = np.asarray(image.convert("RGB"), dtype=np.uint8)
        factors[f"tissue_{key}_scalef"] = float(image.width / (thumbnail.width * scale))
    factors["spot_diameter_fullres"] = float(spot_diameter_px)
    factors["fiducial_diameter_fullres"] = float(spot_diameter_px)
    return {library_id: {"images": images, "scalefactors": factors,
                         "metadata": {"source_image_path": str(image_path)}}}


def image_thumbnail(image_path: str | Path, max_side: int) -> tuple[Image.Image, float]:
    """A thumbnail of any slide the patch readers open, and its level-0 px per thumbnail px.

    Plain JPEGs are decoded reduced (draft), so a 10k-pixel image costs little.
    """
    from stflow.data.patches import open_slide

    downsample = 1.0
    try:
        with Image.open(image_path) as probe:
            downsample = max(probe.size) / max_side
    except (OSError, SyntaxError):  # a WSI Pillow cannot parse: OpenSlide reads it
        pass
    with open_slide(image_path, downsample=downsample) as reader:
        return reader.thumbnail(max_side)


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


FOLD_IMAGE_SIDE = 1000  # per-fold prediction files: one smaller image each


def sample_spatial(image_path: str | Path | None, mpp: float | None, centres_px: np.ndarray,
                   library_id: str, max_side: int = FOLD_IMAGE_SIDE) -> dict[str, Any] | None:
    """``uns["spatial"]`` for the spots of an ingested sample, or None without an H&E image.

    The drawn spot diameter follows the spots' own lattice (measured pitch × the array's
    spot fraction), as for virtual spots.
    """
    from stflow.deploy.spot_grid import measure_layout
    from stflow.errors import StflowError

    path = Path(str(image_path)) if image_path else None
    if path is None or not path.is_file() or path.suffix.lower() in {".h5", ".hdf5"}:
        log.info("%s: no H&E image for uns['spatial'] (%s)", library_id, image_path)
        return None
    if not (mpp and np.isfinite(mpp) and mpp > 0) or len(centres_px) < 3:
        return None
    try:
        thumb, scale = image_thumbnail(path, max_side)
        spots = measure_layout([np.asarray(centres_px, np.float64) * mpp])
    except StflowError as err:
        log.warning("%s: no uns['spatial'] (%s)", library_id, err)
        return None
    return spatial_uns(library_id, thumb, scale, spots.spot_diameter_um / mpp, path.resolve(),
                       hires_side=max_side)

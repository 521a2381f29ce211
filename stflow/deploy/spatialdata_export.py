"""A prediction h5ad (a fold's or a new slide's) and its H&E as one SpatialData ``.zarr``.

The H&E becomes a multiscale image, the spots circles of their physical radius and the
prediction the table annotating them, all in one coordinate system in microns, so napari
(napari-spatialdata) and spatialdata-plot show expression over the tissue at any zoom.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from stflow.atomic import atomic_output
from stflow.errors import input_error

log = logging.getLogger(__name__)

COORDINATE_SYSTEM = "global"  # in µm: the name spatialdata-plot and napari show by default
IMAGE, SPOTS, TABLE = "he", "spots", "table"
REGION_KEY, INSTANCE_KEY = "region", "spot_id"
IMAGE_MAX_SIDE = 4096  # level-0 whole slides are downsampled to this longest side
SMALLEST_LEVEL = 256  # pyramid levels halve down to about this side


def prediction_mpp(adata: Any, where: str | Path) -> float:
    """µm per level-0 pixel of a prediction file: ``spatial_um`` over ``spatial``."""
    um, px = (np.asarray(adata.obsm.get(key, np.zeros((0, 2))), np.float64)
              for key in ("spatial_um", "spatial"))
    usable = np.abs(px) > 1e-9
    if um.shape != px.shape or not usable.any():
        raise input_error(where, "has no obsm['spatial'] and obsm['spatial_um'] to place "
                          "its spots", "export a prediction file written by stflow")
    return float(np.median(um[usable] / px[usable]))


def _library(adata: Any) -> dict[str, Any]:
    spatial = adata.uns.get("spatial") or {}
    return next(iter(spatial.values()), {}) if isinstance(spatial, dict) else {}


def he_image(adata: Any, image_path: str | Path | None, max_side: int, where: str | Path
             ) -> tuple[np.ndarray, float]:
    """(H, W, 3) uint8 H&E and its level-0 pixels per image pixel.

    The given image, else the one the file names (when it is still there), else the
    thumbnail inside the file (``uns["spatial"]``), so a moved results folder still exports.
    """
    from stflow.data.spatial_image import image_thumbnail

    library = _library(adata)
    named = image_path or library.get("metadata", {}).get("source_image_path")
    if named and Path(str(named)).is_file() and Path(str(named)).suffix not in {".h5", ".hdf5"}:
        thumbnail, scale = image_thumbnail(Path(str(named)), max_side)
        return np.asarray(thumbnail.convert("RGB"), np.uint8), float(scale)
    if image_path:
        raise input_error(image_path, "H&E image not found", "give the slide's image file")
    images, factors = library.get("images", {}), library.get("scalefactors", {})
    if "hires" in images and factors.get("tissue_hires_scalef"):
        return np.asarray(images["hires"], np.uint8), 1.0 / float(factors["tissue_hires_scalef"])
    raise input_error(where, "names no H&E image that exists and holds none in uns['spatial']",
                      "pass the slide's image with --image")


def spot_radius_um(adata: Any, mpp: float) -> float:
    """Half the drawn spot diameter (``spot_diameter_fullres``), else a quarter of the
    median nearest-neighbour distance (legacy ST: 100 µm spots on a 200 µm grid)."""
    diameter = _library(adata).get("scalefactors", {}).get("spot_diameter_fullres")
    if diameter:
        return float(diameter) * mpp / 2
    from scipy.spatial import cKDTree

    coords = np.asarray(adata.obsm["spatial_um"], np.float64)
    if len(coords) < 2:
        return 1.0
    distances, _ = cKDTree(coords).query(coords, k=2)
    return float(np.median(distances[:, 1])) / 4


def scale_factors(height: int, width: int) -> list[int]:
    """Halvings until the smallest level is about ``SMALLEST_LEVEL`` on its longest side."""
    factors, side = [], max(height, width)
    while side // 2 >= SMALLEST_LEVEL:
        factors.append(2)
        side //= 2
    return factors


def prediction_spatialdata(adata: Any, image: np.ndarray, um_per_image_px: float,
                           radius_um: float) -> Any:
    """SpatialData with the image ``he``, the spot circles ``spots`` and the ``table``."""
    import pandas as pd
    from spatialdata import SpatialData
    from spatialdata.models import Image2DModel, ShapesModel, TableModel
    from spatialdata.transformations import Identity, Scale

    to_um = Scale([um_per_image_px, um_per_image_px], axes=("y", "x"))
    he = Image2DModel.parse(np.moveaxis(image, -1, 0), dims=("c", "y", "x"),
                            c_coords=["r", "g", "b"],
                            scale_factors=scale_factors(*image.shape[:2]) or None,
                            transformations={COORDINATE_SYSTEM: to_um})
    names = pd.Index(adata.obs_names.astype(str))
    spots = ShapesModel.parse(np.asarray(adata.obsm["spatial_um"], np.float64), geometry=0,
                              radius=np.full(len(names), radius_um), index=names,
                              transformations={COORDINATE_SYSTEM: Identity()})
    table = adata.copy()
    table.uns.pop("spatial", None)  # the image is its own element here
    table.obs[REGION_KEY] = pd.Categorical([SPOTS] * table.n_obs)
    table.obs[INSTANCE_KEY] = names.to_numpy()
    table = TableModel.parse(table, region=SPOTS, region_key=REGION_KEY,
                             instance_key=INSTANCE_KEY)
    return SpatialData(images={IMAGE: he}, shapes={SPOTS: spots}, tables={TABLE: table})


def export_spatialdata(prediction_h5ad: str | Path, out_zarr: str | Path,
                       image_path: str | Path | None = None,
                       max_side: int = IMAGE_MAX_SIDE) -> Path:
    """Write ``prediction_h5ad`` with its H&E as SpatialData at ``out_zarr`` (atomically)."""
    import anndata as ad

    source = Path(prediction_h5ad)
    if not source.is_file():
        raise input_error(source, "prediction file not found",
                          "give a predictions/.../{sample}.h5ad or slides/{name}.h5ad")
    adata = ad.read_h5ad(source)
    mpp = prediction_mpp(adata, source)
    image, level0_per_px = he_image(adata, image_path, max_side, source)
    sdata = prediction_spatialdata(adata, image, level0_per_px * mpp,
                                   spot_radius_um(adata, mpp))
    out = Path(out_zarr)
    with atomic_output(out) as tmp:
        sdata.write(tmp)
    log.info("%s: %d spots over the H&E (%d x %d px at %.3g µm/px) as SpatialData", out,
             adata.n_obs, image.shape[1], image.shape[0], level0_per_px * mpp)
    return out

"""What a person opens: an AnnData that scanpy draws over the H&E (the PNG maps of its
genes are drawn by :mod:`stflow.deploy.slide_maps`).

The image inside it is scanpy's ``uns["spatial"]`` (``stflow.data.spatial_image``), so
``sc.pl.spatial(adata, color=gene)`` needs nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stflow.atomic import atomic_output
from stflow.data.graph import squidpy_graph
from stflow.provenance import log1p_uns

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

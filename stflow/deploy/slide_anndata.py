"""What a person opens: an AnnData that scanpy draws over the H&E (the PNG maps of its
genes are drawn by :mod:`stflow.deploy.slide_maps`).

The image inside it is scanpy's ``uns["spatial"]`` (``stflow.data.spatial_image``), so
``sc.pl.spatial(adata, color=gene)`` needs nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from stflow.data.graph import squidpy_graph
from stflow.provenance import log1p_uns

log = logging.getLogger(__name__)


def slide_anndata(genes: Sequence[str], centres_px: np.ndarray, mpp: float, obs: pd.DataFrame,
                  spatial: dict[str, Any], info: dict[str, Any],
                  intervals: dict[str, Any] | None = None, quantiles: np.ndarray | None = None,
                  neighbors: np.ndarray | None = None):
    """Everything of the prediction's AnnData but its (N, G) arrays (mean in ``X``, the
    samples' uncalibrated spread in ``layers["sample_std"]``, lower/upper...), which
    :func:`stflow.deploy.chunked_h5ad.write_h5ad_in_chunks` writes beside it a row chunk at
    a time: level-0 and micron coordinates, identity (``info``: the ``uns["stflow"]`` dict),
    the intervals' record and per-gene ``quantiles`` when the model has a calibration, and
    the kNN graph the model read (``neighbors``, as squidpy lays a graph out)."""
    import anndata as ad

    adata = ad.AnnData(obs=obs, var=pd.DataFrame(index=pd.Index([str(g) for g in genes])))
    adata.obsm["spatial"] = np.asarray(centres_px, dtype=np.float64)
    adata.obsm["spatial_um"] = adata.obsm["spatial"] * mpp
    adata.uns["spatial"] = spatial
    adata.uns["log1p"] = log1p_uns()
    if neighbors is not None:
        obsp, graph = squidpy_graph(neighbors, adata.obsm["spatial_um"], "predict-slide kNN")
        adata.obsp.update(obsp)
        adata.uns["spatial_neighbors"] = graph
    adata.uns["stflow"] = {**info, "intervals": intervals or {
        "method": "none", "reason": "the model folder has no calibration"}}
    if quantiles is not None:
        adata.varm["conformal_quantile"] = quantiles.astype(np.float64)
    return adata

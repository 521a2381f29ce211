"""What a person opens: a prediction as an AnnData h5ad that scanpy and squidpy read, built
and written one way for a fold's test sections and for new slides.

:func:`prediction_anndata` builds everything but the (N, G) arrays (the spots' obs and
coordinates, the genes, the identity in ``uns["stflow"]``, the intervals' record and
per-gene quantiles, the kNN graph the model read as squidpy lays one out, scanpy's
``uns["spatial"]`` image); :func:`write_prediction` writes it with the arrays (mean in ``X``,
layers) arriving a row chunk at a time (:mod:`stflow.inference.chunked_h5ad`), so a million
spots are never held several times over. The PNG maps of a slide are drawn by
:mod:`stflow.deploy.slide_maps`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stflow.data.graph import squidpy_graph
from stflow.inference.chunked_h5ad import write_h5ad_in_chunks
from stflow.provenance import log1p_uns


@dataclass(frozen=True)
class ModelGraph:
    """The (N, k) neighbours the model read, the spots' micron coordinates and where the
    graph came from (``uns["spatial_neighbors"]`` names it)."""

    neighbors: np.ndarray
    coords_um: np.ndarray
    source: str


def prediction_anndata(genes: Sequence[str], obs: pd.DataFrame, obsm: Mapping[str, np.ndarray],
                       info: dict[str, Any], *, intervals: dict[str, Any] | None = None,
                       quantiles: np.ndarray | None = None, graph: ModelGraph | None = None,
                       spatial: dict[str, Any] | None = None, sample: str | None = None):
    """Everything of a prediction's AnnData but its (N, G) arrays: ``obs`` and ``obsm`` of
    the spots, ``info`` as ``uns["stflow"]`` (with ``intervals``, the intervals' record,
    when given), the per-gene conformal ``quantiles``, the model's kNN ``graph``, scanpy's
    ``spatial`` image and the ``sample`` name (read by evaluate and coverage)."""
    import anndata as ad

    adata = ad.AnnData(obs=obs, var=pd.DataFrame(index=pd.Index([str(g) for g in genes])),
                       obsm=dict(obsm))
    if sample is not None:
        adata.uns["sample"] = sample
    adata.uns["stflow"] = info if intervals is None else {**info, "intervals": intervals}
    adata.uns["log1p"] = log1p_uns()
    if graph is not None:
        obsp, neighbours = squidpy_graph(graph.neighbors, graph.coords_um, graph.source)
        adata.obsp.update(obsp)
        adata.uns["spatial_neighbors"] = neighbours
    if spatial is not None:  # scanpy's layout: sc.pl.spatial draws it over the H&E
        adata.uns["spatial"] = spatial
    if quantiles is not None:
        adata.varm["conformal_quantile"] = np.asarray(quantiles).astype(np.float64)
    return adata


Rows = Iterable[tuple[slice, dict[str, np.ndarray]]]


def write_prediction(path: str | Path, n_obs: int, rows: Rows, rest: Callable[[], Any], *,
                     then: Callable[[], None] | None = None) -> Path:
    """Write ``{path}``: the (N, G) arrays as ``rows`` yields them (``(rows, {"X" or layer
    name: block})``, one chunk for a small prediction), then the AnnData ``rest()`` returns
    (:func:`prediction_anndata`, built once the rows are done: their per-spot columns are
    known then), its string columns stored as categories as ``AnnData.write_h5ad`` does;
    ``then()`` runs before the rename, for outputs that must not outlive a failed write."""
    def rest_with_categories():
        adata = rest()
        adata.strings_to_categoricals()
        return adata

    return write_h5ad_in_chunks(path, n_obs, rows, rest_with_categories, then=then)

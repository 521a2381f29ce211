"""The in-memory form of one section that every model trains and predicts on.

A ``Slide`` joins three artifacts of the pipeline by barcode: the frozen image features
(``features/{encoder}/{sample}.zarr``), the counts (``st/{sample}.h5ad``) restricted to the
target genes, and optionally the kNN graph (``graph/{sample}.npz``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stflow.errors import StflowError, check_finite, check_shape, input_error
from stflow.verify import check_recorded


@dataclass
class Slide:
    """One section: features, coordinates in microns, and (when known) expression.

    ``targets`` is log1p of the raw counts of the target genes, ``counts`` the raw counts
    themselves (the fitted ZINB prior needs them). Both are ``None`` for a slide to predict.
    """

    sample: str
    features: np.ndarray  # (N, D) float32
    coords_um: np.ndarray  # (N, 2) float64
    barcodes: np.ndarray  # (N,) str
    targets: np.ndarray | None = None  # (N, G) float32, log1p counts
    counts: np.ndarray | None = None  # (N, G) float32, raw counts
    neighbors: np.ndarray | None = None  # (N, k) int64, from graph/{sample}.npz

    def __post_init__(self) -> None:
        n = len(self.features)
        where = f"sample {self.sample}"
        check_shape(self.features, "features", (n, None), where)
        check_shape(self.coords_um, "coords_um", (n, 2), where)
        check_shape(self.barcodes, "barcodes", (n,), where)
        check_finite(self.features, "features", where)
        check_finite(self.coords_um, "coords_um", where)
        for name in ("targets", "counts"):
            value = getattr(self, name)
            if value is not None:
                check_shape(value, name, (n, None), where)
                check_finite(value, name, where)
        if self.counts is not None and (self.counts < 0).any():
            raise input_error(where, "counts hold negative values",
                              "pass raw, non-negative counts (not log or scaled values)")
        if self.neighbors is not None:
            check_shape(self.neighbors, "neighbors", (n, None), where)

    @property
    def n_spots(self) -> int:
        return len(self.features)

    def subset(self, keep: np.ndarray) -> Slide:
        """The spots where ``keep`` (a boolean mask) holds, as a slide of their own; its
        neighbours are left to be found again among the kept spots."""
        keep = np.asarray(keep, dtype=bool)
        return Slide(sample=self.sample, features=self.features[keep],
                     coords_um=self.coords_um[keep], barcodes=self.barcodes[keep],
                     targets=None if self.targets is None else self.targets[keep],
                     counts=None if self.counts is None else self.counts[keep])


def read_features(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read ``features``, ``barcode`` and ``coords_um`` from a features zarr store."""
    import zarr

    path = Path(path)
    if not path.exists():
        raise input_error(path, "features store does not exist",
                          "run the embed stage (`stflow embed`) for this sample and encoder")
    try:
        group = zarr.open_group(str(path), mode="r")
    except (zarr.errors.GroupNotFoundError, FileNotFoundError) as err:
        raise input_error(path, "not a readable zarr group (corrupt or not a features store)",
                          "delete it and run `stflow embed` again") from err
    try:
        if not group.attrs.get("complete", False):
            raise input_error(path, "features store is incomplete (an interrupted write)",
                              "delete it and run `stflow embed` again")
        raw = {name: np.asarray(group[name][...]) for name in ("features", "barcode",
                                                                "coords_um")}
    except KeyError as err:
        raise input_error(path, f"features store lacks the array {err}",
                          "delete it and run `stflow embed` again") from err
    except StflowError:
        raise
    except (RuntimeError, OSError, ValueError) as err:  # a chunk cut short or changed
        raise input_error(path, f"features store is damaged: a chunk cannot be decoded ({err})",
                          "delete it and run `stflow embed` again (`stflow verify` on the "
                          "results folder lists every damaged file)") from None
    return checked_features(raw, path)


def checked_features(raw: dict[str, np.ndarray], path: Path
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``features`` (N, D) float32, ``barcode`` (N,) str and ``coords_um`` (N, 2) float64 of
    a store, or the project's error: a store written by another tool (or a damaged attrs
    record) must not reach the models as a wrongly shaped or non-numeric array."""
    fix = "delete it and run `stflow embed` again"
    for name, kind in (("features", "numbers"), ("coords_um", "numbers")):
        if raw[name].dtype.kind not in "biuf":
            raise input_error(path, f"array {name} holds {raw[name].dtype}, not {kind}", fix)
    n = len(raw["features"]) if raw["features"].ndim else 0
    check_shape(raw["features"], "features", (n, None), path)
    check_shape(raw["barcode"], "barcode", (n,), path)
    check_shape(raw["coords_um"], "coords_um", (n, 2), path)
    return (raw["features"].astype(np.float32), raw["barcode"].astype(object).astype(str),
            raw["coords_um"].astype(np.float64))


def read_target_counts(path: str | Path, barcodes: np.ndarray, genes: Sequence[str]) -> np.ndarray:
    """Raw counts of ``genes`` for ``barcodes`` (in that order) from an ingested h5ad."""
    import anndata as ad
    import scipy.sparse as sp

    path = Path(path)
    if not path.exists():
        raise input_error(path, "ingested counts do not exist", "run the ingest stage first")
    adata = ad.read_h5ad(path)
    missing_genes = [g for g in genes if g not in adata.var_names]
    if missing_genes:
        raise input_error(path, f"{len(missing_genes)} target genes are missing, e.g. "
                          f"{missing_genes[:5]}", "choose genes present in every sample "
                          "(the genes stage does this; under genes.scope fold it sees a fold's "
                          "training samples only, so set genes.scope: study where samples "
                          "measure different genes) or fix genes.list in the config")
    index = adata.obs_names.get_indexer(barcodes)
    if (index < 0).any():
        lost = np.asarray(barcodes)[index < 0][:5].tolist()
        raise input_error(path, f"{int((index < 0).sum())} barcodes of the features are not in "
                          f"the counts, e.g. {lost}", "re-run patches and embed for this sample")
    sub = adata[index][:, list(genes)].X
    dense = sub.toarray() if sp.issparse(sub) else np.asarray(sub)
    return dense.astype(np.float32)


def read_neighbors(path: str | Path, barcodes: np.ndarray) -> np.ndarray:
    """The (N, k) neighbour indices of a graph file, checked against ``barcodes``."""
    path = Path(path)
    if not path.exists():
        raise input_error(path, "graph does not exist", "run the graph stage (`stflow graph`)")
    with np.load(path, allow_pickle=False) as data:
        neighbors = np.asarray(data["neighbors"], dtype=np.int64)
        graph_barcodes = np.asarray(data["barcode"]).astype(str)
    if not np.array_equal(graph_barcodes, np.asarray(barcodes).astype(str)):
        raise input_error(path, "graph barcodes differ from the features' barcodes",
                          "re-run the graph stage from the same patches file")
    return neighbors


def load_slide(sample: str, features_path: str | Path, st_path: str | Path | None = None,
               genes: Sequence[str] | None = None,
               graph_path: str | Path | None = None) -> Slide:
    """Join the artifacts of one sample into a :class:`Slide`, each checked against the
    checksum recorded when it was written."""
    for artifact in (features_path, st_path, graph_path):
        if artifact is not None:
            check_recorded(artifact)
    features, barcodes, coords = read_features(features_path)
    counts = targets = None
    if st_path is not None and genes is not None:
        counts = read_target_counts(st_path, barcodes, genes)
        targets = np.log1p(counts).astype(np.float32)
    neighbors = read_neighbors(graph_path, barcodes) if graph_path is not None else None
    return Slide(sample=sample, features=features, coords_um=coords, barcodes=barcodes,
                 targets=targets, counts=counts, neighbors=neighbors)

"""k-nearest-neighbour graph of spots in microns, by KD-tree in O(N·k) memory.

The published STFlow code built a dense N×N distance matrix (6.6 GB at 20k spots) on raw
pixels; here coordinates are microns (slides differ in µm/px) and no N×N array is ever made.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from scipy.spatial import cKDTree

from stflow.atomic import atomic_output
from stflow.errors import input_error

log = logging.getLogger(__name__)


def check_coords(coords_um: np.ndarray, k: int, where: str | Path = "coordinates") -> np.ndarray:
    """Refuse coordinates a kNN graph cannot be built on; return them as (N, 2) float64."""
    coords = np.asarray(coords_um, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise input_error(where, f"coordinates have shape {coords.shape}, expected (N, 2)",
                          "pass one (x, y) pair per spot")
    if not np.isfinite(coords).all():
        raise input_error(where, f"{int((~np.isfinite(coords)).any(1).sum())} spots have NaN/inf "
                          "coordinates", "drop or fix those spots")
    if len(coords) < k + 1:
        raise input_error(where, f"{len(coords)} spots, fewer than k + 1 = {k + 1}",
                          f"use k <= {max(len(coords) - 1, 0)} or a section with more spots")
    n_unique = len(np.unique(coords, axis=0))
    if n_unique < len(coords):
        raise input_error(where, f"{len(coords) - n_unique} spots duplicate another spot's "
                          "coordinates", "remove duplicated spots (same x, y) before graphing")
    return coords


def knn_graph(coords_um: np.ndarray, k: int, where: str | Path = "coordinates"
              ) -> tuple[np.ndarray, np.ndarray]:
    """Each spot's k nearest other spots: neighbours (N, k) int64 and distances (N, k) float32."""
    if k < 1:
        raise input_error(where, f"k = {k}", "use k >= 1 (paper: 8)")
    coords = check_coords(coords_um, k, where)
    distances, neighbors = cKDTree(coords).query(coords, k=k + 1)
    # Coordinates are unique, so each spot is its own nearest point (distance 0, column 0).
    return neighbors[:, 1:].astype(np.int64), distances[:, 1:].astype(np.float32)


def edge_offsets(coords: np.ndarray, neighbors: np.ndarray) -> np.ndarray:
    """offsets[i, m] = coords[i] - coords[neighbors[i, m]]: the paper's C_{i→j}, (N, k, 2)."""
    coords = np.asarray(coords)
    return coords[:, None, :] - coords[neighbors]


PATCHES_FIX = "re-run the patches stage (`stflow patches`) for this sample"


@dataclass(frozen=True)
class PatchSpots:
    """The spots of a HEST-style patches file: level-0 pixel centres, µm per pixel, barcodes."""

    coords: np.ndarray  # (N, 2) float64 level-0 pixels
    mpp: float
    barcodes: list[str]

    @property
    def coords_um(self) -> np.ndarray:
        """Spot centres in microns: the one place pixels become microns for graph and embed."""
        return self.coords * self.mpp


@contextmanager
def open_patch_file(path: str | Path) -> Iterator[h5py.File]:
    """Open a patches h5 for reading; a missing or unreadable file raises a StflowError."""
    path = Path(path)
    if not path.is_file():
        raise input_error(path, "patches file does not exist", PATCHES_FIX)
    try:
        with h5py.File(path, "r") as handle:
            yield handle
    except OSError as err:
        raise input_error(path, f"not a readable HDF5 file ({err})", PATCHES_FIX) from err


def patch_spots(handle: h5py.File, where: str | Path) -> PatchSpots:
    """Check and read ``coords``, ``barcode`` and ``mpp`` of an open patches file."""
    for name in ("coords", "barcode"):
        if name not in handle:
            raise input_error(where, f"dataset '{name}' is missing", PATCHES_FIX)
    if "mpp" not in handle.attrs:
        raise input_error(where, "attribute 'mpp' is missing", PATCHES_FIX)
    coords = np.asarray(handle["coords"][:], dtype=np.float64)
    barcodes = [b.decode() if isinstance(b, bytes) else str(b)
                for b in np.asarray(handle["barcode"][:]).reshape(-1)]
    mpp = float(handle.attrs["mpp"])
    if not np.isfinite(mpp) or mpp <= 0:
        raise input_error(where, f"mpp = {mpp} is not a positive number",
                          "fix the microns per pixel of the sample and re-run patches")
    if coords.ndim != 2 or coords.shape[1] != 2 or len(coords) != len(barcodes):
        raise input_error(where, f"coords have shape {coords.shape} for {len(barcodes)} "
                          "barcodes, expected (N, 2)", PATCHES_FIX)
    return PatchSpots(coords, mpp, barcodes)


def read_patch_spots(patches_h5: str | Path) -> PatchSpots:
    """Spot centres and barcodes of a patches file, without reading its images."""
    with open_patch_file(patches_h5) as handle:
        return patch_spots(handle, patches_h5)


def write_graph(patches_h5: str | Path, out_npz: str | Path, *, k: int) -> None:
    """Build the kNN graph of one sample's patches and write ``graph/{sample}.npz``."""
    spots = read_patch_spots(patches_h5)
    coords_um, barcodes = spots.coords_um, np.array(spots.barcodes, dtype=str)
    neighbors, distances = knn_graph(coords_um, k, where=patches_h5)
    offsets = edge_offsets(coords_um, neighbors).astype(np.float32)
    with atomic_output(out_npz) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, neighbors=neighbors, distances_um=distances, offsets_um=offsets,
                 barcode=barcodes.astype(str), coords_um=coords_um, k=np.int64(k))
    log.info("graph of %d spots (k=%d) written to %s", len(coords_um), k, out_npz)


def squidpy_graph(neighbors: np.ndarray, coords_um: np.ndarray, source: str
                  ) -> tuple[dict[str, object], dict[str, object]]:
    """Our (N, k) neighbour indices as squidpy lays a graph out: ``obsp`` entries
    ``spatial_connectivities`` (CSR, binary, one row per spot: its k nearest, no self) and
    ``spatial_distances`` (CSR, µm), and ``uns["spatial_neighbors"]`` naming them.

    The same as ``squidpy.gr.spatial_neighbors(adata, coord_type="generic", n_neighs=k,
    spatial_key="spatial_um")`` would write, so squidpy's statistics run on our graph.
    """
    import scipy.sparse as sp

    neighbors = np.asarray(neighbors, dtype=np.int64)
    coords = np.asarray(coords_um, dtype=np.float64)
    n, k = neighbors.shape
    rows = np.repeat(np.arange(n), k)
    cols = neighbors.reshape(-1)
    distances = np.linalg.norm(coords[rows] - coords[cols], axis=1)
    connectivities = sp.csr_matrix((np.ones(n * k, np.float32), (rows, cols)), shape=(n, n))
    spatial_distances = sp.csr_matrix((distances, (rows, cols)), shape=(n, n))
    for matrix in (connectivities, spatial_distances):
        matrix.sort_indices()
    obsp = {"spatial_connectivities": connectivities, "spatial_distances": spatial_distances}
    uns = {"connectivities_key": "spatial_connectivities", "distances_key": "spatial_distances",
           "params": {"coord_type": "generic", "n_neighbors": int(k), "transform": None,
                      "spatial_key": "spatial_um", "distance_unit": "um", "source": source}}
    return obsp, uns

"""k-nearest-neighbour graph of spots in microns, by KD-tree in O(N·k) memory.

The published STFlow code built a dense N×N distance matrix (6.6 GB at 20k spots) on raw
pixels; here coordinates are microns (slides differ in µm/px) and no N×N array is ever made.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

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


def read_patch_coords(patches_h5: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Spot centres in microns and barcodes (str) from a HEST-style patches file."""
    import h5py

    patches_h5 = Path(patches_h5)
    if not patches_h5.exists():
        raise input_error(patches_h5, "patches file does not exist",
                          "run the patches stage (`stflow patches`) for this sample")
    with h5py.File(patches_h5, "r") as handle:
        for name in ("coords", "barcode"):
            if name not in handle:
                raise input_error(patches_h5, f"lacks the dataset '{name}'",
                                  "re-run the patches stage")
        if "mpp" not in handle.attrs:
            raise input_error(patches_h5, "lacks the attribute 'mpp'", "re-run the patches stage")
        coords_px = np.asarray(handle["coords"][:], dtype=np.float64)
        barcodes = np.asarray(handle["barcode"][:]).reshape(-1)
        mpp = float(handle.attrs["mpp"])
    if not np.isfinite(mpp) or mpp <= 0:
        raise input_error(patches_h5, f"mpp = {mpp} is not a positive number",
                          "fix the microns per pixel of the sample and re-run patches")
    barcodes = np.array([b.decode() if isinstance(b, bytes) else str(b) for b in barcodes])
    return coords_px * mpp, barcodes


def write_graph(patches_h5: str | Path, out_npz: str | Path, k: int) -> None:
    """Build the kNN graph of one sample's patches and write ``graph/{sample}.npz``."""
    coords_um, barcodes = read_patch_coords(patches_h5)
    neighbors, distances = knn_graph(coords_um, k, where=patches_h5)
    offsets = edge_offsets(coords_um, neighbors).astype(np.float32)
    with atomic_output(out_npz) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, neighbors=neighbors, distances_um=distances, offsets_um=offsets,
                 barcode=barcodes.astype(str), coords_um=coords_um, k=np.int64(k))
    log.info("graph of %d spots (k=%d) written to %s", len(coords_um), k, out_npz)


def _run_graph(args: argparse.Namespace) -> None:
    write_graph(args.patches, args.out, args.k)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``stflow graph``."""
    parser = subparsers.add_parser("graph", help="k-nearest-neighbour graph of a sample's spots")
    parser.add_argument("--patches", type=Path, required=True, help="patches/{sample}.h5")
    parser.add_argument("--k", type=int, default=8, help="neighbours per spot (default 8)")
    parser.add_argument("--out", type=Path, required=True, help="graph/{sample}.npz")
    parser.set_defaults(func=_run_graph)

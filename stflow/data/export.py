"""Features in HEST-bench's embedding h5 layout, so HEST's linear-probe code reads ours.

HEST-bench (``hest.bench.benchmark.embed_tiles`` / ``save_hdf5``) writes one h5 per sample
with ``embeddings`` (N, D) float32, ``coords`` (N, 2) level-0 pixel centres (as its patch
files hold them) and ``barcodes`` (N, 1) bytes, and reads them back with
``read_assets_from_h5`` then ``assets["barcodes"].flatten().astype(str)``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np

from stflow.atomic import atomic_output
from stflow.data.dataset import read_features
from stflow.errors import input_error

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("hest",)


def level0_coords(coords_um: np.ndarray, um_per_px: float) -> np.ndarray:
    """Level-0 pixel centres; integers (as in HEST's patch files) when they are whole."""
    coords = np.asarray(coords_um, np.float64) / um_per_px
    rounded = np.rint(coords)
    return rounded.astype(np.int64) if np.allclose(coords, rounded, atol=1e-6) else coords


def export_features_hest(store: str | Path, out_h5: str | Path) -> Path:
    """Write ``features/{encoder}/{sample}.zarr`` as HEST-bench's ``{sample}.h5``."""
    import zarr

    store = Path(store)
    features, barcodes, coords_um = read_features(store)
    attrs = dict(zarr.open_group(str(store), mode="r").attrs)
    um_per_px = attrs.get("um_per_px")
    if not isinstance(um_per_px, int | float) or not um_per_px > 0:
        raise input_error(store, "records no um_per_px (not written by `stflow embed`), so its "
                          "coordinates cannot be given in level-0 pixels as HEST expects",
                          "re-run `stflow embed` for this sample")
    out = Path(out_h5)
    # no chunk cache: HDF5 crashes the interpreter flushing a cache the disk cannot take
    with atomic_output(out, needs=features.size * 4) as tmp, \
            h5py.File(tmp, "w", rdcc_nbytes=0) as h5:
        h5.create_dataset("embeddings", data=features.astype(np.float32))
        h5.create_dataset("coords", data=level0_coords(coords_um, float(um_per_px)))
        h5.create_dataset("barcodes", data=np.array([b.encode() for b in barcodes],
                                                    dtype=bytes).reshape(-1, 1))
        for key in ("encoder", "weights_sha256", "sample", "um_per_px", "patch_size_um"):
            if attrs.get(key) is not None:
                h5.attrs[key] = attrs[key]
    log.info("%s: %d embeddings of %s in HEST-bench's layout", out, len(features),
             attrs.get("encoder"))
    return out

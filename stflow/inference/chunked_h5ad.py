"""Write an AnnData h5ad whose (N, G) arrays arrive a row chunk at a time.

A million spots with a thousand genes make 4 GB per array (mean, spread, lower, upper...):
holding all of them to call ``AnnData.write_h5ad`` would need several times that. Here ``X``
and the layers are gzip datasets filled chunk by chunk, and the small parts (obs, var, obsm,
obsp, uns...) are written by anndata's own ``write_elem`` afterwards, so the file is the
same AnnData h5ad that ``anndata.read_h5ad`` and scanpy read. It is written under a
temporary name and renamed when complete (:func:`stflow.atomic.atomic_output`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import h5py
import numpy as np

from stflow.atomic import atomic_output

ARRAY = {"encoding-type": "array", "encoding-version": "0.2.0"}
DICT = {"encoding-type": "dict", "encoding-version": "0.1.0"}
ANNDATA = {"encoding-type": "anndata", "encoding-version": "0.1.0"}
GZIP = {"compression": "gzip"}
CHUNK_BYTES = 1 << 20  # gzip chunks of about 1 MiB


def _dataset(file: h5py.File, name: str, n_obs: int, block: np.ndarray) -> h5py.Dataset:
    """``X`` or ``layers/{name}``: (n_obs, G) of the first block's dtype, gzip in ~1 MiB chunks."""
    key = "X" if name == "X" else f"layers/{name}"
    width = block.shape[1]
    rows = int(np.clip(CHUNK_BYTES // max(width * block.dtype.itemsize, 1), 1, max(n_obs, 1)))
    dataset = file.create_dataset(key, shape=(n_obs, width), dtype=block.dtype,
                                  chunks=(rows, max(width, 1)) if width else None,
                                  **(GZIP if width else {}))
    dataset.attrs.update(ARRAY)
    return dataset


def write_h5ad_in_chunks(path: str | Path, n_obs: int,
                         chunks: Iterable[tuple[slice, dict[str, np.ndarray]]],
                         rest: Callable[[], object], then: Callable[[], None] | None = None
                         ) -> Path:
    """Write ``chunks`` ((rows, {"X" or layer name: (rows, G) block})) into datasets, then the
    AnnData ``rest()`` returns (no X, no layers: everything else) beside them; ``then()``
    runs last before the rename, for outputs that must not outlive a failed write."""
    from anndata.io import write_elem

    path = Path(path)
    # no chunk cache: HDF5 crashes the interpreter flushing a cache the disk cannot take (a
    # block's partial chunks at its two ends are read back and rewritten: a small cost)
    with atomic_output(path) as tmp, h5py.File(tmp, "w", rdcc_nbytes=0) as file:
        file.create_group("layers").attrs.update(DICT)
        datasets: dict[str, h5py.Dataset] = {}
        for rows, blocks in chunks:
            for name, block in blocks.items():
                if name not in datasets:
                    datasets[name] = _dataset(file, name, n_obs, block)
                datasets[name][rows] = block
        adata = rest()
        for key in ("obs", "var"):
            write_elem(file, key, getattr(adata, key), dataset_kwargs=GZIP)
        for key in ("obsm", "obsp", "varm", "varp", "uns"):
            write_elem(file, key, dict(getattr(adata, key)), dataset_kwargs=GZIP)
        file.attrs.update(ANNDATA)
        file.close()
        if then is not None:
            then()
    return path

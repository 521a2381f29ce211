"""A small Visium HD ``outs/`` folder, as Space Ranger writes it and spatialdata-io reads it.

Only the files ``spatialdata_io.visium_hd`` needs: ``feature_slice.h5`` (its
``metadata_json`` attribute holds the ``hd_layout_json`` file format) and per bin size
``binned_outputs/square_NNNum/filtered_feature_bc_matrix.h5``,
``spatial/tissue_positions.parquet`` (columns barcode, in_tissue, array_row, array_col,
pxl_row_in_fullres, pxl_col_in_fullres, in that order) and ``spatial/scalefactors_json.json``
(``bin_size_um / spot_diameter_fullres == microns_per_pixel``, the reader checks it). The
full-resolution H&E is a generated image beside ``outs/`` (the sheet's ``image``), so the
tests never depend on downloaded data.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from PIL import Image
from spaceranger_layout import write_10x_h5

UM_PER_PX = 0.5
ORIGIN_PX = 40.0  # centre of bin (row 0, col 0), in full-resolution pixels
GENES = ["GENE1", "GENE2", "GENE3", "GENE4", "GENE5"]
IMAGE_PX = 720


def barcode(bin_um: int, row: int, col: int) -> str:
    return f"s_{bin_um:03d}um_{row:05d}_{col:05d}-1"


def bin_counts(n_bins: int) -> np.ndarray:
    """Known counts: bin i, gene g holds (i + 3 g) % 7."""
    return (np.arange(n_bins)[:, None] + 3 * np.arange(len(GENES))[None, :]) % 7


def write_bins(outs: Path, bin_um: int, grid: int) -> Path:
    """``binned_outputs/square_{bin_um}um`` of a ``grid`` x ``grid`` square of bins; row 0 lies
    outside the tissue (its bins still have counts), and one more bin has a position only."""
    folder = outs / "binned_outputs" / f"square_{bin_um:03d}um"
    (folder / "spatial").mkdir(parents=True)
    rows, cols = np.divmod(np.arange(grid * grid), grid)
    barcodes = [barcode(bin_um, r, c) for r, c in zip(rows, cols, strict=True)]
    write_10x_h5(folder / "filtered_feature_bc_matrix.h5", bin_counts(grid * grid), barcodes,
                 GENES)
    step = bin_um / UM_PER_PX
    positions = pd.DataFrame({
        "barcode": barcodes + [barcode(bin_um, grid, 0)],
        "in_tissue": np.r_[(rows > 0).astype(np.int32), 0],
        "array_row": np.r_[rows, grid].astype(np.int32),
        "array_col": np.r_[cols, 0].astype(np.int32),
        "pxl_row_in_fullres": ORIGIN_PX + step * np.r_[rows, grid],
        "pxl_col_in_fullres": ORIGIN_PX + step * np.r_[cols, 0],
    })
    positions.to_parquet(folder / "spatial" / "tissue_positions.parquet", index=False)
    (folder / "spatial" / "scalefactors_json.json").write_text(json.dumps({
        "spot_diameter_fullres": step, "bin_size_um": float(bin_um),
        "microns_per_pixel": UM_PER_PX, "tissue_hires_scalef": 0.2,
        "tissue_lowres_scalef": 0.05, "fiducial_diameter_fullres": 1000.0,
        "regist_target_img_scalef": 0.2}))
    return folder


def make_hd(root: Path, bins: dict[int, int] | None = None) -> Path:
    """``root/outs`` with ``bins`` (µm -> grid side; default 16 µm 20 x 20 and 8 µm 4 x 4)
    and ``root/image.png``; returns the outs/ folder."""
    outs = root / "outs"
    outs.mkdir(parents=True)
    with h5py.File(outs / "feature_slice.h5", "w") as f:
        f.attrs["metadata_json"] = json.dumps({"hd_layout_json": json.dumps(
            {"file_format": "1.0", "transform": [1, 0, 0, 0, 1, 0, 0, 0, 1]})})
    for bin_um, grid in (bins or {16: 20, 8: 4}).items():
        write_bins(outs, bin_um, grid)
    ramp = np.linspace(120, 240, IMAGE_PX, dtype=np.uint8)
    pixels = np.stack([np.tile(ramp, (IMAGE_PX, 1)), np.tile(ramp[:, None], (1, IMAGE_PX)),
                       np.full((IMAGE_PX, IMAGE_PX), 200, np.uint8)], axis=-1)
    Image.fromarray(pixels).save(root / "image.png")
    return outs

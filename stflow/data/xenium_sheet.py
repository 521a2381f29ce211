"""Xenium rows of the sample sheet: what a Xenium output folder, its aligned H&E and the
alignment must hold, checked when the sheet is read, before any job.

A row gives ``xenium`` (the output folder), ``image`` (the H&E), ``alignment`` (the 3 x 3
affine from H&E pixels to Xenium pixels, as Xenium Explorer exports it,
``*_imagealignment.csv``), optional ``bin_um`` (default :data:`DEFAULT_BIN_UM`) and ``unit``
(default :data:`DEFAULT_UNIT`). The files named are those ``spatialdata_io.xenium`` opens
for the unit read. The standard library only at import: the image header and the parquet
footers are read (lazily) only for sheets that have Xenium rows.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

SPECS = "experiment.xenium"  # pixel_size and the analysis version; the reader opens it first
CELLS_ZARR = "cells.zarr.zip"  # the reader opens it whatever it reads
TRANSCRIPTS = "transcripts.parquet"
CELL_MATRIX = "cell_feature_matrix.h5"
CELLS = "cells.parquet"
UNIT_FILES = {"transcripts": (TRANSCRIPTS,), "cells": (CELL_MATRIX, CELLS)}
UNIT_COLUMNS = {"transcripts": ("x_location", "y_location"),  # µm, in the parquet read
                "cells": ("x_centroid", "y_centroid")}
DEFAULT_UNIT = "transcripts"  # HEST's pseudo-Visium counts transcripts, not cells
DEFAULT_BIN_UM = 55.0  # Visium's spot: Xenium bins as large as the Visium spots beside them
MIN_ON_IMAGE = 0.5  # least share of the Xenium data's extent the aligned H&E must cover
ALIGNMENT_FIX = ("export the alignment again from Xenium Explorer (Image Alignment, "
                 "'Download alignment file': three rows of three comma-separated numbers)")


def xenium_files(folder: Path, unit: str) -> list[Path]:
    """The files the reader opens for ``unit`` (a newer one reruns the sample's ingest)."""
    return [folder / SPECS, folder / CELLS_ZARR, *(folder / n for n in UNIT_FILES[unit])]


def pixel_size(folder: Path) -> float | None:
    """``pixel_size`` (µm per Xenium pixel) of ``experiment.xenium``; None: unreadable."""
    try:
        specs = json.loads((folder / SPECS).read_text())
    except (OSError, ValueError):
        return None
    size = specs.get("pixel_size") if isinstance(specs, dict) else None
    if isinstance(size, bool) or not isinstance(size, int | float) or not size > 0:
        return None
    return float(size) if math.isfinite(size) else None


def read_alignment(path: Path) -> list[list[float]]:
    """The 3 x 3 affine of an alignment file; ValueError saying what is wrong with it."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot be read ({type(err).__name__})") from None
    rows = [row for row in csv.reader(text.splitlines()) if any(c.strip() for c in row)]
    if len(rows) != 3 or any(len(row) != 3 for row in rows):
        raise ValueError(f"holds {len(rows)} rows of {sorted({len(r) for r in rows})} cells, "
                         "not a 3 x 3 matrix")
    try:
        matrix = [[float(c) for c in row] for row in rows]
    except ValueError:
        raise ValueError("holds a cell that is not a number (a header?)") from None
    if not all(math.isfinite(v) for row in matrix for v in row):
        raise ValueError("holds a value that is not finite")
    if any(abs(v - w) > 1e-9 for v, w in zip(matrix[2], (0.0, 0.0, 1.0), strict=True)):
        raise ValueError(f"last row is {matrix[2]}, not 0, 0, 1 (not an affine)")
    if abs(determinant(matrix)) < 1e-12:
        raise ValueError("is singular: it maps the H&E onto a line")
    return matrix


def determinant(matrix: list[list[float]]) -> float:
    """Of the linear part (the first two rows and columns)."""
    return matrix[0][0] * matrix[1][1] - matrix[0][1] * matrix[1][0]


def um_per_px(matrix: list[list[float]], xenium_pixel_um: float) -> float:
    """µm per H&E pixel: the affine's scale (H&E px -> Xenium px) times the Xenium pixel."""
    return math.sqrt(abs(determinant(matrix))) * xenium_pixel_um


def to_image(matrix: list[list[float]], x: float, y: float) -> tuple[float, float]:
    """A Xenium pixel in H&E pixels (the inverse of the affine)."""
    (a, b, tx), (c, d, ty) = matrix[0], matrix[1]
    det = determinant(matrix)
    x, y = x - tx, y - ty
    return (d * x - b * y) / det, (a * y - c * x) / det


def data_extent_um(folder: Path, unit: str) -> tuple[float, float, float, float] | None:
    """(x0, y0, x1, y1) in µm of the positions the unit bins, from the parquet footer's
    statistics (no rows read); None where a file has none."""
    import pyarrow.parquet as pq

    name = UNIT_FILES[unit][-1]
    meta = pq.ParquetFile(folder / name).metadata
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    lows, highs = [], []
    for column in UNIT_COLUMNS[unit]:
        if column not in names:
            raise ValueError(f"{name} has no column {column}")
        index = names.index(column)
        stats = [meta.row_group(g).column(index).statistics for g in range(meta.num_row_groups)]
        if not stats or any(s is None or not s.has_min_max for s in stats):
            return None
        lows.append(min(float(s.min) for s in stats))
        highs.append(max(float(s.max) for s in stats))
    return lows[0], lows[1], highs[0], highs[1]


def share_on_image(extent_um: tuple[float, float, float, float], matrix: list[list[float]],
                   xenium_pixel_um: float, size: tuple[int, int]) -> float:
    """The share of the data's extent that lies on the H&E (its corners mapped through the
    alignment; the box around them against the image)."""
    x0, y0, x1, y1 = (v / xenium_pixel_um for v in extent_um)
    corners = [to_image(matrix, x, y) for x in (x0, x1) for y in (y0, y1)]
    left, right = min(c[0] for c in corners), max(c[0] for c in corners)
    top, bottom = min(c[1] for c in corners), max(c[1] for c in corners)
    area = max(right - left, 1e-9) * max(bottom - top, 1e-9)
    width, height = size
    inside = (max(0.0, min(right, width) - max(left, 0.0))
              * max(0.0, min(bottom, height) - max(top, 0.0)))
    return inside / area


def bin_um_of(cell: str) -> float | None:
    """A positive, finite bin size in µm, else None."""
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def xenium_problems(folder: Path, image: Path | None, alignment: Path | None,
                    unit: str, bin_cell: str) -> list[tuple[str, str, str]]:
    """Every problem of one Xenium row as (column, problem, fix); paths already exist."""
    out: list[tuple[str, str, str]] = []
    if bin_cell and bin_um_of(bin_cell) is None:
        out.append(("bin_um", f"{bin_cell!r} is not a positive number of µm",
                    f"give the bin side in µm, e.g. {DEFAULT_BIN_UM:g} (empty: "
                    f"{DEFAULT_BIN_UM:g})"))
    if not folder.is_dir():
        return [*out, ("xenium", f"{folder} is not a folder", "give the Xenium output folder "
                       "(the one holding experiment.xenium)")]
    missing = [p.name for p in xenium_files(folder, unit) if not p.exists()]
    if missing:
        kind = "transcripts" if unit == "transcripts" else "cells"
        return [*out, ("xenium", f"{folder} lacks {missing} (unit {unit}: the {kind} are "
                       "binned)", "copy these files from the Xenium output folder (the "
                       f"reader needs {[p.name for p in xenium_files(folder, unit)]}), or "
                       "choose the unit its files allow")]
    xenium_px = pixel_size(folder)
    if xenium_px is None:
        return [*out, ("xenium", f"{folder / SPECS} has no positive pixel_size",
                       "use the experiment.xenium Xenium Onboard Analysis wrote")]
    if alignment is None or image is None:
        return out
    try:
        matrix = read_alignment(alignment)
    except ValueError as err:
        return [*out, ("alignment", f"{alignment} {err}", ALIGNMENT_FIX)]
    return out + _image_problems(folder, unit, image, alignment, matrix, xenium_px)


def _image_problems(folder: Path, unit: str, image: Path, alignment: Path,
                    matrix: list[list[float]], xenium_px: float) -> list[tuple[str, str, str]]:
    """An H&E that cannot be read, or whose size does not fit the alignment."""
    from stflow.data.sources.ingest_form import image_size
    from stflow.errors import StflowError

    try:
        size = image_size(image)
    except StflowError as err:
        return [("image", str(err).splitlines()[0], "give the full-resolution H&E the "
                 "alignment was made on")]
    try:
        extent = data_extent_um(folder, unit)
    except Exception as err:  # any parquet error: the file is damaged
        return [("xenium", f"{folder / UNIT_FILES[unit][-1]} cannot be read "
                 f"({type(err).__name__}: {err})", "copy it from the Xenium output again")]
    if size is None or extent is None:
        return []
    share = share_on_image(extent, matrix, xenium_px, size)
    if share >= MIN_ON_IMAGE:
        return []
    scale = um_per_px(matrix, xenium_px)
    return [("image", f"{image} ({size[0]} x {size[1]} px) does not match {alignment.name}: "
             f"only {share:.0%} of the Xenium data ({extent[2] - extent[0]:.0f} x "
             f"{extent[3] - extent[1]:.0f} µm) falls on it at the alignment's "
             f"{scale:.3f} µm/px", "give the full-resolution H&E the alignment was made on "
             "(not a downscaled copy or another section), or align this image again")]

"""A Xenium output folder and its aligned H&E in the common ingest form, read by spatialdata-io.

``spatialdata_io.xenium`` reads the transcripts (lazily, a dask dataframe over
``transcripts.parquet``) or the cells (``cell_feature_matrix.h5`` + ``cells.parquet``), each
with its transformation from Xenium µm to Xenium pixels; ``spatialdata_io.xenium_aligned_image``
reads the H&E with the alignment (H&E pixels to Xenium pixels). Here are only what they do
not do: binning into square bins (:mod:`stflow.data.sources.xenium_bins`, one dask partition
at a time), the 10x quality threshold and the panel's genes, bin centres through both
transformations into the H&E's level-0 pixels, and the H&E's µm/px from the alignment.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm import tqdm

from stflow.data.genes import is_xenium_gene
from stflow.data.sources.common import VAR_COLUMNS, IngestedSample, image_size
from stflow.data.sources.xenium_bins import BinCounter
from stflow.data.xenium_sheet import (
    ALIGNMENT_FIX,
    SPECS,
    pixel_size,
    read_alignment,
    um_per_px,
    xenium_files,
)
from stflow.errors import input_error

log = logging.getLogger(__name__)

MIN_QV = 20.0  # 10x counts a transcript in the cell-feature matrix from this quality on
AXES = ("x", "y")


def _xenium(folder: Path, unit: str) -> Any:
    """The reader's SpatialData with only what ``unit`` bins (no images, labels, polygons)."""
    from spatialdata_io import xenium

    cells = unit == "cells"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"The table is annotating")
            warnings.filterwarnings("ignore", message=r"Could not parse the version")
            return xenium(folder, cells_boundaries=False, nucleus_boundaries=False,
                          cells_as_circles=cells, cells_labels=False, nucleus_labels=False,
                          transcripts=not cells, morphology_mip=False, morphology_focus=False,
                          aligned_images=False, cells_table=cells)
    except Exception as err:  # any failure of the reader means the folder is damaged
        raise input_error(folder, f"cannot read the Xenium output ({type(err).__name__}: "
                          f"{err})", f"copy {[p.name for p in xenium_files(folder, unit)]} "
                          "from the Xenium output folder again") from err


def _matrix(element: Any, *, inverse: bool = False) -> np.ndarray:
    """The element's transformation to the reader's ``global`` (Xenium pixel) system as a
    3 x 3 matrix over (x, y, 1); its inverse when asked."""
    from spatialdata.transformations import get_transformation

    transformation = get_transformation(element, "global")
    if inverse:
        transformation = transformation.inverse()
    return np.asarray(transformation.to_affine_matrix(input_axes=AXES, output_axes=AXES))


def _image_from_xenium(image: Path, alignment: Path) -> np.ndarray:
    """Xenium pixels -> H&E pixels: the inverse of the alignment as the reader applies it."""
    from spatialdata_io import xenium_aligned_image

    try:
        read_alignment(alignment)  # a clear refusal, not the reader's parser error
    except ValueError as err:
        raise input_error(alignment, str(err), ALIGNMENT_FIX) from None
    try:
        element = xenium_aligned_image(image, alignment, rgba=True)
    except Exception as err:  # any failure of the reader means the image is unreadable
        raise input_error(image, f"spatialdata-io cannot read the H&E ({type(err).__name__}: "
                          f"{err})", "give the H&E as TIFF / OME-TIFF (as aligned in Xenium "
                          "Explorer)") from err
    return _matrix(element, inverse=True)


def _bin_transcripts(points: Any, bin_um: float) -> tuple[BinCounter, pd.DataFrame, dict]:
    """Panel transcripts of quality >= :data:`MIN_QV` counted per bin, one partition at a time."""
    features = list(points["feature_name"].dtype.categories.astype(str))
    genes = sorted(f for f in features if is_xenium_gene(f))
    position = {gene: i for i, gene in enumerate(genes)}
    index = np.array([position.get(f, -1) for f in features] + [-1])  # code -1: no name
    has_qv = "qv" in points.columns
    columns = ["x", "y", "feature_name", *(["qv"] if has_qv else [])]
    counter = BinCounter(bin_um, len(genes))
    tally = {"read": 0, "low_quality": 0, "not_genes": 0}
    for part in tqdm(points[columns].to_delayed(), desc="binning transcripts", unit="part"):
        frame = part.compute()
        gene = index[frame["feature_name"].cat.codes.to_numpy()]  # code -1 (NaN) -> -1
        good = np.ones(len(frame), dtype=bool)
        if has_qv:
            good = frame["qv"].to_numpy() >= MIN_QV
            tally["low_quality"] += int((~good).sum())
        tally["not_genes"] += int((good & (gene < 0)).sum())
        good &= gene >= 0
        tally["read"] += len(frame)
        counter.add(frame["x"].to_numpy()[good], frame["y"].to_numpy()[good], gene[good])
    record = {"transcripts_read": tally["read"], "transcripts_not_genes": tally["not_genes"],
              **({"min_qv": MIN_QV, "transcripts_low_quality": tally["low_quality"]}
                 if has_qv else {})}
    return counter, pd.DataFrame(index=pd.Index(genes)), record


def _bin_cells(table: ad.AnnData, bin_um: float) -> tuple[BinCounter, pd.DataFrame, dict]:
    """Whole cells summed into the bin of their centroid (gene expression features only)."""
    keep = np.array([is_xenium_gene(str(g)) for g in table.var_names])
    counts = sp.csr_matrix(table.X)[:, keep]
    centroids = np.asarray(table.obsm["spatial"], dtype=np.float64)  # µm
    counter = BinCounter(bin_um, counts.shape[1])
    coo = counts.tocoo()
    counter.add(centroids[coo.row, 0], centroids[coo.row, 1], coo.col.astype(np.int64),
                weights=coo.data)
    var = table.var.loc[keep, [c for c in VAR_COLUMNS if c in table.var]].copy()
    return counter, var, {"cells_read": int(table.n_obs)}


def read_xenium(folder: str | Path, *, alignment: str | Path, image: str | Path,
                bin_um: float, unit: str, sample: str, patient: str,
                source: str = "sheet") -> IngestedSample:
    """One Xenium section binned into square bins of ``bin_um`` µm, each bin holding a count a
    spot; centres in the H&E's level-0 pixels; bins whose centre is off the H&E dropped."""
    folder, alignment, image = Path(folder), Path(alignment), Path(image)
    missing = [p.name for p in xenium_files(folder, unit) if not p.exists()]
    if missing:
        raise input_error(folder, f"lacks {missing} (unit {unit})",
                          "copy them from the Xenium output folder")
    xenium_px = pixel_size(folder)
    if xenium_px is None:
        raise input_error(folder / SPECS, "has no positive pixel_size",
                          "use the experiment.xenium Xenium Onboard Analysis wrote")
    he_from_xenium = _image_from_xenium(image, alignment)
    sdata = _xenium(folder, unit)
    if unit == "cells":
        counter, var, record = _bin_cells(sdata.tables["table"], bin_um)
        to_xenium = _matrix(sdata.shapes["cell_circles"])
    else:
        counter, var, record = _bin_transcripts(sdata.points["transcripts"], bin_um)
        to_xenium = _matrix(sdata.points["transcripts"])
    rows, cols, counts = counter.result()
    if not len(rows):
        raise input_error(folder, f"no {unit} of the panel's genes to bin",
                          "check the Xenium output holds the section's data")
    centres = counter.centres_um(rows, cols)
    spatial = (np.c_[centres, np.ones(len(centres))] @ (he_from_xenium @ to_xenium).T)[:, :2]
    width, height = image_size(image) or (np.inf, np.inf)
    on_image = ((spatial >= 0) & (spatial < [width, height])).all(axis=1)
    if not on_image.any():
        raise input_error(image, "no bin centre lies on the H&E through the alignment",
                          "give the H&E the alignment was made on")
    if not on_image.all():
        log.info("%s: dropped %d bins whose centre lies off the H&E", sample,
                 int((~on_image).sum()))
    rows, cols, spatial = rows[on_image], cols[on_image], spatial[on_image]
    obs = pd.DataFrame({"in_tissue": True, "array_row": rows.astype(np.int32),
                        "array_col": cols.astype(np.int32)},
                       index=pd.Index([f"bin_{r}_{c}" for r, c in zip(rows, cols, strict=True)]))
    matrix = read_alignment(alignment)
    record.update({"platform": "xenium", "unit": unit, "bin_um": float(bin_um),
                   "lattice": "square", "xenium_pixel_um": xenium_px,
                   "alignment": str(alignment.resolve()),
                   "bins_off_image": int((~on_image).sum())})
    return IngestedSample(sample=sample, patient=patient,
                          counts=ad.AnnData(X=counts[on_image], obs=obs, var=var),
                          spatial_px=spatial, image_path=image,
                          mpp=um_per_px(matrix, xenium_px), source=source, record=record)

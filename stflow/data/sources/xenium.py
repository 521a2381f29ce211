"""A Xenium output folder and its aligned H&E in the common ingest form, read by spatialdata-io.

``spatialdata_io.xenium`` reads the transcripts (lazily, a dask dataframe over
``transcripts.parquet``: its features, its transformation) or the cells
(``cell_feature_matrix.h5`` + ``cells.parquet``), each with its transformation from Xenium µm
to Xenium pixels; ``spatialdata_io.xenium_aligned_image`` reads the H&E with the alignment
(H&E pixels to Xenium pixels). Here are only what they do not do: binning into square bins
(:mod:`stflow.data.sources.xenium_bins`, the transcripts' columns a batch of rows at a time),
the 10x quality threshold and the panel's genes, bin centres through both transformations
into the H&E's level-0 pixels, and the H&E's µm/px from the alignment.
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
from stflow.data.sources.ingest_form import VAR_COLUMNS, IngestedSample, image_size
from stflow.data.sources.xenium_bins import BinCounter
from stflow.data.xenium_sheet import (
    ALIGNMENT_FIX,
    SPECS,
    TRANSCRIPTS,
    UNIT_COLUMNS,
    pixel_size,
    read_alignment,
    um_per_px,
    xenium_files,
)
from stflow.errors import input_error

log = logging.getLogger(__name__)

MIN_QV = 20.0  # 10x counts a transcript in the cell-feature matrix from this quality on
BATCH = 1_000_000  # transcripts read at a time (about 30 MB of columns)
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


def _feature_names(column: Any) -> Any:
    """A batch's ``feature_name`` as plain strings (XOA writes bytes, strings or a
    dictionary of either)."""
    import pyarrow as pa

    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column if pa.types.is_string(column.type) else column.cast(pa.string())


def _bin_transcripts(folder: Path, points: Any,
                     bin_um: float) -> tuple[BinCounter, pd.DataFrame, dict]:
    """Panel transcripts of quality >= :data:`MIN_QV` counted per bin, a batch of
    :data:`BATCH` rows at a time. The features are the reader's; the rows are read from
    ``transcripts.parquet`` in batches because the reader's dask frame holds a single-file
    parquet as one partition (dask's inference), which would load every transcript."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    features = [str(f) for f in points["feature_name"].dtype.categories]
    genes = sorted(f for f in features if is_xenium_gene(f))
    position = {gene: i for i, gene in enumerate(genes)}
    index = np.array([position.get(f, -1) for f in features] + [-1])  # -1: not in features
    parquet = pq.ParquetFile(folder / TRANSCRIPTS)
    has_qv = "qv" in parquet.schema_arrow.names
    columns = [*UNIT_COLUMNS["transcripts"], "feature_name", *(["qv"] if has_qv else [])]
    counter = BinCounter(bin_um, len(genes))
    tally = {"read": 0, "low_quality": 0, "not_genes": 0}
    known = pa.array(features, pa.string())
    with tqdm(total=parquet.metadata.num_rows, desc="binning transcripts", unit="tx") as bar:
        for batch in parquet.iter_batches(batch_size=BATCH, columns=columns):
            found = pc.index_in(_feature_names(batch.column("feature_name")), value_set=known)
            gene = index[found.fill_null(-1).to_numpy(zero_copy_only=False)]
            good = np.ones(batch.num_rows, dtype=bool)
            if has_qv:
                good = batch.column("qv").to_numpy(zero_copy_only=False) >= MIN_QV
                tally["low_quality"] += int((~good).sum())
            tally["not_genes"] += int((good & (gene < 0)).sum())
            good &= gene >= 0
            tally["read"] += batch.num_rows
            x, y = (batch.column(c).to_numpy(zero_copy_only=False)
                    for c in UNIT_COLUMNS["transcripts"])
            counter.add(x[good], y[good], gene[good])
            bar.update(batch.num_rows)
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
        counter, var, record = _bin_transcripts(folder, sdata.points["transcripts"], bin_um)
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

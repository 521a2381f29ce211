"""The common ingest form: one in-memory sample, written to ``st/{sample}.h5ad``.

Every source reader returns an :class:`IngestedSample`; :func:`write_st` is the only writer,
so all sources give files of the same shape (docs/artifacts.md, "ingest").
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from stflow.atomic import atomic_output, write_h5ad
from stflow.data.spatial_image import sample_spatial
from stflow.errors import check_finite, input_error
from stflow.provenance import X_COUNTS, stflow_uns

log = logging.getLogger(__name__)

SAMPLES_COLUMNS = ["sample", "patient", "image_path", "mpp", "n_spots"]
PATCH_FILE_SUFFIXES = {".h5", ".hdf5"}  # HEST-bench ships patches, not whole-slide images
# Optional columns a source may put in ``counts.obs`` / ``counts.var`` (Space Ranger gives
# them); ``st/`` keeps those present, so a user can join back to the 10x outputs.
OBS_COLUMNS = ("in_tissue", "array_row", "array_col")
VAR_COLUMNS = ("gene_ids", "feature_types", "genome")


@dataclass
class IngestedSample:
    """One section as every source gives it, before it is written to disk.

    ``counts.obs`` may hold :data:`OBS_COLUMNS` and ``counts.var`` :data:`VAR_COLUMNS`;
    the other sources leave them absent."""

    sample: str
    patient: str
    counts: ad.AnnData  # raw integer counts, spots x genes, obs index = barcode
    spatial_px: np.ndarray  # (N, 2) level-0 pixel centres, x = column, y = row
    image_path: Path
    mpp: float  # microns per level-0 pixel
    source: str
    record: dict[str, Any] = field(default_factory=dict)  # how the spots were made (binned
    # platforms: platform, bin size, unit, ...), added to uns["stflow"]

    def validate(self) -> None:
        """Refuse a sample that would give a wrong ``st/`` file (shapes, counts, µm/px, image)."""
        where = f"sample {self.sample} ({self.source})"
        n = self.counts.n_obs
        spatial = np.asarray(self.spatial_px, dtype=np.float64)
        if spatial.shape != (n, 2):
            raise input_error(where, f"spot positions have shape {spatial.shape}, expected ({n}, 2)",
                              "give one (x, y) pixel centre per spot of the count table")
        check_finite(spatial, "spot positions", where)
        if not (np.isfinite(self.mpp) and self.mpp > 0):
            raise input_error(where, f"microns per pixel is {self.mpp!r}",
                              "give a positive µm/px (from the spot grid or the slide metadata)")
        if n == 0:
            raise input_error(where, "no spots left", "check that positions and counts share barcodes")
        if not self.counts.obs_names.is_unique:
            raise input_error(where, "spot barcodes are not unique", "de-duplicate the count table")
        self.counts.X = integer_counts(self.counts.X, where)
        check_image(self.image_path, spatial, where)


def integer_counts(matrix: object, where: str) -> sp.csr_matrix:
    """Raw counts as CSR int32; refuse negative or non-integer values (log/normalised data)."""
    csr = sp.csr_matrix(matrix)
    data = np.asarray(csr.data)
    if data.size and data.dtype.kind == "f":
        check_finite(data, "counts", where)
        if np.any(np.abs(data - np.round(data)) > 1e-6):
            raise input_error(where, "counts hold non-integer values",
                              "pass raw UMI/read counts, not normalised or log values")
        data = np.round(data)
    if data.size and data.min() < 0:
        raise input_error(where, "counts hold negative values", "pass raw, non-negative counts")
    if data.size and data.max() > np.iinfo(np.int32).max:
        raise input_error(where, "counts exceed the int32 range", "check the count table is raw counts")
    out = sp.csr_matrix((data.astype(np.int32), csr.indices, csr.indptr), shape=csr.shape)
    out.eliminate_zeros()
    return out


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of a level-0 image, read from its header; ``None`` for a patch file."""
    path = Path(path)
    if not path.is_file():
        raise input_error(path, "H&E image is missing", "download the source again or pass the "
                          "right image path (e.g. `--image` for visium)")
    if path.suffix.lower() in PATCH_FILE_SUFFIXES:
        return None
    try:
        if path.suffix.lower() in {".jpg", ".jpeg", ".png"}:
            from PIL import Image

            Image.MAX_IMAGE_PIXELS = None  # whole-slide JPEGs are legitimately huge
            with Image.open(path) as image:
                image.verify()
                return image.size
        if path.suffix.lower() in {".tif", ".tiff"}:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                page = tif.pages[0]
                return int(page.imagewidth), int(page.imagelength)
        import openslide

        with openslide.OpenSlide(str(path)) as slide:
            return slide.dimensions
    except Exception as err:  # any decoder error means the same thing to the user
        raise input_error(path, f"H&E image cannot be read ({type(err).__name__}: {err})",
                          "download the image again; it is truncated or not an image") from err


def check_image(image_path: Path, spatial: np.ndarray, where: str) -> None:
    """The image must exist and hold every spot centre (coordinates swapped or mis-scaled)."""
    size = image_size(image_path)
    if size is None:
        return
    width, height = size
    outside = ((spatial[:, 0] < 0) | (spatial[:, 0] >= width)
               | (spatial[:, 1] < 0) | (spatial[:, 1] >= height))
    if outside.any():
        first = spatial[np.argmax(outside)].round(1).tolist()
        raise input_error(where, f"{int(outside.sum())} spot centres lie outside the image "
                          f"{image_path} ({width} x {height} px), e.g. {first}",
                          "check that positions are level-0 pixels of this image, x = column")


def unique_names(names: list[str] | pd.Index) -> list[str]:
    """Gene symbols made unique with ``-1``, ``-2`` (the anndata convention)."""
    from anndata.utils import make_index_unique

    return list(make_index_unique(pd.Index([str(n) for n in names]), join="-"))


def build_st(sample: IngestedSample) -> ad.AnnData:
    """The AnnData of docs/artifacts.md for one validated sample, with the H&E inside."""
    sample.validate()
    counts = sample.counts
    obs = pd.DataFrame(index=pd.Index(counts.obs_names.astype(str), name=None))
    for column in OBS_COLUMNS:
        if column in counts.obs:
            values = counts.obs[column].to_numpy()
            obs[column] = values.astype(bool) if column == "in_tissue" else values
    var = pd.DataFrame(index=pd.Index(unique_names(counts.var_names)))
    for column in VAR_COLUMNS:
        if column in counts.var:
            var[column] = counts.var[column].astype(str).to_numpy()
    spatial = np.asarray(sample.spatial_px, dtype=np.float64)
    adata = ad.AnnData(X=counts.X, obs=obs, var=var)
    adata.obsm["spatial"] = spatial
    adata.obsm["spatial_um"] = spatial * float(sample.mpp)
    adata.uns["mpp"] = float(sample.mpp)
    adata.uns["sample"] = str(sample.sample)
    adata.uns["patient"] = str(sample.patient)
    adata.uns["image_path"] = str(Path(sample.image_path).resolve())
    adata.uns["source"] = str(sample.source)
    adata.uns["stflow"] = stflow_uns("st", sample.sample, X_COUNTS, patient=str(sample.patient),
                                     source=str(sample.source), mpp=float(sample.mpp),
                                     **sample.record)
    spatial = sample_spatial(sample.image_path, float(sample.mpp), spatial, str(sample.sample))
    if spatial is not None:  # a downscaled H&E inside: sc.pl.spatial draws the file anywhere
        adata.uns["spatial"] = spatial
    return adata


def write_st(sample: IngestedSample, out: str | Path) -> Path:
    """Write ``st/{sample}.h5ad`` atomically; the one writer for every source.

    Besides the absolute ``uns["image_path"]`` the pipeline reads, the image's path relative
    to the file's folder is kept, which still holds when ``results/`` moves with ``raw/``.
    """
    adata = build_st(sample)
    out = Path(out)
    adata.uns["stflow"]["image_relative_path"] = os.path.relpath(
        adata.uns["image_path"], out.resolve().parent)
    write_h5ad(adata, out)
    log.info("wrote %s: %d spots x %d genes, %.4f µm/px", out, adata.n_obs, adata.n_vars,
             adata.uns["mpp"])
    return out


def st_summary(path: str | Path) -> dict[str, object]:
    """One samples.tsv row from an ingested h5ad (read backed, so X is not loaded)."""
    path = Path(path)
    try:
        adata = ad.read_h5ad(path, backed="r")
    except Exception as err:
        raise input_error(path, f"cannot read ingested sample ({err})",
                          "delete it and run `stflow ingest` again") from err
    try:
        missing = [k for k in ("sample", "patient", "image_path", "mpp") if k not in adata.uns]
        if missing:
            raise input_error(path, f"uns lacks {missing}", "re-run `stflow ingest` for this sample")
        return {"sample": str(adata.uns["sample"]), "patient": str(adata.uns["patient"]),
                "image_path": str(adata.uns["image_path"]), "mpp": float(adata.uns["mpp"]),
                "n_spots": int(adata.n_obs)}
    finally:
        adata.file.close()


def write_samples_tsv(st_paths: list[str | Path], out: str | Path) -> Path:
    """Write ``samples.tsv`` (sample, patient, image_path, mpp, n_spots), sorted by sample."""
    rows = sorted((st_summary(p) for p in st_paths), key=lambda row: str(row["sample"]))
    seen: dict[str, int] = {}
    for row in rows:
        seen[str(row["sample"])] = seen.get(str(row["sample"]), 0) + 1
    doubled = [name for name, n in seen.items() if n > 1]
    if doubled:
        raise input_error(out, f"sample names occur more than once: {doubled}",
                          "pass each st/{sample}.h5ad once")
    out = Path(out)
    with atomic_output(out) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SAMPLES_COLUMNS, delimiter="\t",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return out

"""A Space Ranger ``outs/`` folder in the common ingest form, read by spatialdata-io.

``spatialdata_io.visium`` (maintained by scverse) reads the 10x matrix, the tissue positions
(``tissue_positions.csv`` or the older ``tissue_positions_list.csv``) and the scale factors;
here are only what it does not do for us: clear errors for a folder that lacks positions or
scale factors, in-tissue spots only, µm/px, and the columns the ``st/`` file keeps (gene ids,
feature types, array row/column).

Visium HD folders (``binned_outputs/``) are read by ``spatialdata_io.visium_hd``, one bin size
(:func:`read_hd`): each bin becomes a spot, its centre in full-resolution pixels and µm/px
from the bin's ``microns_per_pixel``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from stflow.data.sample_sheet import (
    FEATURE_SLICE,
    HD_SCALE_KEYS,
    MATRIX,
    POSITION_FILES,
    SCALEFACTORS,
    VISIUM_SPOT_UM,
    feature_slice,
    hd_bin_files,
    hd_bin_folder,
    hd_bin_sizes,
    hd_scale_factors,
    positions_file,
    spot_diameter_px,
)
from stflow.data.sources.ingest_form import OBS_COLUMNS, VAR_COLUMNS, IngestedSample
from stflow.errors import input_error

log = logging.getLogger(__name__)


def check_outs(outs: Path, um_per_px: float | None) -> float:
    """Refuse a folder without matrix, positions or scale factors; return its µm/px."""
    if not (outs / MATRIX).is_file():
        raise input_error(outs, f"no {MATRIX}", "give the Space Ranger outs/ folder")
    if positions_file(outs) is None:
        raise input_error(outs / "spatial", f"no {' or '.join(POSITION_FILES)}",
                          "copy the whole outs/spatial folder Space Ranger wrote")
    if not (outs / "spatial" / SCALEFACTORS).is_file():
        raise input_error(outs / "spatial", f"no {SCALEFACTORS}",
                          "copy the whole outs/spatial folder Space Ranger wrote")
    diameter = spot_diameter_px(outs)
    if um_per_px is not None:
        if diameter is not None:
            log.info("%s: µm/px %.4f as given (the Visium spot diameter would say %.4f)",
                     outs, um_per_px, VISIUM_SPOT_UM / diameter)
        return float(um_per_px)
    if diameter is None:
        raise input_error(outs / "spatial" / SCALEFACTORS, "spot_diameter_fullres is missing "
                          "or not positive, so µm/px is unknown",
                          "use the scale factors Space Ranger wrote for this image, or give "
                          "um_per_px")
    return VISIUM_SPOT_UM / diameter


def read_table(outs: Path, sample: str) -> ad.AnnData:
    """The spatialdata-io table: counts, obs (in_tissue, array_row/col), obsm spatial (x, y)."""
    from spatialdata_io import visium

    try:
        with warnings.catch_warnings():  # duplicate gene symbols are made unique by the reader
            warnings.filterwarnings("ignore", message="Variable names are not unique")
            warnings.filterwarnings("ignore", message="Converting `region_key")
            sdata = visium(outs, dataset_id=sample, counts_file=MATRIX)
    except Exception as err:  # any failure of the reader means the folder is damaged
        raise input_error(outs, f"cannot read the Space Ranger folder ({type(err).__name__}: "
                          f"{err})", f"copy {MATRIX} and spatial/ from Space Ranger again") from err
    return sdata.tables["table"]


def _whole_numbers(values: pd.Series, column: str, where: Path) -> np.ndarray:
    """A column of the tissue positions as integers; spatialdata-io passes a "nan" or
    "1e999" cell through, which the cast to int would raise on as pandas' error."""
    numbers = pd.to_numeric(pd.Series(np.asarray(values, dtype=object)), errors="coerce")
    numbers = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(numbers) | (numbers != np.round(numbers))
    if bad.any():
        raise input_error(where.parent / "spatial", f"{int(bad.sum())} spots have a {column} "
                          f"that is not a whole number, e.g. {np.asarray(values)[bad][:3].tolist()}",
                          "use the tissue positions Space Ranger wrote for this image")
    return numbers.astype(np.int64)


def _ingested(table: ad.AnnData, *, where: Path, sample: str, patient: str, image: str | Path,
              mpp: float, source: str) -> IngestedSample:
    """The in-tissue spots (or bins) of a spatialdata-io table in the common ingest form."""
    unplaced = table.obs["in_tissue"].isna().to_numpy()
    if unplaced.any():
        raise input_error(where, f"{int(unplaced.sum())} barcodes have counts but no "
                          f"tissue position, e.g. {table.obs_names[unplaced][:5].tolist()}",
                          "use the spatial/ folder of the same Space Ranger run")
    in_tissue = _whole_numbers(table.obs["in_tissue"], "in_tissue", where) == 1
    if not in_tissue.all():
        log.info("%s: dropped %d spots outside the tissue", sample, int((~in_tissue).sum()))
    obs = table.obs[[c for c in OBS_COLUMNS if c in table.obs]].copy()
    obs["in_tissue"] = obs["in_tissue"].astype(bool)
    for column in ("array_row", "array_col"):
        if column in obs:
            obs[column] = _whole_numbers(obs[column], column, where).astype(np.int32)
    var = table.var[[c for c in VAR_COLUMNS if c in table.var]].copy()
    counts = ad.AnnData(X=table.X, obs=obs, var=var)[in_tissue].copy()
    spatial = np.asarray(table.obsm["spatial"], dtype=np.float64)[in_tissue]  # x = column
    if not np.isfinite(spatial).all():  # an empty or "nan" pxl_*_in_fullres cell
        bad = counts.obs_names[~np.isfinite(spatial).all(axis=1)][:5].tolist()
        raise input_error(where.parent / "spatial", f"{int((~np.isfinite(spatial)).any(1).sum())}"
                          f" in-tissue spots have no pixel position (NaN or inf), e.g. {bad}",
                          "use the tissue positions Space Ranger wrote for this image")
    return IngestedSample(sample=sample, patient=patient, counts=counts, spatial_px=spatial,
                          image_path=Path(image), mpp=mpp, source=source)


def check_hd(outs: Path, bin_um: int, um_per_px: float | None) -> float:
    """Refuse a Visium HD folder without the files of ``bin_um``; return its µm/px."""
    if bin_um not in hd_bin_sizes(outs):
        raise input_error(outs, f"no {hd_bin_folder(outs, bin_um).name} folder in binned_outputs "
                          f"(it has {hd_bin_sizes(outs)} µm)", "give bin_um one of those sizes")
    missing = [p.name for p in hd_bin_files(outs, bin_um) if not p.is_file()]
    if feature_slice(outs) is None:
        missing.append(FEATURE_SLICE)
    if missing:
        raise input_error(outs, f"Visium HD folder lacks {missing} for its {bin_um} µm bins",
                          "copy these files from the outs/ folder Space Ranger wrote")
    factors = hd_scale_factors(outs, bin_um)
    if factors is None:
        raise input_error(hd_bin_files(outs, bin_um)[2], "lacks a positive "
                          f"{' or '.join(HD_SCALE_KEYS)}", "use the scale factors Space "
                          "Ranger wrote for this run")
    if um_per_px is not None:
        log.info("%s: µm/px %.4f as given (the scale factors say %.4f)", outs, um_per_px,
                 factors["microns_per_pixel"])
        return float(um_per_px)
    return factors["microns_per_pixel"]


def read_hd_table(outs: Path, bin_um: int, sample: str) -> ad.AnnData:
    """The spatialdata-io table of one bin size: counts, obs (in_tissue, array_row/col),
    obsm spatial (x, y) in full-resolution pixels. No image is read: the H&E is the sheet's,
    and the downscaled PNGs stay lazy."""
    from spatialdata_io import visium_hd

    found = feature_slice(outs)
    # the reader names files by a dataset id: "" for feature_slice.h5, else the file's prefix
    dataset_id = (sample if found is None or found.name == FEATURE_SLICE
                  else found.name[: -len(FEATURE_SLICE) - 1])
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Variable names are not unique")
            warnings.filterwarnings("ignore", message="Converting `region_key")
            warnings.filterwarnings("ignore", message=r"(No full resolution image|File .* does "
                                    r"not exist|No image path found)")
            # the reader has no switch to skip the full-resolution image (a .btf would be read
            # whole): a path that does not exist makes it skip the image with a warning
            sdata = visium_hd(outs, dataset_id=dataset_id, bin_size=bin_um,
                              load_segmentations_only=False, load_all_images=False,
                              fullres_image_file=outs / "stflow-reads-the-sheet-image")
    except Exception as err:  # any failure of the reader means the folder is damaged
        raise input_error(outs, f"cannot read the Visium HD folder ({type(err).__name__}: "
                          f"{err})", f"copy feature_slice.h5 and {hd_bin_folder(outs, bin_um)} "
                          "from Space Ranger again") from err
    return sdata.tables[hd_bin_folder(outs, bin_um).name]


def read_hd(outs: str | Path, bin_um: int, *, sample: str, patient: str, image: str | Path,
            um_per_px: float | None = None, source: str = "sheet") -> IngestedSample:
    """One Visium HD section at one bin size, each in-tissue bin a spot; ``um_per_px``
    overrides the scale factors' ``microns_per_pixel``."""
    outs = Path(outs)
    mpp = check_hd(outs, bin_um, um_per_px)
    table = read_hd_table(outs, bin_um, sample)
    return _ingested(table, where=hd_bin_files(outs, bin_um)[0], sample=sample,
                     patient=patient, image=image, mpp=mpp, source=source)


def read_outs(outs: str | Path, *, sample: str, patient: str, image: str | Path,
              um_per_px: float | None = None, source: str = "sheet") -> IngestedSample:
    """One Visium section (in-tissue spots only); ``um_per_px`` overrides the 55 µm spot
    diameter (for slides whose spots are not Visium's)."""
    outs = Path(outs)
    mpp = check_outs(outs, um_per_px)
    table = read_table(outs, sample)
    return _ingested(table, where=outs / MATRIX, sample=sample, patient=patient, image=image,
                     mpp=mpp, source=source)

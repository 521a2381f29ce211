"""The visium source: Space Ranger ``outs/`` folders plus their full-resolution H&E images.

``raw_dir`` holds one folder per sample (``raw_dir/{sample}/``, either the ``outs/`` folder
itself or a folder containing ``outs/``) with ``filtered_feature_bc_matrix.h5``,
``spatial/tissue_positions.csv`` (Space Ranger >= 2, with header),
``tissue_positions_list.csv`` (older, no header) or ``tissue_positions.parquet``, and
``spatial/scalefactors_json.json``. The full-resolution image is not in ``outs/``: it is
found as ``raw_dir/{sample}/image.*`` (or ``config["images"][sample]``) or passed as ``image``.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from stflow.data.sources.common import IngestedSample
from stflow.errors import input_error

log = logging.getLogger(__name__)

SPOT_DIAMETER_UM = 55.0  # Visium spots are 55 µm wide
POSITION_COLUMNS = ["barcode", "in_tissue", "array_row", "array_col",
                    "pxl_row_in_fullres", "pxl_col_in_fullres"]
IMAGE_SUFFIXES = (".tif", ".tiff", ".svs", ".ndpi", ".jpg", ".jpeg", ".png", ".btf")


def outs_dir(raw_dir: str | Path, sample: str) -> Path:
    """The ``outs/`` folder of a sample (``raw_dir/sample/outs`` or ``raw_dir/sample``)."""
    base = Path(raw_dir) / sample
    for candidate in (base / "outs", base):
        if (candidate / "filtered_feature_bc_matrix.h5").is_file():
            return candidate
    raise input_error(base, "no filtered_feature_bc_matrix.h5 (in it or in outs/)",
                      "place the Space Ranger outs/ folder of this sample there")


def list_samples(raw_dir: str | Path, config: dict | None = None) -> list[str]:
    """Sample folders under ``raw_dir`` that hold a Space Ranger matrix."""
    raw_dir = Path(raw_dir)
    found = sorted(p.name for p in raw_dir.iterdir() if p.is_dir()
                   and any((d / "filtered_feature_bc_matrix.h5").is_file() for d in (p, p / "outs")))
    if not found:
        raise input_error(raw_dir, "no sample folders with filtered_feature_bc_matrix.h5",
                          "put each Space Ranger outs/ folder in raw_dir/{sample}/")
    wanted = (config or {}).get("samples")
    return [s for s in found if not wanted or s in wanted]


def read_positions(spatial_dir: Path) -> pd.DataFrame:
    """Tissue positions indexed by barcode, whichever of the three Space Ranger forms exists."""
    csv_new = spatial_dir / "tissue_positions.csv"
    csv_old = spatial_dir / "tissue_positions_list.csv"
    parquet = spatial_dir / "tissue_positions.parquet"
    try:
        if csv_new.is_file():
            path, frame = csv_new, pd.read_csv(csv_new)
        elif csv_old.is_file():
            path, frame = csv_old, pd.read_csv(csv_old, header=None, names=POSITION_COLUMNS)
        elif parquet.is_file():
            path, frame = parquet, pd.read_parquet(parquet)
        else:
            raise input_error(spatial_dir, "no tissue_positions.csv, tissue_positions_list.csv "
                              "or tissue_positions.parquet", "copy the whole outs/spatial folder")
    except ImportError as err:
        raise input_error(parquet, f"reading parquet needs pyarrow ({err})",
                          "`pip install pyarrow`, or convert it to tissue_positions.csv") from err
    except (ValueError, pd.errors.ParserError, OSError) as err:
        raise input_error(spatial_dir, f"tissue positions cannot be read ({err})",
                          "copy the outs/spatial folder again") from err
    missing = sorted(set(POSITION_COLUMNS) - set(frame.columns))
    if missing:
        raise input_error(path, f"lacks columns {missing}", "use the Space Ranger tissue positions")
    return frame.set_index("barcode")


def read_scalefactors(spatial_dir: Path) -> dict:
    """``scalefactors_json.json`` with a usable ``spot_diameter_fullres``."""
    path = spatial_dir / "scalefactors_json.json"
    try:
        factors = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise input_error(path, f"cannot read scale factors ({err})",
                          "copy outs/spatial/scalefactors_json.json again") from err
    diameter = factors.get("spot_diameter_fullres")
    if not isinstance(diameter, int | float) or not diameter > 0:
        raise input_error(path, f"spot_diameter_fullres is {diameter!r}, so µm/px is unknown",
                          "use the scale factors Space Ranger wrote for this image")
    return factors


def find_image(raw_dir: Path, sample: str, config: dict | None) -> Path:
    """The full-resolution H&E of a sample: from config, or ``raw_dir/{sample}/image.*``."""
    images = (config or {}).get("images") or {}
    if sample in images:
        return Path(images[sample])
    for suffix in IMAGE_SUFFIXES:
        candidate = raw_dir / sample / f"image{suffix}"
        if candidate.is_file():
            return candidate
    raise input_error(raw_dir / sample, "no full-resolution image (image.tif, image.jpg, ...)",
                      "pass --image PATH, or put the image used by Space Ranger there as image.*")


def read_sample(raw_dir: str | Path, sample: str, image: str | Path | None = None,
                config: dict | None = None) -> IngestedSample:
    """One Visium section in the common ingest form (in-tissue spots only)."""
    import scanpy as sc

    raw_dir = Path(raw_dir)
    outs = outs_dir(raw_dir, sample)
    matrix = outs / "filtered_feature_bc_matrix.h5"
    try:
        with warnings.catch_warnings():  # duplicate gene symbols are made unique just below
            warnings.filterwarnings("ignore", message="Variable names are not unique")
            counts = sc.read_10x_h5(matrix)
    except Exception as err:
        raise input_error(matrix, f"cannot read the 10x matrix ({type(err).__name__}: {err})",
                          "copy filtered_feature_bc_matrix.h5 from Space Ranger again") from err
    counts.var_names_make_unique(join="-")
    positions = read_positions(outs / "spatial")
    factors = read_scalefactors(outs / "spatial")
    missing = counts.obs_names.difference(positions.index)
    if len(missing):
        raise input_error(matrix, f"{len(missing)} barcodes have counts but no tissue position, "
                          f"e.g. {missing[:5].tolist()}", "use the spatial/ folder of the same run")
    positions = positions.loc[counts.obs_names]
    in_tissue = positions["in_tissue"].astype(int).to_numpy() == 1
    dropped = int((~in_tissue).sum())
    if dropped:
        log.info("%s: dropped %d spots outside the tissue", sample, dropped)
    counts = counts[in_tissue].copy()
    positions = positions[in_tissue]
    counts.obs["in_tissue"] = True
    spatial = positions[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(dtype=np.float64)
    image_path = Path(image) if image is not None else find_image(raw_dir, sample, config)
    return IngestedSample(sample=sample, patient=str((config or {}).get("patients", {}).get(
        sample, sample)), counts=counts, spatial_px=spatial, image_path=image_path,
        mpp=SPOT_DIAMETER_UM / float(factors["spot_diameter_fullres"]), source="visium")

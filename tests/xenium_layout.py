"""A small Xenium output folder and its aligned H&E, as Xenium Onboard Analysis (2.x) and
Xenium Explorer write them and ``spatialdata_io.xenium`` reads them.

The folder holds ``experiment.xenium`` (``pixel_size`` 0.2125 µm, the analysis version),
``cells.zarr.zip`` (zarr v2 in a zip: ``cell_id`` as (prefix, suffix) uint32 pairs,
``cell_summary``, ``polygon_sets/{0,1}/cell_index``, ``masks/{0,1}``), ``cells.parquet``
(centroids in µm), ``cell_feature_matrix.h5`` (10x HDF5 with the control features 10x adds),
``transcripts.parquet`` (µm positions, ``feature_name``, ``qv``; several row groups) and
``morphology_focus/morphology_focus_0000.ome.tif``. Beside it lie the H&E (``he.tif``) and
``he_imagealignment.csv``, the 3 x 3 affine from H&E pixels to Xenium pixels that Xenium
Explorer exports; the H&E is drawn through that affine, so its tissue lies under the
transcripts. Every number is known to the tests: the transcripts drawn, the affine, µm/px.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import tifffile
import zarr
from spaceranger_layout import write_10x_h5

PIXEL_SIZE = 0.2125  # µm per Xenium (morphology) pixel, as XOA writes it
HE_UM_PER_PX = 0.5
GENES = [f"GENE{i:02d}" for i in range(16)]
CONTROLS = ["NegControlProbe_00001", "NegControlCodeword_0500", "BLANK_0001",
            "UnassignedCodeword_0001"]
CONTROL_TYPES = ["Negative Control Probe", "Negative Control Codeword", "Blank Codeword",
                 "Unassigned Codeword"]


@dataclass(frozen=True)
class XeniumSection:
    """A built section: the folder, the H&E, the alignment and what was drawn."""

    folder: Path
    image: Path
    alignment: Path
    affine: np.ndarray  # H&E px -> Xenium px (3 x 3)
    transcripts: pd.DataFrame  # feature_name, x_location, y_location (µm), qv
    cells: pd.DataFrame  # cell_id, x_centroid, y_centroid (µm)
    cell_counts: np.ndarray  # cells x GENES


def he_affine(angle_deg: float = 3.0,
              offset_px: tuple[float, float] = (-200.0, -400.0)) -> np.ndarray:
    """H&E px -> Xenium px: a rotation, the scale of 0.5 µm/px over 0.2125 µm/px, a shift."""
    scale = HE_UM_PER_PX / PIXEL_SIZE
    angle = np.deg2rad(angle_deg)
    affine = np.eye(3)
    affine[:2, :2] = scale * np.array([[np.cos(angle), -np.sin(angle)],
                                       [np.sin(angle), np.cos(angle)]])
    affine[:2, 2] = offset_px
    return affine


def he_pixels_of(um: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Xenium µm positions (N, 2) in H&E pixels (x = column): the affine's inverse."""
    xenium_px = np.c_[um / PIXEL_SIZE, np.ones(len(um))]
    return (xenium_px @ np.linalg.inv(affine).T)[:, :2]


def in_tissue(um: np.ndarray, field_um: tuple[float, float]) -> np.ndarray:
    """The tissue: an ellipse filling most of the Xenium field."""
    width, height = field_um
    return (((um[:, 0] - width / 2) / (0.42 * width)) ** 2
            + ((um[:, 1] - height / 2) / (0.42 * height)) ** 2) < 1


def write_alignment(path: Path, affine: np.ndarray) -> Path:
    """The affine as Xenium Explorer exports it: three comma-separated rows, no header."""
    path.write_text("".join(",".join(repr(float(v)) for v in row) + "\n" for row in affine))
    return path


def write_he(path: Path, affine: np.ndarray, field_um: tuple[float, float], seed: int) -> None:
    """An RGB TIFF whose pixels are tissue-pink where the affine puts them in the tissue."""
    width, height = field_um
    corners = he_pixels_of(np.array([[0, 0], [width, 0], [0, height], [width, height]]), affine)
    size_x, size_y = (np.ceil(corners.max(axis=0)) + 40).astype(int)
    yy, xx = np.mgrid[0:size_y, 0:size_x]
    xenium_px = np.c_[xx.ravel(), yy.ravel(), np.ones(xx.size)] @ affine.T
    inside = in_tissue(xenium_px[:, :2] * PIXEL_SIZE, field_um).reshape(size_y, size_x)
    rng = np.random.default_rng(seed)
    texture = (30 + 29 * np.sin(xx / 17 + rng.uniform(0, 6.28)) * np.cos(yy / 13)).astype(np.uint8)
    image = np.full((size_y, size_x, 3), 245, dtype=np.uint8)
    image[inside, 0] = 200 - texture[inside] // 2
    image[inside, 1] = 90 + texture[inside]
    image[inside, 2] = 170
    tifffile.imwrite(path, image, photometric="rgb", tile=(128, 128), compression="zlib")


def write_cells_zarr(path: Path, n_cells: int, centroids: np.ndarray) -> None:
    """cells.zarr.zip as XOA 2.x writes it (zarr v2 inside a zip)."""
    store = zarr.storage.ZipStore(path, mode="w")
    root = zarr.open_group(store, mode="w", zarr_format=2)
    root.create_array("cell_id", data=np.c_[np.arange(1, n_cells + 1), np.ones(n_cells)]
                      .astype(np.uint32))
    summary = np.c_[centroids, np.full((n_cells, 2), 50.0), centroids, np.zeros(n_cells),
                    np.ones(n_cells)]
    root.create_array("cell_summary", data=summary.astype(np.float64), attributes={
        "column_names": ["cell_centroid_x", "cell_centroid_y", "cell_area", "nucleus_area",
                         "nucleus_centroid_x", "nucleus_centroid_y", "z_level", "nucleus_count"]})
    for mask in (0, 1):
        root.create_array(f"polygon_sets/{mask}/cell_index",
                          data=np.arange(n_cells, dtype=np.uint32))
        root.create_array(f"masks/{mask}", data=np.zeros((8, 8), dtype=np.uint32))
    store.close()


def cell_ids(n_cells: int) -> list[str]:
    """The cell ids the zarr's (prefix, suffix) pairs spell (``aaaaaaab-1``, ...)."""
    from spatialdata_io.readers.xenium import cell_id_str_from_prefix_suffix_uint32

    return list(cell_id_str_from_prefix_suffix_uint32(np.arange(1, n_cells + 1),
                                                      np.ones(n_cells, dtype=int)))


def draw_transcripts(rng: np.random.Generator, n: int, field_um: tuple[float, float],
                     cells: np.ndarray) -> pd.DataFrame:
    """``n`` transcripts in the tissue: 90 % near a cell, the rest anywhere in the tissue;
    one in twenty a control feature, one in ten below the 10x quality threshold (qv < 20)."""
    width, height = field_um
    near = rng.random(n) < 0.9
    um = np.where(near[:, None], cells[rng.integers(0, len(cells), n)] + rng.normal(0, 4, (n, 2)),
                  rng.uniform([0, 0], [width, height], (n, 2)))
    keep = in_tissue(um, field_um) & (um >= 0).all(1) & (um < [width, height]).all(1)
    um = um[keep]
    weights = np.linspace(1.0, 3.0, len(GENES))
    names = np.array(GENES, dtype=object)[rng.choice(len(GENES), len(um), p=weights / weights.sum())]
    control = rng.random(len(um)) < 0.05
    names[control] = np.array(CONTROLS)[rng.integers(0, len(CONTROLS), int(control.sum()))]
    qv = np.where(rng.random(len(um)) < 0.1, rng.uniform(5, 19.9, len(um)),
                  rng.uniform(20, 40, len(um)))
    return pd.DataFrame({"feature_name": names, "x_location": um[:, 0], "y_location": um[:, 1],
                         "qv": qv})


def write_transcripts(path: Path, transcripts: pd.DataFrame, row_group: int) -> None:
    """transcripts.parquet as XOA writes it (feature_name as bytes, several row groups)."""
    n = len(transcripts)
    table = pa.table({
        "transcript_id": pa.array(np.arange(n, dtype=np.uint64) + 281474976710656),
        "cell_id": pa.array(["UNASSIGNED"] * n),
        "overlaps_nucleus": pa.array(np.zeros(n, dtype=np.uint8)),
        "feature_name": pa.array([s.encode() for s in transcripts["feature_name"]], pa.binary()),
        "x_location": pa.array(transcripts["x_location"].to_numpy(np.float32)),
        "y_location": pa.array(transcripts["y_location"].to_numpy(np.float32)),
        "z_location": pa.array(np.full(n, 12.5, dtype=np.float32)),
        "qv": pa.array(transcripts["qv"].to_numpy(np.float32)),
        "fov_name": pa.array(["A1"] * n),
        "nucleus_distance": pa.array(np.zeros(n, dtype=np.float32)),
    })
    pq.write_table(table, path, row_group_size=row_group)


def make_xenium(root: Path, *, field_um: tuple[float, float] = (600.0, 450.0),
                n_cells: int = 300, n_transcripts: int = 20_000, seed: int = 0,
                affine: np.ndarray | None = None, row_group: int = 4_000) -> XeniumSection:
    """``root/xenium`` (the output folder), ``root/he.tif`` and ``root/he_imagealignment.csv``."""
    rng = np.random.default_rng(seed)
    folder = root / "xenium"
    (folder / "morphology_focus").mkdir(parents=True)
    affine = he_affine() if affine is None else affine
    width, height = field_um
    centroids = rng.uniform([0.1 * width, 0.1 * height], [0.9 * width, 0.9 * height], (4 * n_cells, 2))
    centroids = centroids[in_tissue(centroids, field_um)][:n_cells]
    n_cells = len(centroids)
    (folder / "experiment.xenium").write_text(json.dumps({
        "major_version": 5, "minor_version": 0, "run_name": f"stflow test {seed}",
        "region_name": "region", "analysis_sw_version": "xenium-2.0.0.10",
        "pixel_size": PIXEL_SIZE, "panel_name": "stflow test panel",
        "panel_num_targets_predesigned": len(GENES), "num_cells": n_cells}))
    write_cells_zarr(folder / "cells.zarr.zip", n_cells, centroids)
    ids = cell_ids(n_cells)
    cells = pd.DataFrame({"cell_id": ids, "x_centroid": centroids[:, 0],
                          "y_centroid": centroids[:, 1],
                          "transcript_counts": np.zeros(n_cells, dtype=np.int32),
                          "control_probe_counts": np.zeros(n_cells, dtype=np.int32),
                          "cell_area": np.full(n_cells, 50.0), "nucleus_area": np.full(n_cells, 20.0)})
    cells.to_parquet(folder / "cells.parquet", index=False)
    cell_counts = rng.poisson(np.linspace(0.5, 3.0, len(GENES)), (n_cells, len(GENES)))
    controls = rng.poisson(0.2, (n_cells, len(CONTROLS)))
    write_10x_h5(folder / "cell_feature_matrix.h5", np.c_[cell_counts, controls], ids,
                 GENES + CONTROLS, feature_types=["Gene Expression"] * len(GENES) + CONTROL_TYPES)
    transcripts = draw_transcripts(rng, n_transcripts, field_um, centroids)
    write_transcripts(folder / "transcripts.parquet", transcripts, row_group)
    morphology = np.zeros((int(height / PIXEL_SIZE) // 8, int(width / PIXEL_SIZE) // 8), np.uint16)
    tifffile.imwrite(folder / "morphology_focus" / "morphology_focus_0000.ome.tif", morphology)
    image = root / "he.tif"
    write_he(image, affine, field_um, seed)
    return XeniumSection(folder=folder, image=image,
                         alignment=write_alignment(root / "he_imagealignment.csv", affine),
                         affine=affine, transcripts=transcripts, cells=cells,
                         cell_counts=cell_counts)

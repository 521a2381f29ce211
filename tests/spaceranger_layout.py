"""Space Ranger ``outs/`` folders built from real her2st sections, as Space Ranger writes them.

Each folder holds ``filtered_feature_bc_matrix.h5`` (10x HDF5 v3: ``matrix/`` barcodes, data,
indices, indptr, shape, ``features/`` id, name, feature_type, genome, _all_tag_keys),
``spatial/tissue_positions.csv``, ``spatial/scalefactors_json.json`` and the downscaled
``spatial/tissue_hires_image.png`` / ``tissue_lowres_image.png``; the full-resolution H&E
stays where the mirror keeps it and is given in the sheet's ``image`` column, as for real
Space Ranger data.

What is honest about legacy ST: its spots are 100 µm wide on a 200 µm grid, not Visium's
55 µm, so ``spot_diameter_fullres`` is written as the true 100 µm in pixels, and the sheet
gives ``um_per_px`` (from the her2st source's own grid fit); the reader's Visium rule
(55 µm / diameter) would be wrong for these slides, and the sheet overrides it. Barcodes are
her2st's spot ids ("XxY") and gene ids its gene symbols (her2st publishes no Ensembl ids).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp
from PIL import Image

from stflow.data.sources import her2st

LEGACY_ST_SPOT_UM = 100.0
HIRES_PX, LOWRES_PX = 2000, 600  # Space Ranger's longest sides of the two downscaled images


@dataclass(frozen=True)
class Section:
    """A built folder and what the sheet says about it."""

    sample: str
    patient: str
    outs: Path
    image: Path
    um_per_px: float


def write_10x_h5(path: Path, counts: sp.spmatrix | np.ndarray, barcodes: list[str],
                 names: list[str], ids: list[str] | None = None,
                 library_id: str = "sample", feature_types: list[str] | None = None) -> None:
    """A filtered_feature_bc_matrix.h5 in the 10x v3 layout (genes x barcodes, CSC);
    ``feature_types`` default to "Gene Expression" (Xenium adds its control features)."""
    matrix = sp.csc_matrix(sp.csr_matrix(counts).T)
    ids = ids if ids is not None else [f"ENSG{i:05d}" for i in range(len(names))]
    with h5py.File(path, "w") as f:
        f.attrs["filetype"] = "matrix"
        f.attrs["library_ids"] = np.array([library_id], dtype="S")
        f.attrs["version"] = 2
        group = f.create_group("matrix")
        group["barcodes"] = np.array(barcodes, dtype="S")
        group["data"] = matrix.data.astype(np.int32)
        group["indices"] = matrix.indices.astype(np.int64)
        group["indptr"] = matrix.indptr.astype(np.int64)
        group["shape"] = np.array(matrix.shape, dtype=np.int32)
        features = group.create_group("features")
        features["id"] = np.array(ids, dtype="S")
        features["name"] = np.array(names, dtype="S")
        features["feature_type"] = np.array(feature_types or ["Gene Expression"] * len(names),
                                            dtype="S")
        features["genome"] = np.array(["GRCh38"] * len(names), dtype="S")
        features["_all_tag_keys"] = np.array(["genome"], dtype="S")


def write_downscaled(image: Path, out: Path, longest: int) -> float:
    """A PNG of ``image`` whose longest side is ``longest``; returns the scale factor."""
    Image.MAX_IMAGE_PIXELS = None
    with Image.open(image) as full:
        scale = longest / max(full.size)
        size = (round(full.width * scale), round(full.height * scale))
        full.draft("RGB", size)  # JPEG: decode at a fraction of the size
        full.convert("RGB").resize(size, Image.Resampling.BILINEAR).save(out)
    return scale


def build_section(mirror: Path, sample: str, root: Path) -> Section:
    """``root/{sample}/outs`` from the her2st section ``sample`` of ``mirror``."""
    counts = her2st.read_counts(mirror / her2st.COUNTS_DIR / f"{sample}.tsv.gz")
    spots_path = mirror / her2st.SPOTS_DIR / f"{sample}_selection.tsv"
    spots = her2st.read_spots(spots_path)
    image, patient = her2st.find_image(mirror, sample)
    mpp = her2st.grid_mpp(spots.loc[counts.obs_names], spots_path)  # as her2st.read_sample
    outs = root / sample / "outs"
    spatial = outs / "spatial"
    spatial.mkdir(parents=True)
    barcodes = list(counts.obs_names)
    genes = list(counts.var_names)
    write_10x_h5(outs / "filtered_feature_bc_matrix.h5", counts.X, barcodes, genes,
                 ids=genes, library_id=sample)
    # every spot of the spot file; those without counts lie outside the tissue, as Space
    # Ranger lists them
    lines = ["barcode,in_tissue,array_row,array_col,pxl_row_in_fullres,pxl_col_in_fullres"]
    with_counts = set(barcodes)
    for barcode, spot in spots.iterrows():
        lines.append(f"{barcode},{int(barcode in with_counts)},{spot['y']},{spot['x']},"
                     f"{float(spot['pixel_y'])!r},{float(spot['pixel_x'])!r}")
    (spatial / "tissue_positions.csv").write_text("\n".join(lines) + "\n")
    hires = write_downscaled(image, spatial / "tissue_hires_image.png", HIRES_PX)
    lowres = write_downscaled(image, spatial / "tissue_lowres_image.png", LOWRES_PX)
    diameter = LEGACY_ST_SPOT_UM / mpp
    (spatial / "scalefactors_json.json").write_text(json.dumps({
        "spot_diameter_fullres": diameter, "tissue_hires_scalef": hires,
        "fiducial_diameter_fullres": diameter * 1.5, "tissue_lowres_scalef": lowres}))
    return Section(sample=sample, patient=patient, outs=outs, image=image, um_per_px=mpp)


def write_sheet(path: Path, sections: list[Section], um_per_px: bool = True) -> Path:
    """The sample sheet of ``sections`` (Space Ranger folders relative to the sheet)."""
    header = ["sample", "patient", "spaceranger", "image"] + (["um_per_px"] if um_per_px else [])
    lines = ["\t".join(header)]
    for s in sections:
        cells = [s.sample, s.patient, str(s.outs.relative_to(path.parent)), str(s.image)]
        lines.append("\t".join(cells + ([repr(s.um_per_px)] if um_per_px else [])))
    path.write_text("\n".join(lines) + "\n")
    return path

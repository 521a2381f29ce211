"""The visium source on a tiny Space Ranger outs/ folder written by the test: read by
spatialdata-io, in-tissue spots, µm/px from the spot diameter, gene ids and array positions
kept, and a clear refusal for each missing piece."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from PIL import Image
from spaceranger_layout import write_10x_h5

from stflow.data.sources import get_source, visium, write_st
from stflow.errors import StflowError

BARCODES = ["AAAC-1", "AAAG-1", "AAAT-1", "AACA-1"]
GENES = ["GENE1", "GENE2", "GENE2", "GENE3"]  # a duplicated symbol, as 10x features can have
IN_TISSUE = [1, 1, 0, 1]
ROWS = [10.0, 20.0, 30.0, 40.0]  # pxl_row_in_fullres (y)
COLS = [50.0, 60.0, 70.0, 80.0]  # pxl_col_in_fullres (x)
DIAMETER_PX = 110.0
COUNTS = np.array([[1, 0, 2, 0], [0, 3, 0, 1], [5, 5, 5, 5], [0, 0, 7, 1]], dtype=np.int32)


def make_outs(root: Path, positions: str = "csv") -> Path:
    """raw/{sample}/outs with matrix, positions (csv | list), scale factors, image."""
    outs = root / "S1" / "outs"
    spatial = outs / "spatial"
    spatial.mkdir(parents=True)
    write_10x_h5(outs / "filtered_feature_bc_matrix.h5", COUNTS, BARCODES, GENES)
    rows = [[b, t, i, 2 * i, r, c] for i, (b, t, r, c) in enumerate(
        zip(BARCODES, IN_TISSUE, ROWS, COLS, strict=True))]
    rows.append(["TTTT-1", 0, 9, 9, 5.0, 5.0])  # a position without counts (filtered out)
    header = "barcode,in_tissue,array_row,array_col,pxl_row_in_fullres,pxl_col_in_fullres"
    body = "\n".join(",".join(str(v) for v in row) for row in rows) + "\n"
    if positions == "csv":
        (spatial / "tissue_positions.csv").write_text(header + "\n" + body)
    else:
        (spatial / "tissue_positions_list.csv").write_text(body)
    (spatial / "scalefactors_json.json").write_text(json.dumps(
        {"spot_diameter_fullres": DIAMETER_PX, "tissue_hires_scalef": 0.1,
         "fiducial_diameter_fullres": 160.0, "tissue_lowres_scalef": 0.03}))
    Image.new("RGB", (100, 64), (230, 200, 220)).save(root / "S1" / "image.png")
    return outs


@pytest.mark.parametrize("positions", ["csv", "list"])
def test_in_tissue_spots_with_fullres_pixels_and_mpp_from_the_spot_diameter(
        tmp_path: Path, positions: str) -> None:
    make_outs(tmp_path, positions)
    source = get_source("visium")
    assert source.list_samples(tmp_path) == ["S1"]
    sample = source.read_sample(tmp_path, "S1")
    assert list(sample.counts.obs_names) == ["AAAC-1", "AAAG-1", "AACA-1"]
    np.testing.assert_allclose(sample.spatial_px, [[50, 10], [60, 20], [80, 40]])  # x = col
    assert sample.mpp == pytest.approx(55.0 / DIAMETER_PX)
    assert sample.image_path == tmp_path / "S1" / "image.png"
    assert sample.patient == "S1"


def test_written_h5ad_follows_the_ingest_contract(tmp_path: Path) -> None:
    make_outs(tmp_path)
    out = write_st(visium.read_sample(tmp_path, "S1"), tmp_path / "st" / "S1.h5ad")
    adata = ad.read_h5ad(out)
    assert sp.isspmatrix_csr(adata.X) and adata.X.dtype == np.int32
    np.testing.assert_array_equal(adata.X.toarray(), COUNTS[[0, 1, 3]])
    assert list(adata.var_names) == ["GENE1", "GENE2", "GENE2-1", "GENE3"]
    assert list(adata.var["gene_ids"]) == [f"ENSG{i:05d}" for i in range(4)]
    assert set(adata.var["feature_types"]) == {"Gene Expression"}
    assert adata.obs["in_tissue"].dtype == bool and adata.obs["in_tissue"].all()
    assert list(adata.obs["array_row"]) == [0, 1, 3] and list(adata.obs["array_col"]) == [0, 2, 6]
    np.testing.assert_allclose(adata.obsm["spatial_um"], adata.obsm["spatial"] * 0.5)
    assert adata.uns["source"] == "visium" and adata.uns["mpp"] == pytest.approx(0.5)
    assert Path(adata.uns["image_path"]).is_absolute()


def test_image_and_patient_can_be_given(tmp_path: Path) -> None:
    make_outs(tmp_path)
    image = tmp_path / "elsewhere.jpg"
    Image.new("RGB", (200, 200)).save(image)
    sample = visium.read_sample(tmp_path, "S1", image=image, config={"patients": {"S1": "P7"}})
    assert sample.image_path == image and sample.patient == "P7"


def test_barcodes_without_positions_are_refused(tmp_path: Path) -> None:
    outs = make_outs(tmp_path)
    path = outs / "spatial" / "tissue_positions.csv"
    path.write_text("\n".join(line for line in path.read_text().splitlines()
                              if not line.startswith("AAAG-1")) + "\n")
    with pytest.raises(StflowError, match="1 barcodes have counts but no tissue position.*AAAG-1"):
        visium.read_sample(tmp_path, "S1")


def test_missing_image_is_refused(tmp_path: Path) -> None:
    make_outs(tmp_path)
    (tmp_path / "S1" / "image.png").unlink()
    with pytest.raises(StflowError, match="no full-resolution image.*--image"):
        visium.read_sample(tmp_path, "S1")


def test_spots_outside_the_image_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    make_outs(tmp_path)
    Image.new("RGB", (60, 30)).save(tmp_path / "S1" / "image.png")  # too small for (80, 40)
    with pytest.raises(StflowError, match="spot centres lie outside the image"):
        write_st(visium.read_sample(tmp_path, "S1"), tmp_path / "st" / "S1.h5ad")
    assert not (tmp_path / "st").exists() or not any((tmp_path / "st").iterdir())


def test_unreadable_image_is_refused(tmp_path: Path) -> None:
    make_outs(tmp_path)
    (tmp_path / "S1" / "image.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(StflowError, match="H&E image cannot be read"):
        write_st(visium.read_sample(tmp_path, "S1"), tmp_path / "st" / "S1.h5ad")


def test_unknown_spot_diameter_is_refused(tmp_path: Path) -> None:
    outs = make_outs(tmp_path)
    (outs / "spatial" / "scalefactors_json.json").write_text(json.dumps({"tissue_hires_scalef": 1}))
    with pytest.raises(StflowError, match="spot_diameter_fullres is missing or not positive, "
                       "so µm/px is unknown"):
        visium.read_sample(tmp_path, "S1")


@pytest.mark.parametrize("lost", ["tissue_positions.csv", "scalefactors_json.json"])
def test_a_folder_without_positions_or_scale_factors_is_refused_naming_the_file(
        tmp_path: Path, lost: str) -> None:
    outs = make_outs(tmp_path)
    (outs / "spatial" / lost).unlink()
    with pytest.raises(StflowError, match=f"spatial: no .*{lost.split('_')[0]}.*Fix: copy the "
                       "whole outs/spatial"):
        visium.read_sample(tmp_path, "S1")


def test_corrupt_matrix_is_refused(tmp_path: Path) -> None:
    outs = make_outs(tmp_path)
    (outs / "filtered_feature_bc_matrix.h5").write_bytes(b"not hdf5")
    with pytest.raises(StflowError, match="cannot read the Space Ranger folder"):
        visium.read_sample(tmp_path, "S1")

"""The her2st source on the real mirror: published spot counts, µm/px, checksums, st/ format."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from stflow.data.sources import get_source, her2st, write_samples_tsv, write_st
from stflow.data.sources.fetch import MANIFEST, read_checksums
from stflow.errors import StflowError

# Spots per section once positions without counts are dropped (rows of the count tables).
PUBLISHED_SPOTS = {"B4": 283, "C2": 187, "C3": 180, "C4": 184, "C5": 181, "C6": 178}


@pytest.fixture(scope="module")
def ingested(her2st_mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Download all six sections from the mirror and ingest each once for the module."""
    root = tmp_path_factory.mktemp("her2st")
    raw = root / "raw"
    her2st.download(raw, mirror=her2st_mirror)
    source = get_source("her2st")
    paths = {s: write_st(source.read_sample(raw, s), root / "st" / f"{s}.h5ad")
             for s in source.list_samples(raw)}
    return {"raw": raw, "root": root, "paths": paths,
            "adata": {s: ad.read_h5ad(p) for s, p in paths.items()}}


def test_committed_checksums_equal_the_mirrors_list(her2st_mirror: Path) -> None:
    assert her2st.published_checksums() == read_checksums(her2st_mirror / "SHA256SUMS")


def test_download_url_pins_the_full_commit_85df741() -> None:
    assert len(her2st.COMMIT) == 40 and her2st.COMMIT.startswith("85df741")
    url = her2st.RAW_URL.format(path="data/ST-cnts/B4.tsv.gz")
    assert url == ("https://raw.githubusercontent.com/almaan/her2st/"
                   f"{her2st.COMMIT}/data/ST-cnts/B4.tsv.gz")


def test_six_sections_with_the_published_spot_counts_and_about_15k_genes(ingested: dict) -> None:
    counts = {s: a.n_obs for s, a in ingested["adata"].items()}
    assert counts == PUBLISHED_SPOTS
    for adata in ingested["adata"].values():
        assert 15_000 <= adata.n_vars <= 16_000


def test_patients_come_from_the_image_folders(ingested: dict) -> None:
    patients = {s: a.uns["patient"] for s, a in ingested["adata"].items()}
    assert patients == {"B4": "B", "C2": "C", "C3": "C", "C4": "C", "C5": "C", "C6": "C"}


def test_microns_per_pixel_is_plausible_and_consistent_across_sections(ingested: dict) -> None:
    mpp = np.array([a.uns["mpp"] for a in ingested["adata"].values()])
    assert np.all((mpp > 0.5) & (mpp < 1.0))
    assert mpp.max() / mpp.min() < 1.01
    # neighbouring spots sit about one 200 µm grid step apart in microns (the printed array
    # is not perfectly regular: measured nearest-neighbour distances are ~190 µm)
    coords = ingested["adata"]["B4"].obsm["spatial_um"]
    d = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert np.median(d.min(axis=1)) == pytest.approx(200.0, rel=0.1)


def test_h5ad_follows_the_ingest_contract(ingested: dict) -> None:
    adata = ingested["adata"]["B4"]
    assert sp.isspmatrix_csr(adata.X) and adata.X.dtype == np.int32
    assert adata.var_names.is_unique and adata.obs_names.is_unique
    assert all(isinstance(b, str) for b in adata.obs_names)
    assert adata.obsm["spatial"].shape == (adata.n_obs, 2)
    assert adata.obsm["spatial"].dtype == np.float64
    np.testing.assert_allclose(adata.obsm["spatial_um"], adata.obsm["spatial"] * adata.uns["mpp"])
    assert adata.uns["sample"] == "B4" and adata.uns["source"] == "her2st"
    image = Path(adata.uns["image_path"])
    assert image.is_absolute() and image.is_file() and image.name == "BT10737_D2_HE.jpg"


def test_counts_and_positions_are_the_published_values(ingested: dict) -> None:
    raw = ingested["raw"]
    table = pd.read_csv(raw / "data/ST-cnts/C3.tsv.gz", sep="\t", index_col=0)
    spots = pd.read_csv(raw / "data/ST-spotfiles/C3_selection.tsv", sep="\t")
    adata = ingested["adata"]["C3"]
    barcode = adata.obs_names[5]
    np.testing.assert_array_equal(adata[barcode].X.toarray().ravel(), table.loc[barcode].to_numpy())
    x, y = (int(v) for v in barcode.split("x"))
    row = spots[(spots.x == x) & (spots.y == y)].iloc[0]
    np.testing.assert_allclose(adata[barcode].obsm["spatial"][0], [row.pixel_x, row.pixel_y])


def test_samples_tsv_lists_every_section(ingested: dict) -> None:
    out = write_samples_tsv(list(ingested["paths"].values()), ingested["root"] / "samples.tsv")
    table = pd.read_csv(out, sep="\t")
    assert list(table.columns) == ["sample", "patient", "image_path", "mpp", "n_spots"]
    assert dict(zip(table["sample"], table["n_spots"], strict=True)) == PUBLISHED_SPOTS


def copy_section(mirror: Path, dest: Path, sample: str = "B4") -> Path:
    """A writable copy of one section's files in the her2st layout."""
    for rel in her2st.files_of_samples(her2st.published_checksums(), [sample]):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mirror / rel, dest / rel)
    return dest


def test_corrupted_mirror_is_refused_by_checksum(her2st_mirror: Path, tmp_path: Path) -> None:
    mirror = copy_section(her2st_mirror, tmp_path / "mirror")
    target = mirror / "data/ST-cnts/B4.tsv.gz"
    target.write_bytes(gzip.compress(gzip.decompress(target.read_bytes()).replace(b"\t3\t", b"\t4\t", 1)))
    expected = her2st.published_checksums()["data/ST-cnts/B4.tsv.gz"]
    with pytest.raises(StflowError, match=f"B4.tsv.gz.*expected {expected}, got [0-9a-f]{{64}}.*Fix"):
        her2st.download(tmp_path / "raw", mirror=mirror, samples=["B4"])
    assert not (tmp_path / "raw" / "data/ST-cnts/B4.tsv.gz").exists()
    assert not (tmp_path / "raw" / MANIFEST).exists()


def test_unknown_sample_is_refused() -> None:
    with pytest.raises(StflowError, match="unknown sections.*Z9"):
        her2st.files_of_samples(her2st.published_checksums(), ["Z9"])


def test_counts_without_positions_are_refused(her2st_mirror: Path, tmp_path: Path) -> None:
    raw = copy_section(her2st_mirror, tmp_path)
    spot_file = raw / "data/ST-spotfiles/B4_selection.tsv"
    lines = spot_file.read_text().splitlines()
    spot_file.write_text("\n".join(lines[:1] + lines[2:]) + "\n")  # drop the first spot
    with pytest.raises(StflowError, match="have counts but no position"):
        her2st.read_sample(raw, "B4")


def test_spots_outside_the_image_are_refused(her2st_mirror: Path, tmp_path: Path) -> None:
    raw = copy_section(her2st_mirror, tmp_path)
    spot_file = raw / "data/ST-spotfiles/B4_selection.tsv"
    frame = pd.read_csv(spot_file, sep="\t")
    frame["pixel_x"] += 9_000  # a translation: same grid pitch, most spots off the image
    frame.to_csv(spot_file, sep="\t", index=False)
    sample = her2st.read_sample(raw, "B4")
    with pytest.raises(StflowError, match="outside the image"):
        write_st(sample, tmp_path / "st" / "B4.h5ad")
    assert not (tmp_path / "st" / "B4.h5ad").exists()


def test_missing_image_is_refused(her2st_mirror: Path, tmp_path: Path) -> None:
    raw = copy_section(her2st_mirror, tmp_path)
    shutil.rmtree(raw / "data/ST-imgs")
    with pytest.raises(StflowError, match="expected one H&E image, found 0"):
        her2st.read_sample(raw, "B4")


def test_microns_per_pixel_needs_two_grid_positions_per_axis() -> None:
    one_row = pd.DataFrame({"x": [1, 2, 3], "y": [5, 5, 5], "pixel_x": [10.0, 300.0, 590.0],
                            "pixel_y": [40.0, 40.0, 40.0]})
    with pytest.raises(StflowError, match="fewer than 2 distinct grid positions along y"):
        her2st.grid_mpp(one_row, "spots.tsv")
    grid = pd.DataFrame({"x": [0, 1, 0, 1], "y": [0, 0, 1, 1],
                         "pixel_x": [0.0, 400.0, 0.0, 400.0], "pixel_y": [0.0, 0.0, 400.0, 400.0]})
    assert her2st.grid_mpp(grid, "spots.tsv") == pytest.approx(0.5)


def test_command_line_download_of_one_section_writes_the_manifest_last(
        her2st_mirror: Path, tmp_path: Path) -> None:
    from test_download import run_cli

    raw = tmp_path / "raw"
    run_cli("download", "--source", "her2st", "--out", str(raw), "--mirror-dir", str(her2st_mirror),
            "--samples", "C4")
    listed = pd.read_csv(raw / MANIFEST, sep="\t")
    assert sorted(listed["path"]) == ["data/ST-cnts/C4.tsv.gz", "data/ST-imgs/C/C4/5714_HE_BT_D2.jpg",
                                      "data/ST-spotfiles/C4_selection.tsv"]
    assert dict(zip(listed["path"], listed["sha256"], strict=True)) == {
        rel: h for rel, h in her2st.published_checksums().items() if "C4" in rel}


def test_an_ingested_file_carries_its_he_and_draws_with_scanpy_after_it_moves(
        ingested: dict, tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scanpy as sc

    moved = tmp_path / "B4.h5ad"
    shutil.copy(ingested["paths"]["B4"], moved)
    adata = ad.read_h5ad(moved)
    info = adata.uns["stflow"]
    assert (info["kind"], info["sample"], info["X"], info["patient"]) == (
        "st", "B4", "raw counts", "B")
    assert info["image_relative_path"] == "../raw/data/ST-imgs/B/B4/BT10737_D2_HE.jpg"
    library = adata.uns["spatial"]["B4"]
    assert max(library["images"]["hires"].shape[:2]) <= 1000
    assert library["scalefactors"]["spot_diameter_fullres"] == pytest.approx(
        100 / adata.uns["mpp"], rel=0.05)  # legacy ST: 100 µm spots
    axes = sc.pl.spatial(adata, color="ERBB2", show=False)  # raw counts, drawn directly
    assert len(axes[0].images) == 1  # the H&E from inside the file
    plt.close("all")

"""The sample sheet: every bad row is refused at once, naming line, sample, column and fix;
a Space Ranger folder built from real her2st sections ingests to what the her2st source
gives for the same sections."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from light_imports import HEAVY, top_level_modules_after
from spaceranger_layout import build_section, write_sheet
from test_download import run_cli
from test_sources_visium import make_outs

from stflow.data.sample_sheet import dataset_problems, read_sheet, sheet_patients, sheet_samples
from stflow.data.sources import get_source, her2st, write_st
from stflow.data.sources import sheet as sheet_source
from stflow.errors import StflowError

HEADER = "sample\tpatient\tspaceranger\timage\tcounts\tpositions\tum_per_px"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A folder with one Space Ranger outs/ (S1/outs), an image and a counts/positions pair."""
    make_outs(tmp_path)  # S1/outs and S1/image.png
    (tmp_path / "counts.tsv").write_text("\tG1\tG2\nAAAC-1\t1\t0\nAAAG-1\t0\t3\n")
    (tmp_path / "positions.csv").write_text("barcode,x_px,y_px\nAAAC-1,10,20\nAAAG-1,30,40\n")
    return tmp_path


def sheet(folder: Path, *rows: str, header: str = HEADER) -> Path:
    path = folder / "samples.tsv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def problems(path: Path) -> str:
    with pytest.raises(StflowError) as caught:
        read_sheet(path)
    return str(caught.value)


def test_a_good_sheet_gives_typed_rows_with_paths_read_from_its_folder(data: Path) -> None:
    path = sheet(data, "A\tP1\tS1\tS1/image.png\t\t\t",
                 "B\tP2\t\tS1/image.png\tcounts.tsv\tpositions.csv\t0.5",
                 "# a comment line")
    a, b = read_sheet(path)
    assert a.spaceranger == (data / "S1" / "outs").resolve()  # the folder holding outs/
    assert a.image == (data / "S1" / "image.png").resolve() and a.um_per_px is None
    assert b.counts == (data / "counts.tsv").resolve() and b.um_per_px == 0.5
    assert sheet_samples(path) == ["A", "B"] and sheet_patients(path) == {"A": "P1", "B": "P2"}
    assert sheet_samples(path, ["B"]) == ["B"]


def test_every_problem_is_listed_at_once_naming_line_sample_column_and_fix(data: Path) -> None:
    (data / "HD" / "outs" / "binned_outputs" / "square_008um").mkdir(parents=True)
    path = sheet(data,
                 "A\tP1\tS1\tS1/image.png\t\t\t",           # good
                 "A\tP1\tS1\tS1/image.png\t\t\t",           # duplicated sample
                 "B\t\tS1\tS1/image.png\t\t\t",             # no patient
                 "bad name\tP1\tS1\tS1/image.png\t\t\t",    # bad sample name
                 "C\tP2\tmissing\tS1/image.png\t\t\t",      # path does not exist
                 "D\tP2\t\tS1/image.png\tcounts.tsv\tpositions.csv\t",  # no µm/px
                 "E\tP2\tS1\t\t\t\t",                       # Space Ranger without image
                 "F\tP2\t\t\t\t\t",                         # no data at all
                 "G\tP2\tS1\tS1/image.png\t\t\t-1",         # µm/px not positive
                 "H\tP2\tHD\tS1/image.png\t\t\t")           # Visium HD without its files
    message = problems(path)
    expected = [
        "line 3 (sample A), column sample: 'A' already on line 2",
        "line 4 (sample B), column patient: empty",
        "line 5 (sample bad name), column sample: 'bad name' holds characters",
        f"line 6 (sample C), column spaceranger: {data}/missing does not exist",
        "line 7 (sample D), column um_per_px: empty, and an image with counts + positions "
        "does not say its µm/px",
        "line 8 (sample E), column image: empty: a Space Ranger outs/ folder does not "
        "include the full-resolution H&E",
        "line 9 (sample F), column spaceranger: no data",
        "line 10 (sample G), column um_per_px: '-1' is not a positive number",
        "line 11 (sample H), column spaceranger: ",
    ]
    for line in expected:
        assert line in message, line
    assert "9 problem(s)" in message and message.count("Fix:") == 10
    assert "Visium HD output that lacks" in message


def test_missing_columns_are_named(data: Path) -> None:
    message = problems(sheet(data, "A\tS1", header="sample\tspaceranger"))
    assert "line 1, column patient: column is missing" in message
    message = problems(sheet(data, "A\tP1\tx.png", header="sample\tpatient\timage\tsmaple"))
    assert "column smaple: unknown column" in message
    assert "column spaceranger: column is missing, and so are ['counts', 'positions']" in message


@pytest.mark.parametrize("lost", ["tissue_positions.csv", "scalefactors_json.json"])
def test_a_spaceranger_folder_without_positions_or_scale_factors_is_refused(
        data: Path, lost: str) -> None:
    (data / "S1" / "outs" / "spatial" / lost).unlink()
    message = problems(sheet(data, "A\tP1\tS1\tS1/image.png\t\t\t"))
    assert "line 2 (sample A), column spaceranger:" in message and lost.split("_")[0] in message
    assert "Fix: copy the whole outs/spatial folder" in message


def test_without_a_spot_diameter_the_sheet_must_give_um_per_px(data: Path) -> None:
    factors = data / "S1" / "outs" / "spatial" / "scalefactors_json.json"
    factors.write_text(json.dumps({"tissue_hires_scalef": 0.1, "tissue_lowres_scalef": 0.03}))
    message = problems(sheet(data, "A\tP1\tS1\tS1/image.png\t\t\t"))
    assert "no positive spot_diameter_fullres, so µm/px is unknown. Fix: give um_per_px" in message
    assert read_sheet(sheet(data, "A\tP1\tS1\tS1/image.png\t\t\t0.5"))[0].um_per_px == 0.5


def test_the_config_entry_must_agree_with_the_sheet(data: Path) -> None:
    path = str(sheet(data, "A\tP1\tS1\tS1/image.png\t\t\t"))

    def said(dataset: dict) -> list[str]:
        return [str(p) for p in dataset_problems({"name": "mine", **dataset})]

    assert said({"source": "sheet", "sheet": path}) == []
    assert "set dataset.source: sheet" in said({"source": "visium", "sheet": path})[0]
    assert "source sheet needs a sample sheet" in said({"source": "sheet", "sheet": None})[0]
    assert said({"source": "sheet", "sheet": path, "patients": {"A": "P"}}) == [
        "dataset.patients: set beside dataset.sheet. Fix: remove it: the sheet's columns give "
        "the data, the patient and the image of each sample"]


def test_the_sheet_problems_are_listed_with_the_configs_own(data: Path) -> None:
    path = str(sheet(data, "A\tP1\tS1\tS1/image.png\t\t\t\nA\t\tS9\tS1/image.png\t\t\t"))
    listed = [str(p) for p in dataset_problems({"name": "mine", "source": "sheet",
                                                "sheet": path, "mirror": "/x"})]
    assert listed[0].startswith("dataset.mirror: set beside dataset.sheet")
    sheet_lines = [line for line in listed if line.startswith(f"dataset.sheet {path}: line 3")]
    assert len(sheet_lines) >= 3, listed  # the repeated sample, its empty patient, its folder
    assert any("column patient" in line for line in sheet_lines)


def test_the_sheet_module_imports_no_heavy_library() -> None:
    loaded = top_level_modules_after("import stflow.data.sample_sheet")
    assert not loaded & HEAVY, sorted(loaded & HEAVY)


def test_a_counts_and_positions_row_ingests(data: Path, tmp_path: Path) -> None:
    path = sheet(data, "B\tP2\t\tS1/image.png\tcounts.tsv\tpositions.csv\t0.5")
    sheet_source.download(tmp_path / "raw", path)
    assert get_source("sheet").list_samples(tmp_path / "raw") == ["B"]
    adata = ad.read_h5ad(write_st(sheet_source.read_sample(tmp_path / "raw", "B"),
                                  tmp_path / "st" / "B.h5ad"))
    np.testing.assert_array_equal(adata.X.toarray(), [[1, 0], [0, 3]])
    np.testing.assert_allclose(adata.obsm["spatial"], [[10, 20], [30, 40]])
    assert adata.uns["patient"] == "P2" and adata.uns["mpp"] == 0.5
    assert adata.uns["source"] == "sheet"


def test_the_command_line_downloads_a_sheet_and_ingests_its_rows(data: Path,
                                                                tmp_path: Path) -> None:
    path = sheet(data, "A\tP1\tS1\tS1/image.png\t\t\t0.25")
    raw = tmp_path / "raw"
    run_cli("download", "--source", "sheet", "--sheet", str(path), "--out", str(raw))
    assert (raw / "MANIFEST.tsv").read_text().count("\n") == 2  # header and sheet.tsv
    run_cli("ingest", "--source", "sheet", "--raw-dir", str(raw), "--sample", "A",
            "--out", str(tmp_path / "A.h5ad"))
    adata = ad.read_h5ad(tmp_path / "A.h5ad")
    assert adata.uns["patient"] == "P1" and adata.uns["mpp"] == 0.25 and adata.n_obs == 3
    with pytest.raises(StflowError, match="do not apply to sheet.*patient"):
        run_cli("ingest", "--source", "sheet", "--raw-dir", str(raw), "--sample", "A",
                "--patient", "P9", "--out", str(tmp_path / "B.h5ad"))
    with pytest.raises(StflowError, match="pass --sheet"):
        run_cli("download", "--source", "sheet", "--out", str(raw))


@pytest.fixture(scope="module")
def her2st_folders(her2st_mirror: Path, tmp_path_factory) -> tuple[Path, list]:
    root = tmp_path_factory.mktemp("spaceranger")
    sections = [build_section(her2st_mirror, s, root / "runs") for s in ("B4", "C2")]
    return root, sections


def test_spaceranger_folders_of_her2st_ingest_to_what_the_her2st_source_gives(
        her2st_folders, her2st_mirror: Path, tmp_path: Path) -> None:
    root, sections = her2st_folders
    path = write_sheet(root / "samples.tsv", sections)
    sheet_source.download(tmp_path / "raw", path)
    for section in sections:
        ours = ad.read_h5ad(write_st(sheet_source.read_sample(tmp_path / "raw", section.sample),
                                     tmp_path / f"{section.sample}.h5ad"))
        theirs = ad.read_h5ad(write_st(her2st.read_sample(her2st_mirror, section.sample),
                                       tmp_path / f"{section.sample}-her2st.h5ad"))
        assert list(ours.obs_names) == list(theirs.obs_names)
        assert list(ours.var_names) == list(theirs.var_names)
        assert (ours.X != theirs.X).nnz == 0
        np.testing.assert_allclose(ours.obsm["spatial"], theirs.obsm["spatial"])
        assert ours.uns["mpp"] == pytest.approx(theirs.uns["mpp"], rel=1e-12)
        assert ours.uns["patient"] == theirs.uns["patient"] == section.sample[0]
        assert ours.uns["image_path"] == theirs.uns["image_path"]
        # what Space Ranger adds: gene ids, feature types and the array grid
        assert list(ours.var["gene_ids"]) == list(theirs.var_names)
        assert set(ours.var["feature_types"]) == {"Gene Expression"}
        spots = her2st.read_spots(her2st_mirror / her2st.SPOTS_DIR
                                  / f"{section.sample}_selection.tsv").loc[ours.obs_names]
        np.testing.assert_array_equal(ours.obs["array_row"], spots["y"])
        np.testing.assert_array_equal(ours.obs["array_col"], spots["x"])


def test_without_um_per_px_the_visium_spot_diameter_sets_the_scale(her2st_folders) -> None:
    """Honest about the rule: 55 µm / spot_diameter_fullres is Visium's; legacy ST spots are
    100 µm, so without um_per_px these slides would be mis-scaled by 0.55."""
    root, sections = her2st_folders
    path = write_sheet(root / "no-scale.tsv", sections[:1], um_per_px=False)
    row = read_sheet(path)[0]
    sample = get_source("sheet").read_sample(root, row.sample, row=row.to_params())
    assert sample.mpp == pytest.approx(0.55 * sections[0].um_per_px)


def test_a_path_of_an_unknown_users_home_is_a_missing_file_not_a_crash(tmp_path):
    """'~nobody/x.tif' (no such user) is read as written and refused as missing: found by the
    long fuzz (benchmarks/fuzz_readers.py), where pathlib's expanduser raised RuntimeError."""
    sheet = tmp_path / "samples.tsv"
    sheet.write_text("sample\tpatient\timage\tspaceranger\nS1\tP1\t~0/he.tif\t~0/outs\n")
    with pytest.raises(StflowError, match=r"~0"):
        read_sheet(sheet)

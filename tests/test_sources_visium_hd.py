"""Visium HD through the sample sheet: a row names an outs/ folder with binned_outputs/ and
optionally ``bin_um``; spatialdata-io reads that bin size, each in-tissue bin a spot centred
in full-resolution pixels, µm/px from the bin's scale factors; bad rows are refused at once
by line and column."""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from test_download import run_cli
from test_sources_visium import make_outs
from visium_hd_layout import GENES, ORIGIN_PX, UM_PER_PX, bin_counts, make_hd

from stflow.data.sample_sheet import default_bin_um, read_sheet
from stflow.data.sources.spaceranger import read_hd
from stflow.errors import StflowError

HEADER = "sample\tpatient\tspaceranger\timage\tum_per_px\tbin_um"


def sheet(folder: Path, *rows: str) -> Path:
    path = folder / "samples.tsv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


@pytest.fixture
def hd(tmp_path: Path) -> Path:
    """tmp/HD/outs with 16 µm (20 x 20) and 8 µm (4 x 4) bins, and tmp/HD/image.png."""
    return make_hd(tmp_path / "HD")


def test_the_default_bin_is_16_um_else_the_largest_below_the_112_um_patch() -> None:
    assert default_bin_um([2, 8, 16]) == 16
    assert default_bin_um([2, 8]) == 8
    assert default_bin_um([2, 8, 128]) == 8
    assert default_bin_um([128]) is None


def test_the_sheet_accepts_hd_rows_and_records_the_bin_read(hd: Path, tmp_path: Path) -> None:
    make_outs(tmp_path)  # a Visium row beside them keeps its params (no rerun of its ingest)
    path = sheet(tmp_path, "A\tP1\tHD\tHD/image.png\t\t",
                 "B\tP1\tHD/outs\tHD/image.png\t\t8", "C\tP2\tS1\tS1/image.png\t\t")
    a, b, c = read_sheet(path)
    assert c.bin_um is None and "bin_um" not in c.to_params()
    assert a.spaceranger == hd.resolve() and (a.bin_um, b.bin_um) == (16, 8)
    assert a.um_per_px is None  # from the bin's microns_per_pixel at ingest
    assert hd.resolve() / "binned_outputs/square_016um/spatial/tissue_positions.parquet" \
        in a.files()
    assert type(a).from_params(a.to_params()) == type(a)(**{**a.__dict__, "line": 0})


def test_bad_hd_rows_are_refused_by_line_and_column(hd: Path, tmp_path: Path) -> None:
    make_outs(tmp_path)  # a Visium (not HD) folder, S1/outs
    broken = make_hd(tmp_path / "HD2", {16: 2})
    (broken / "binned_outputs/square_016um/spatial/tissue_positions.parquet").unlink()
    make_hd(tmp_path / "HD3", {128: 2})
    with pytest.raises(StflowError) as caught:  # the problems of one sheet, listed together
        read_sheet(sheet(tmp_path,
                         "A\tP1\tHD\tHD/image.png\t\t32",       # no 32 µm bins
                         "B\tP1\tS1\tS1/image.png\t0.5\t16",    # bin_um on a Visium row
                         "C\tP1\tHD2\tHD/image.png\t\t",        # bin folder lacks positions
                         "D\tP1\tHD\tHD/image.png\t\tx",        # not a number
                         "E\tP1\tHD3\tHD/image.png\t\t",       # no bin below 112 µm
                         "F\tP1\tgone\tHD/image.png\t\t16"))   # refused once: no such path
    message = str(caught.value)
    assert "6 problem(s)" in message and "line 7 (sample F), column spaceranger:" in message
    assert (f"line 2 (sample A), column bin_um: {hd.resolve()}/binned_outputs has no 32 µm "
            "bins (it has 8, 16 µm)") in message
    assert "line 3 (sample B), column bin_um: '16' given for a row that is not a Visium HD" \
        in message
    assert ("line 4 (sample C), column spaceranger: " in message
            and "['binned_outputs/square_016um/spatial/tissue_positions.parquet']" in message)
    assert "line 5 (sample D), column bin_um: 'x' is not a whole number" in message
    assert "line 6 (sample E), column bin_um: empty, and " in message and "below 112" in message


def test_the_reader_gives_in_tissue_bins_with_known_counts_centres_and_scale(hd: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the reader's own warnings are expected and silenced
        sample = read_hd(hd, 16, sample="HD1", patient="P1", image=hd.parent / "image.png")
    counts = sample.counts
    assert counts.n_obs == 380 and counts.obs["in_tissue"].all()  # row 0 lies outside
    assert counts.obs_names[0] == "s_016um_00001_00000-1"
    np.testing.assert_array_equal(np.asarray(counts.X.todense()), bin_counts(400)[20:])
    assert list(counts.var_names) == GENES and counts.var["gene_ids"].iloc[0] == "ENSG00000"
    rows, cols = counts.obs["array_row"].to_numpy(), counts.obs["array_col"].to_numpy()
    assert counts.obs["array_row"].dtype == np.int32
    np.testing.assert_allclose(sample.spatial_px, ORIGIN_PX + 32.0 * np.c_[cols, rows])  # x, y
    assert sample.mpp == UM_PER_PX
    assert read_hd(hd, 8, sample="HD1", patient="P1", image=hd.parent / "image.png",
                   um_per_px=0.25).mpp == 0.25


def test_the_command_line_ingests_an_hd_row(hd: Path, tmp_path: Path) -> None:
    path = sheet(tmp_path, "HD1\tP1\tHD\tHD/image.png\t\t")
    raw = tmp_path / "raw"
    run_cli("download", "--source", "sheet", "--sheet", str(path), "--out", str(raw))
    assert "\tbin_um\n" in (raw / "sheet.tsv").read_text().splitlines(keepends=True)[0]
    run_cli("ingest", "--source", "sheet", "--raw-dir", str(raw), "--sample", "HD1",
            "--out", str(tmp_path / "st" / "HD1.h5ad"))
    adata = ad.read_h5ad(tmp_path / "st" / "HD1.h5ad")
    assert adata.n_obs == 380 and adata.uns["mpp"] == UM_PER_PX
    np.testing.assert_allclose(adata.obsm["spatial_um"], adata.obsm["spatial"] * UM_PER_PX)
    assert adata.uns["source"] == "sheet" and adata.uns["patient"] == "P1"

"""Xenium through the sample sheet: a row names an output folder, its H&E and the Xenium
Explorer alignment; spatialdata-io reads the transcripts (or cells), which are counted into
square bins whose centres land on the H&E through the alignment; bad rows are refused by
line and column with the sheet's other problems."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import tifffile
from test_download import run_cli
from test_sources_visium import make_outs
from xenium_layout import (
    GENES,
    HE_UM_PER_PX,
    PIXEL_SIZE,
    XeniumSection,
    he_affine,
    he_pixels_of,
    make_xenium,
    write_alignment,
)

from stflow.data.sample_sheet import read_sheet
from stflow.data.sources import xenium_bins
from stflow.data.sources.xenium import MIN_QV, read_xenium
from stflow.data.sources.xenium_bins import BinCounter
from stflow.data.xenium_sheet import DEFAULT_BIN_UM, DEFAULT_UNIT
from stflow.errors import StflowError

HEADER = "sample\tpatient\txenium\timage\talignment\tunit\tbin_um"


def sheet(folder: Path, *rows: str, header: str = HEADER) -> Path:
    path = folder / "samples.tsv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.fixture(scope="module")
def section(tmp_path_factory) -> XeniumSection:
    """tmp/X1/{xenium/, he.tif, he_imagealignment.csv}: 20,000 transcripts, 300 cells."""
    return make_xenium(tmp_path_factory.mktemp("xenium") / "X1")


def direct_counts(transcripts: pd.DataFrame, bin_um: float) -> pd.DataFrame:
    """The expected bins: panel transcripts of quality >= 20 counted by floor(µm / bin)."""
    kept = transcripts[transcripts["feature_name"].isin(GENES) & (transcripts["qv"] >= MIN_QV)]
    # float32 as the parquet holds them
    x = kept["x_location"].to_numpy(np.float32).astype(np.float64)
    y = kept["y_location"].to_numpy(np.float32).astype(np.float64)
    frame = pd.DataFrame({"row": np.floor(y / bin_um).astype(int),
                          "col": np.floor(x / bin_um).astype(int),
                          "gene": kept["feature_name"].to_numpy()})
    return frame.groupby(["row", "col", "gene"]).size().unstack(fill_value=0).reindex(
        columns=GENES, fill_value=0)


def as_table(sample) -> pd.DataFrame:
    """Bin counts indexed by (row, col), one column per gene."""
    index = pd.MultiIndex.from_arrays([sample.counts.obs["array_row"].to_numpy().astype(int),
                                       sample.counts.obs["array_col"].to_numpy().astype(int)],
                                      names=["row", "col"])
    return pd.DataFrame(np.asarray(sample.counts.X.todense()), index=index,
                        columns=list(sample.counts.var_names))


@pytest.mark.parametrize("bin_um", [DEFAULT_BIN_UM, 16.0, 100.0])
def test_bin_counts_equal_a_direct_count_of_the_transcripts(section: XeniumSection,
                                                            bin_um: float) -> None:
    sample = read_xenium(section.folder, alignment=section.alignment, image=section.image,
                         bin_um=bin_um, unit="transcripts", sample="X1", patient="P1")
    expected = direct_counts(section.transcripts, bin_um)
    got = as_table(sample)
    assert list(got.columns) == GENES  # controls, blanks, codewords and low quality dropped
    assert sample.record["bins_off_image"] == 0
    pd.testing.assert_frame_equal(got.sort_index(), expected.sort_index(), check_names=False,
                                  check_dtype=False)
    low = int((section.transcripts["qv"] < MIN_QV).sum())
    assert sample.record["transcripts_low_quality"] == low
    assert sample.record["transcripts_read"] == len(section.transcripts)


def test_bin_centres_land_within_half_a_pixel_of_the_affine(section: XeniumSection) -> None:
    sample = read_xenium(section.folder, alignment=section.alignment, image=section.image,
                         bin_um=55.0, unit="transcripts", sample="X1", patient="P1")
    rows = sample.counts.obs["array_row"].to_numpy()
    cols = sample.counts.obs["array_col"].to_numpy()
    centres_um = np.c_[(cols + 0.5) * 55.0, (rows + 0.5) * 55.0]
    expected = he_pixels_of(centres_um, section.affine)
    assert np.abs(sample.spatial_px - expected).max() < 0.5
    assert math.isclose(sample.mpp, HE_UM_PER_PX, rel_tol=1e-9)  # from the affine's scale
    # one bin's centre: (col + 0.5) * bin / 0.2125 Xenium px, through the inverse affine
    xenium_px = np.r_[centres_um[0] / PIXEL_SIZE, 1.0]
    np.testing.assert_allclose(np.linalg.solve(section.affine, xenium_px)[:2],
                               sample.spatial_px[0], atol=1e-6)


def test_cells_are_summed_into_the_bin_of_their_centroid(section: XeniumSection) -> None:
    sample = read_xenium(section.folder, alignment=section.alignment, image=section.image,
                         bin_um=55.0, unit="cells", sample="X1", patient="P1")
    cells = section.cells
    keys = pd.MultiIndex.from_arrays([np.floor(cells["y_centroid"] / 55.0).astype(int),
                                      np.floor(cells["x_centroid"] / 55.0).astype(int)],
                                     names=["row", "col"])
    expected = pd.DataFrame(section.cell_counts, index=keys, columns=GENES).groupby(
        level=["row", "col"]).sum()
    expected = expected[expected.sum(axis=1) > 0]
    got = as_table(sample)
    pd.testing.assert_frame_equal(got.sort_index(), expected.sort_index(), check_dtype=False)
    assert sample.counts.var["feature_types"].eq("Gene Expression").all()
    assert sample.record["unit"] == "cells" and sample.record["cells_read"] == len(cells)


def test_the_counter_merges_partial_counts_to_the_same_totals(monkeypatch) -> None:
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-300, 900, 50_000), rng.uniform(0, 400, 50_000)
    genes = rng.integers(0, 7, 50_000)
    whole = BinCounter(40.0, 7)
    whole.add(x, y, genes)
    monkeypatch.setattr(xenium_bins, "MERGE_AT", 100)  # merge after nearly every chunk
    pieces = BinCounter(40.0, 7)
    for chunk in np.array_split(np.arange(50_000), 37):
        pieces.add(x[chunk], y[chunk], genes[chunk])
    rows, cols, counts = pieces.result()
    rows_w, cols_w, counts_w = whole.result()
    np.testing.assert_array_equal(rows, rows_w)
    np.testing.assert_array_equal(cols, cols_w)
    assert (counts != counts_w).nnz == 0 and counts.sum() == 50_000
    assert rows.min() == 0 and cols.min() == -8  # negative µm lie in negative bins
    with pytest.raises(ValueError, match="positive"):
        BinCounter(0.0, 3)


def test_bins_off_the_h_and_e_are_dropped_and_counted(tmp_path: Path) -> None:
    shifted = make_xenium(tmp_path / "X", affine=he_affine(offset_px=(-200.0, 200.0)),
                          n_transcripts=4_000)
    sample = read_xenium(shifted.folder, alignment=shifted.alignment, image=shifted.image,
                         bin_um=55.0, unit="transcripts", sample="X", patient="P1")
    assert sample.record["bins_off_image"] > 0
    height, width = tifffile.imread(shifted.image).shape[:2]
    assert (sample.spatial_px >= 0).all() and (sample.spatial_px < [width, height]).all()


def test_the_sheet_accepts_xenium_rows_with_their_defaults(section: XeniumSection,
                                                          tmp_path: Path) -> None:
    make_outs(tmp_path)  # a Visium row beside them keeps its params (no rerun of its ingest)
    root = section.folder.parent
    path = sheet(tmp_path, f"A\tP1\t{root}/xenium\t{root}/he.tif\t{section.alignment}\t\t",
                 f"B\tP2\t{root}/xenium\t{root}/he.tif\t{section.alignment}\tcells\t27.5",
                 header=HEADER)
    a, b = read_sheet(path)
    assert (a.unit, a.bin_um, b.unit, b.bin_um) == (DEFAULT_UNIT, DEFAULT_BIN_UM, "cells", 27.5)
    assert a.xenium == section.folder.resolve() and a.um_per_px is None
    assert section.folder.resolve() / "transcripts.parquet" in a.files()
    assert section.folder.resolve() / "cell_feature_matrix.h5" in b.files()
    assert type(a).from_params(a.to_params()) == type(a)(**{**a.__dict__, "line": 0})
    visium = read_sheet(sheet(tmp_path, "C\tP2\tS1\tS1/image.png\t0.5",
                              header="sample\tpatient\tspaceranger\timage\tum_per_px"))[0]
    assert not {"xenium", "alignment", "unit", "bin_um"} & set(visium.to_params())


def test_bad_xenium_rows_are_refused_by_line_and_column(section: XeniumSection,
                                                        tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(section.folder.parent, root)
    folder, image, good = root / "xenium", root / "he.tif", root / "he_imagealignment.csv"
    no_transcripts = shutil.copytree(folder, root / "no_transcripts")
    (no_transcripts / "transcripts.parquet").unlink()
    no_cells = shutil.copytree(folder, root / "no_cells")
    (no_cells / "cells.parquet").unlink()
    (root / "two_rows.csv").write_text("1,0,0\n0,1,0\n")
    (root / "header.csv").write_text("a,b,c\n1,0,0\n0,1,0\n")
    write_alignment(root / "singular.csv", np.array([[1.0, 2, 0], [2, 4, 0], [0, 0, 1]]))
    full = tifffile.imread(image)
    tifffile.imwrite(root / "half.tif", full[::2, ::2], photometric="rgb")  # a downscaled copy
    make_outs(root)
    rows = [
        f"A\tP1\t{folder}\t{image}\t{root}/gone.csv\t\t",            # alignment missing
        f"B\tP1\t{folder}\t{image}\t{root}/two_rows.csv\t\t",        # not 3 x 3
        f"C\tP1\t{folder}\t{image}\t{root}/header.csv\t\t",          # a header
        f"D\tP1\t{folder}\t{image}\t{root}/singular.csv\t\t",        # singular
        f"E\tP1\t{folder}\t{root}/half.tif\t{good}\t\t",             # H&E size mismatch
        f"F\tP1\t{folder}\t{image}\t{good}\t\t0",                    # bin_um not positive
        f"G\tP1\t{folder}\t{image}\t{good}\t\t-5",
        f"H\tP1\t{no_transcripts}\t{image}\t{good}\t\t",             # no transcripts
        f"I\tP1\t{no_cells}\t{image}\t{good}\tcells\t",              # no cells
        f"J\tP1\t{folder}\t{image}\t{good}\tnuclei\t",               # unknown unit
        f"K\tP1\t{folder}\t{image}\t\t\t",                           # no alignment
        f"L\tP2\t{no_cells}\t{image}\t{good}\t\t",                   # fine: transcripts
    ]
    with pytest.raises(StflowError) as caught:
        read_sheet(sheet(root, *rows, f"M\tP2\t\tS1/image.png\t{good}\t\t\tS1\t0.5",
                         header=HEADER + "\tspaceranger\tum_per_px"))
    message = str(caught.value)
    expected = {
        2: ("alignment", f"{root}/gone.csv does not exist"),
        3: ("alignment", "holds 2 rows of [3] cells, not a 3 x 3 matrix"),
        4: ("alignment", "holds a cell that is not a number (a header?)"),
        5: ("alignment", "is singular"),
        6: ("image", "does not match he_imagealignment.csv: only 2"),
        7: ("bin_um", "'0' is not a positive number of µm"),
        8: ("bin_um", "'-5' is not a positive number of µm"),
        9: ("xenium", "lacks ['transcripts.parquet'] (unit transcripts"),
        10: ("xenium", "lacks ['cells.parquet'] (unit cells"),
        11: ("unit", "'nuclei' is not a unit"),
        12: ("alignment", "empty: a Xenium row places its bins on the H&E"),
    }
    for line, (column, text) in expected.items():
        start = f"line {line} (sample {chr(ord('A') + line - 2)}), column {column}: "
        found = [p for p in message.splitlines() if p.strip().startswith(f"- {start}")]
        assert found and text in found[0], (line, message)
    assert "line 13 (sample L)" not in message
    assert "line 14 (sample M), column alignment: " in message  # not a Xenium row
    assert f"{len(expected) + 1} problem(s)" in message


def test_um_per_px_and_other_sources_are_refused_beside_xenium(section: XeniumSection,
                                                               tmp_path: Path) -> None:
    root = section.folder.parent
    make_outs(tmp_path)
    with pytest.raises(StflowError) as caught:
        read_sheet(sheet(tmp_path, f"A\tP1\t{root}/xenium\t{root}/he.tif\t{section.alignment}"
                         "\t\t\tS1\t0.5", header=HEADER + "\tspaceranger\tum_per_px"))
    message = str(caught.value)
    assert "column spaceranger: given together with xenium" in message
    assert "column um_per_px: given for a Xenium row" in message


def test_the_command_line_ingests_a_xenium_row(section: XeniumSection, tmp_path: Path) -> None:
    root = section.folder.parent
    path = sheet(tmp_path, f"X1\tP1\t{root}/xenium\t{root}/he.tif\t{section.alignment}\t\t")
    raw = tmp_path / "raw"
    run_cli("download", "--source", "sheet", "--sheet", str(path), "--out", str(raw))
    resolved = pd.read_csv(raw / "sheet.tsv", sep="\t")
    assert resolved.loc[0, "unit"] == "transcripts" and resolved.loc[0, "bin_um"] == 55.0
    run_cli("ingest", "--source", "sheet", "--raw-dir", str(raw), "--sample", "X1",
            "--out", str(tmp_path / "st" / "X1.h5ad"))
    adata = ad.read_h5ad(tmp_path / "st" / "X1.h5ad")
    record = adata.uns["stflow"]
    assert (record["platform"], record["unit"], record["bin_um"], record["lattice"]) == \
        ("xenium", "transcripts", 55.0, "square")
    assert record["min_qv"] == MIN_QV and adata.uns["mpp"] == pytest.approx(HE_UM_PER_PX)
    np.testing.assert_allclose(adata.obsm["spatial_um"], adata.obsm["spatial"] * adata.uns["mpp"])
    assert adata.X.sum() == direct_counts(section.transcripts, 55.0).to_numpy().sum()

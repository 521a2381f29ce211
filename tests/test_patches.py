"""Patch extraction: same pixels as a direct read, white padding, tissue filter, HEST layout."""

from __future__ import annotations

import h5py
import numpy as np
import openslide
import pandas as pd
import pytest
from PIL import Image
from slides import aperio_slide, tissue_like, write_pyramid_tiff

from stflow.data.patches import extract_patches, open_slide
from stflow.errors import StflowError


def read_h5(path):
    with h5py.File(path, "r") as h5:
        return ({k: h5[k][:] for k in ("img", "coords", "barcode")}, dict(h5.attrs))


def test_aperio_patch_equals_direct_level0_read(tmp_path):
    svs = aperio_slide()
    mpp = 0.499
    centres = np.array([[1100.0, 1500.0], [700.0, 2200.0]])
    # 224 level-0 pixels per side at 224 px: the patch must be the raw level-0 pixels
    summary = extract_patches(svs, centres, mpp=mpp, barcodes=["a", "b"], out=tmp_path / "s.h5",
                              size_um=224 * mpp, size_px=224, min_tissue=0.0)
    assert summary.reader == "openslide"
    data, _ = read_h5(tmp_path / "s.h5")
    slide = openslide.OpenSlide(str(svs))
    for patch, (cx, cy) in zip(data["img"], centres, strict=True):
        direct = np.asarray(slide.read_region((int(cx) - 112, int(cy) - 112), 0, (224, 224)))
        np.testing.assert_array_equal(patch, direct[..., :3])


def test_pyramid_tiff_reads_a_coarser_level_and_matches_level0(tmp_path):
    image = tissue_like(1600, 1200)
    tiff = tmp_path / "slide.tiff"
    write_pyramid_tiff(tiff, image, mpp=0.25)
    assert openslide.OpenSlide(str(tiff)).level_count == 3
    centres = np.array([[600.0, 800.0], [500.0, 700.0]])
    # 112 µm at 0.25 µm/px = 448 level-0 px → 224 px: downsample 2, read from level 1
    summary = extract_patches(tiff, centres, mpp=0.25, barcodes=["a", "b"], out=tmp_path / "p.h5",
                              size_um=112, size_px=224, min_tissue=0.0)
    assert summary.reader == "openslide"
    data, attrs = read_h5(tmp_path / "p.h5")
    for patch, (cx, cy) in zip(data["img"], centres.astype(int), strict=True):
        window = image[cy - 224:cy + 224, cx - 224:cx + 224]
        direct = np.asarray(Image.fromarray(window).resize((224, 224), Image.Resampling.BILINEAR))
        assert np.abs(patch.astype(int) - direct).mean() < 3.0
    assert attrs["pixel_size"] == pytest.approx(0.5)


def test_jpeg_fallback_equals_direct_pil_crop(tmp_path):
    jpg = tmp_path / "slide.jpg"
    Image.fromarray(tissue_like(1000, 900)).save(jpg, quality=95)
    centres = np.array([[450.0, 500.0], [400.0, 420.0]])
    summary = extract_patches(jpg, centres, mpp=0.5, barcodes=["a", "b"], out=tmp_path / "p.h5",
                              size_um=112, size_px=224, min_tissue=0.0)
    assert summary.reader == "pillow"
    data, _ = read_h5(tmp_path / "p.h5")
    decoded = Image.open(jpg)
    for patch, (cx, cy) in zip(data["img"], centres.astype(int), strict=True):
        direct = np.asarray(decoded.crop((cx - 112, cy - 112, cx + 112, cy + 112)))
        np.testing.assert_array_equal(patch, direct)


def test_jpeg_decoded_reduced_when_patches_are_coarser(tmp_path):
    jpg = tmp_path / "slide.jpg"
    image = tissue_like(1000, 900)
    Image.fromarray(image).save(jpg, quality=95)
    with open_slide(jpg, downsample=4.0) as reader:
        assert reader.image.size == (225, 250)  # decoded at 1/4: a sixteenth of the memory
        patch = reader.read_window(450.0, 500.0, 224.0, 56)
    full = Image.open(jpg).crop((450 - 112, 500 - 112, 450 + 112, 500 + 112))
    direct = np.asarray(full.resize((56, 56), Image.Resampling.BILINEAR))
    assert np.abs(patch.astype(int) - direct).mean() < 4.0


@pytest.mark.parametrize("suffix", ["jpg", "tiff"])
def test_window_partly_outside_is_padded_white(tmp_path, suffix):
    image = np.full((600, 500, 3), (150, 60, 120), dtype=np.uint8)
    path = tmp_path / f"slide.{suffix}"
    if suffix == "jpg":
        Image.fromarray(image).save(path, quality=95)
    else:
        write_pyramid_tiff(path, image, mpp=0.5)
    extract_patches(path, np.array([[10.0, 10.0]]), mpp=0.5, barcodes=["corner"],
                    out=tmp_path / "p.h5", size_um=112, size_px=224, min_tissue=0.0)
    patch = read_h5(tmp_path / "p.h5")[0]["img"][0]
    assert (patch[:90, :90] == 255).all()  # outside the image: white
    assert np.abs(patch[150:, 150:].astype(int) - (150, 60, 120)).max() <= 4


def test_spot_outside_the_image_names_sample_and_fix(tmp_path):
    jpg = tmp_path / "slide.jpg"
    Image.fromarray(tissue_like(300, 300)).save(jpg)
    with pytest.raises(StflowError, match=r"sample S1 .*outside.*Fix: .*level-0"):
        extract_patches(jpg, np.array([[150.0, 150.0], [150.0, 900.0]]), mpp=0.5,
                        barcodes=["in", "out"], out=tmp_path / "p.h5", sample="S1")
    assert not (tmp_path / "p.h5").exists()


def test_background_patches_dropped_counted_and_drawn(tmp_path):
    jpg = tmp_path / "slide.jpg"
    Image.fromarray(tissue_like(1200, 1000)).save(jpg, quality=95)
    tissue = [[500.0, 600.0], [450.0, 550.0], [560.0, 650.0]]
    glass = [[60.0, 60.0], [940.0, 1140.0]]
    summary = extract_patches(jpg, np.array(tissue + glass), mpp=0.5,
                              barcodes=["t1", "t2", "t3", "g1", "g2"], out=tmp_path / "S.h5",
                              sample="S", qc_png=tmp_path / "qc.png")
    data, attrs = read_h5(tmp_path / "S.h5")
    assert summary.kept.tolist() == [True, True, True, False, False]
    assert attrs["n_dropped_background"] == 2
    assert [b[0] for b in data["barcode"]] == [b"t1", b"t2", b"t3"]
    assert data["img"].shape == (3, 224, 224, 3) and data["img"].dtype == np.uint8
    assert data["coords"].dtype == np.int64 and data["coords"].tolist()[0] == [500, 600]
    assert data["barcode"].shape == (3, 1)
    assert {"pixel_size", "patch_size_um", "patch_size_px", "mpp", "sample"} <= set(attrs)
    assert attrs["sample"] == "S" and attrs["mpp"] == 0.5 and attrs["patch_size_px"] == 224
    qc = np.asarray(Image.open(tmp_path / "qc.png").convert("RGB")).astype(int)
    red = (qc[..., 0] > 180) & (qc[..., 1] < 60) & (qc[..., 2] < 60)
    green = (qc[..., 1] > 140) & (qc[..., 0] < 60) & (qc[..., 2] < 60)
    assert red.any() and green.any()


def test_cli_extracts_from_an_ingested_h5ad(tmp_path):
    import anndata
    import scipy.sparse as sp

    from stflow.cli import main

    jpg = tmp_path / "slide.jpg"
    Image.fromarray(tissue_like(800, 800)).save(jpg, quality=95)
    adata = anndata.AnnData(sp.csr_matrix(np.ones((2, 3), dtype=np.int32)))
    adata.obs_names = ["AAA-1", "CCC-1"]
    adata.obsm["spatial"] = np.array([[400.0, 400.0], [380.0, 420.0]])
    adata.uns.update({"mpp": 0.5, "image_path": str(jpg), "sample": "S9"})
    adata.write_h5ad(tmp_path / "S9.h5ad")
    code = main(["patches", "--st", str(tmp_path / "S9.h5ad"), "--out", str(tmp_path / "S9.h5"),
                 "--qc", str(tmp_path / "qc" / "S9.png"), "--size-px", "64"])
    assert code == 0
    data, attrs = read_h5(tmp_path / "S9.h5")
    assert data["img"].shape == (2, 64, 64, 3) and attrs["sample"] == "S9"
    assert (tmp_path / "qc" / "S9.png").exists()


def test_her2st_selected_spots_are_on_tissue(her2st_mirror, tmp_path):
    spots = pd.read_csv(her2st_mirror / "data/ST-spotfiles/B4_selection.tsv", sep="\t")
    grid = np.c_[spots[["x", "y"]].to_numpy(float), np.ones(len(spots))]
    fit = np.linalg.lstsq(grid, spots[["pixel_x", "pixel_y"]].to_numpy(), rcond=None)[0]
    mpp = 200.0 / np.hypot(*fit[0])  # one grid step is 200 µm
    assert 0.5 < mpp < 0.9
    subset = spots.iloc[::10]
    image = next((her2st_mirror / "data/ST-imgs/B/B4").glob("*.jpg"))
    width, height = Image.open(image).size
    corners = np.array([[300.0, 300.0], [width - 300.0, 300.0], [300.0, height - 300.0],
                        [width - 300.0, height - 300.0]])
    centres = np.r_[subset[["pixel_x", "pixel_y"]].to_numpy(), corners]
    barcodes = [f"{x}x{y}" for x, y in zip(subset.x, subset.y, strict=True)] + list("abcd")
    # 28 px patches: the JPEG is decoded at reduced size, which keeps this test fast
    summary = extract_patches(image, centres, mpp=mpp, barcodes=barcodes, out=tmp_path / "B4.h5",
                              size_px=28, min_tissue=0.5)
    on_tissue, background = summary.tissue_fraction[:-4], summary.tissue_fraction[-4:]
    assert np.median(on_tissue) > 0.9 and (on_tissue >= 0.5).mean() > 0.9
    assert background.max() < 0.1 < on_tissue.min()
    assert summary.n_dropped_background >= 4

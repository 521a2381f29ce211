"""Every prediction file opens in the tool a user reaches for: scanpy draws it over the H&E
after it is moved, squidpy finds the graph it would build itself, scanpy knows X is log1p,
and the SpatialData export reads back and draws with spatialdata-plot."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import anndata as ad
import matplotlib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stflow.crossval.predict import write_fold_prediction
from stflow.data.dataset import Slide
from stflow.data.graph import knn_graph

matplotlib.use("Agg")
MPP, PITCH_UM, K = 0.5, 200.0, 4
GENES = ["ERBB2", "GATA3"]


@pytest.fixture(scope="module")
def he_crop(her2st_mirror: Path, tmp_path_factory) -> Path:
    """A 1600 px square of a real her2st H&E (section B4)."""
    Image.MAX_IMAGE_PIXELS = None
    source = next((her2st_mirror / "data" / "ST-imgs" / "B" / "B4").glob("*.jpg"))
    with Image.open(source) as image:
        x0, y0 = image.width // 2 - 800, image.height // 2 - 800
        crop = image.crop((x0, y0, x0 + 1600, y0 + 1600)).convert("RGB")
    path = tmp_path_factory.mktemp("he") / "B4_crop.jpg"
    crop.save(path, quality=90)
    return path


@pytest.fixture(scope="module")
def prediction(he_crop: Path, tmp_path_factory) -> Path:
    """A fold prediction as predict writes it: 4 x 4 spots on a 200 µm grid over the crop."""
    folder = tmp_path_factory.mktemp("run")
    grid = np.stack(np.meshgrid(np.arange(4), np.arange(4)), -1).reshape(-1, 2)
    rng = np.random.default_rng(0)
    jitter = rng.uniform(-20, 20, size=grid.shape)  # no ties between neighbour distances
    coords_um = (grid * PITCH_UM + 150.0 + jitter).astype(np.float64)
    barcodes = [f"{x}x{y}" for x, y in grid]
    st = ad.AnnData(X=np.zeros((16, 1), np.int32), obs=pd.DataFrame(index=barcodes))
    st.obsm["spatial"], st.obsm["spatial_um"] = coords_um / MPP, coords_um
    st.uns.update({"mpp": MPP, "image_path": str(he_crop), "sample": "B4"})
    st.write_h5ad(folder / "B4_st.h5ad")
    neighbors, _ = knn_graph(coords_um, K)
    slide = Slide("B4", rng.normal(size=(16, 8)).astype(np.float32), coords_um,
                  np.asarray(barcodes), targets=rng.random((16, 2)).astype(np.float32),
                  neighbors=neighbors)
    values = np.log1p(rng.poisson(3, size=(16, 2))).astype(np.float32)
    identity = {"model": "ridge", "encoder": "efficientnet_lite0",
                "weights_sha256": "a" * 64, "seed": 0, "fold": "fold0"}
    write_fold_prediction(folder / "B4.h5ad", slide, values, GENES, folder / "B4_st.h5ad",
                          identity)
    return folder / "B4.h5ad"


def test_scanpy_draws_a_moved_prediction_over_the_he_inside_it(prediction, he_crop, tmp_path):
    import matplotlib.pyplot as plt
    import scanpy as sc

    moved = tmp_path / "elsewhere" / "B4.h5ad"
    moved.parent.mkdir()
    shutil.copy(prediction, moved)
    hidden = he_crop.rename(he_crop.with_suffix(".gone"))  # the image is not needed
    try:
        adata = ad.read_h5ad(moved)
        library = adata.uns["spatial"]["B4"]
        assert library["images"]["hires"].shape[2] == 3
        ax = sc.pl.spatial(adata, color="ERBB2", show=False)
        assert ax[0].images  # the H&E is drawn under the spots
        plt.close("all")
    finally:
        hidden.rename(he_crop)


def test_the_uns_stflow_layout_names_what_the_file_is(prediction):
    info = ad.read_h5ad(prediction).uns["stflow"]
    assert {key: info[key] for key in ("kind", "sample", "X", "model", "encoder", "seed",
                                       "fold")} == {
        "kind": "prediction", "sample": "B4", "X": "log1p of raw counts (predicted mean)",
        "model": "ridge", "encoder": "efficientnet_lite0", "seed": 0, "fold": "fold0"}
    assert info["weights_sha256"] == "a" * 64 and info["version"]


def test_squidpy_builds_the_same_graph_under_the_same_keys(prediction):
    import squidpy as sq

    ours = ad.read_h5ad(prediction)
    theirs = ad.AnnData(X=ours.X.copy(), obs=ours.obs[[]].copy())
    theirs.obsm["spatial_um"] = ours.obsm["spatial_um"].copy()
    sq.gr.spatial_neighbors(theirs, coord_type="generic", n_neighs=K, spatial_key="spatial_um")
    assert set(theirs.obsp) <= set(ours.obsp)
    for key in ("spatial_connectivities", "spatial_distances"):
        a, b = ours.obsp[key].tocsr(), theirs.obsp[key].tocsr()
        assert a.format == "csr" and a.shape == b.shape
        assert ((a != 0) != (b != 0)).nnz == 0  # the same sparsity pattern
    np.testing.assert_allclose(ours.obsp["spatial_distances"].toarray(),
                               theirs.obsp["spatial_distances"].toarray(), rtol=1e-6)
    assert set(ours.obsp["spatial_connectivities"].data) == {1.0}
    ours_uns, theirs_uns = ours.uns["spatial_neighbors"], theirs.uns["spatial_neighbors"]
    assert {k: ours_uns[k] for k in ("connectivities_key", "distances_key")} == {
        k: theirs_uns[k] for k in ("connectivities_key", "distances_key")}
    assert theirs_uns["params"].items() <= {**ours_uns["params"], "transform": None}.items()
    assert ours_uns["params"]["distance_unit"] == "um"
    sq.gr.spatial_autocorr(ours, mode="moran", genes=GENES)  # squidpy runs on our graph
    assert list(ours.uns["moranI"].index) != []


def test_scanpy_knows_the_prediction_is_already_log1p(prediction, monkeypatch):
    import scanpy as sc

    adata = ad.read_h5ad(prediction)
    assert adata.uns["log1p"] == {"base": None}
    said: list[str] = []  # scanpy logs (not raises) its warning, through its own logger
    monkeypatch.setattr(sc.logging, "warning", lambda msg, *a, **k: said.append(msg))
    sc.pp.log1p(adata)
    assert any("already log-transformed" in msg for msg in said)


def test_a_prediction_exports_to_spatialdata_that_reads_back_in_microns_and_draws(
        prediction, tmp_path):
    import matplotlib.pyplot as plt
    import spatialdata
    import spatialdata_plot  # noqa: F401  (registers sdata.pl)
    from spatialdata.transformations import get_transformation

    from stflow.cli import main

    out = tmp_path / "B4.zarr"
    assert main(["export-spatialdata", "--prediction", str(prediction), "--out", str(out)]) == 0
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # nothing temporary
    sdata = spatialdata.read_zarr(out)
    assert set(sdata.images) == {"he"} and set(sdata.shapes) == {"spots"}
    assert set(sdata.tables) == {"table"}
    table = sdata.tables["table"]
    attrs = table.uns["spatialdata_attrs"]
    assert (attrs["region"], attrs["region_key"], attrs["instance_key"]) == (
        "spots", "region", "spot_id")
    spots = sdata.shapes["spots"]
    assert list(table.obs["spot_id"]) == list(spots.index)
    source = ad.read_h5ad(prediction)
    np.testing.assert_allclose(np.c_[spots.geometry.x, spots.geometry.y],
                               source.obsm["spatial_um"])  # microns
    assert np.allclose(spots["radius"], spots["radius"].iloc[0]) and 10 < spots["radius"].iloc[0] < 100
    np.testing.assert_allclose(table.X, source.X)
    # the image's transform takes its pixels to microns: 1600 px at 0.5 µm/px = 800 µm
    image = sdata.images["he"]
    scale = get_transformation(image["scale0"].image, "global").to_affine_matrix(
        input_axes=("x", "y"), output_axes=("x", "y"))
    width_px = image["scale0"].image.shape[-1]
    assert width_px * scale[0, 0] == pytest.approx(800, rel=0.01)
    assert len(image.children) >= 2  # multiscale
    png = tmp_path / "drawn.png"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sdata.pl.render_images("he").pl.render_shapes("spots", color="ERBB2").pl.show(
            coordinate_systems="global", save=str(png))
    plt.close("all")
    assert png.stat().st_size > 0

"""`stflow predict-slide`: a real Aperio slide end to end into an h5ad scanpy draws, flow-sample
uncertainty, and bad input refused with a message and no output that looks finished."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import anndata as ad
import matplotlib
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from slide_models import ENCODER, FAST_STFLOW, GENES, deployable_model, grid_slide
from slides import aperio_slide, tissue_like

from stflow.cli import main
from stflow.deploy.predict_slide import DeployedModel, SlideOptions, predict_slides
from stflow.errors import StflowError
from stflow.models.registry import build_estimator

matplotlib.use("Agg")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return deployable_model(tmp_path_factory.mktemp("model") / "final")


@pytest.fixture(scope="module")
def aperio_run(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("slides")
    results = predict_slides([aperio_slide()], model_dir, out_dir=out,
                             options=SlideOptions(n_samples=4, device="cpu"))
    return results[0], out


def finished_outputs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.slow
def test_the_aperio_slide_is_predicted_on_virtual_spots_over_its_tissue(aperio_run):
    result, out = aperio_run
    adata = ad.read_h5ad(result.h5ad)
    assert list(adata.var_names) == GENES
    assert adata.n_obs == result.n_spots > 5
    assert adata.X.dtype == np.float32 and np.isfinite(adata.X).all()
    std = adata.layers["sample_std"]
    assert std.shape == adata.X.shape and (std >= 0).all() and (std > 0).any()
    lower, upper = adata.layers["lower"], adata.layers["upper"]
    assert np.isfinite(lower).all() and np.isfinite(upper).all()
    assert (lower <= adata.X).all() and (adata.X <= upper).all() and (upper > lower).any()
    xy = adata.obsm["spatial"]  # level-0 pixels of the 2220 x 2967 slide at 0.499 µm/px
    assert ((xy >= 0) & (xy < [2220, 2967])).all()
    np.testing.assert_allclose(adata.obsm["spatial_um"], xy * 0.499)
    np.testing.assert_allclose(np.diff(np.unique(xy[:, 0])), 200 / 0.499)  # training pitch
    assert (adata.obs["tissue_fraction"] >= 0.5).all()
    info = adata.uns["stflow"]
    assert info["encoder"] == ENCODER and info["model"] == "stflow"
    assert (info["kind"], info["sample"], info["X"], info["seed"], info["fold"]) == (
        "slide_prediction", "cmu_small_region", "log1p of raw counts (predicted mean)", 0,
        "final")
    assert len(info["weights_sha256"]) == 64 and info["version"]
    assert adata.uns["log1p"] == {"base": None}
    graph = adata.uns["spatial_neighbors"]  # the kNN graph the model read, as squidpy's
    assert graph["params"]["n_neighbors"] == info["graph_k"]
    connectivities = adata.obsp[graph["connectivities_key"]]
    assert (np.asarray(connectivities.sum(1)).ravel() == info["graph_k"]).all()
    assert adata.obsp[graph["distances_key"]].max() >= 200 * 0.99  # µm: the 200 µm pitch
    assert (info["mpp"], info["mpp_source"]) == (0.499, "slide file")
    assert info["n_samples"] == 4 and "4 independent flow samples" in info["sample_spread"]
    assert "uncalibrated" in info["sample_spread"]
    intervals = info["intervals"]
    # 36 validation spots: the difficulty chosen on 18, the quantiles set on the other 18
    assert intervals["level"] == 0.9 and intervals["n_calibration_spots"] == 18
    assert intervals["calibration"] == "within"  # one training patient: and it says so
    assert "not promised for a new patient" in intervals["calibrated_for"]
    assert intervals["method"].startswith("normalised split-conformal")
    assert adata.varm["conformal_quantile"].shape == (len(GENES), 4)
    assert adata.obs["shifted"].dtype == bool and (adata.obs["shift_score"] > 0).all()
    assert intervals["share_shifted"] == pytest.approx(adata.obs["shifted"].mean())
    assert {"tissue", "patches_and_embedding", "graph", "sampling"} <= set(info["seconds"])
    assert sorted(p.name for p in result.maps.iterdir()) == ["ERBB2.png", "GATA3.png"]
    assert finished_outputs(out) == ["cmu_small_region.h5ad", "cmu_small_region.h5ad.sha256",
                                     "cmu_small_region_maps", "cmu_small_region_maps.sha256"]


@pytest.mark.slow
def test_the_h5ad_has_scanpys_spatial_layout_and_sc_pl_spatial_draws_it(aperio_run):
    import scanpy as sc

    adata = ad.read_h5ad(aperio_run[0].h5ad)
    library = adata.uns["spatial"]["cmu_small_region"]
    hires = library["images"]["hires"]
    factors = library["scalefactors"]
    assert hires.ndim == 3 and max(hires.shape[:2]) <= 2048
    assert hires.shape[1] == pytest.approx(2220 * factors["tissue_hires_scalef"], abs=1)
    assert factors["spot_diameter_fullres"] == pytest.approx(100 / 0.499)
    axes = sc.pl.spatial(adata, color="ERBB2", show=False)
    ax = axes[0] if isinstance(axes, list) else axes
    assert len(ax.images) == 1  # the H&E underneath
    assert sum(len(c.get_paths()) for c in ax.collections) == adata.n_obs  # one circle a spot
    matplotlib.pyplot.close("all")


@pytest.mark.slow
def test_given_spots_are_predicted_where_they_are(model_dir, tmp_path):
    spots = tmp_path / "spots.csv"
    pd.DataFrame({"x": [800.0, 1000.0, 1200.0, 1000.0, 900.0, 1100.0],
                  "y": [1500.0, 1500.0, 1500.0, 1700.0, 1300.0, 1300.0],
                  "barcode": list("abcdef")}).to_csv(spots, index=False)
    result = predict_slides([aperio_slide()], model_dir, out_dir=tmp_path / "out",
                            spots_file=spots,
                            options=SlideOptions(n_samples=2, device="cpu", genes=("ACTB",),
                                                 spatialdata=True))[0]
    adata = ad.read_h5ad(result.h5ad)
    assert list(adata.obs_names) == list("abcdef")
    import spatialdata  # --spatialdata: the same prediction, with the H&E, in microns

    sdata = spatialdata.read_zarr(result.spatialdata)
    assert result.spatialdata == tmp_path / "out" / "cmu_small_region.zarr"
    assert list(sdata.tables["table"].obs["spot_id"]) == list("abcdef")
    np.testing.assert_allclose(sdata.shapes["spots"].geometry.x, adata.obsm["spatial_um"][:, 0])
    np.testing.assert_allclose(adata.obsm["spatial"][:, 0], [800, 1000, 1200, 1000, 900, 1100])
    assert adata.uns["stflow"]["spots"] == "given"
    assert [p.name for p in result.maps.iterdir()] == ["ACTB.png"]


@pytest.mark.slow
def test_a_one_step_model_reports_no_spread_and_its_ensemble_the_networks_disagreement(
        tmp_path):
    for members, spread in ((1, False), (3, True)):
        model = DeployedModel(deployable_model(tmp_path / f"nofm{members}", "stflow_nofm",
                                               {**FAST_STFLOW, "ensemble": members}),
                              SlideOptions(device="cpu"))
        slide = grid_slide("new", model.deployment.feature_dim, np.random.default_rng(3))
        mean, std, meaning = model.draw(slide, 8, seed=0)
        assert np.isfinite(mean).all() and (std > 0).any() == spread
        assert ("3 one-step networks" in meaning) if spread else meaning.startswith("none")


def test_flow_samples_are_independent_and_their_first_is_what_predict_gives():
    rng = np.random.default_rng(1)
    slides = [grid_slide("A", 8, rng), grid_slide("B", 8, rng)]
    model = build_estimator("stflow", {"epochs": 1, "hidden": 16, "layers": 1, "heads": 1,
                                       "device": "cpu", "k": 4})
    model.fit(slides[:1], slides[1:])
    samples = model.sample_predictions(slides[1:], 5)[0]
    assert samples.shape == (5, 36, len(GENES)) and samples.dtype == np.float32
    assert samples.std(0).min() > 0  # every spot and gene varies between samples
    np.testing.assert_array_equal(samples, model.sample_predictions(slides[1:], 5)[0])
    # same generator, same output transform: sample 0 is predict's own (one-sample) output
    np.testing.assert_allclose(samples[0], model.predict(slides[1:])[0], rtol=1e-6)
    assert not np.allclose(samples, model.sample_predictions(slides[1:], 5, seed=9)[0])


@pytest.mark.slow
def test_a_deterministic_model_reports_zero_spread_and_says_why(tmp_path):
    folder = deployable_model(tmp_path / "ridge", model="ridge")
    result = predict_slides([aperio_slide()], folder, out_dir=tmp_path / "out",
                            options=SlideOptions(device="cpu"))[0]
    adata = ad.read_h5ad(result.h5ad)
    assert (adata.layers["sample_std"] == 0).all()
    assert "deterministic" in adata.uns["stflow"]["sample_spread"]
    # a deterministic model still gets calibrated intervals
    assert (adata.layers["upper"] > adata.layers["lower"]).all()


@pytest.mark.slow
def test_a_model_saved_before_calibration_still_predicts_and_says_it_has_no_intervals(
        tmp_path, caplog):
    folder = deployable_model(tmp_path / "old", model="ridge", calibrated=False)
    result = predict_slides([aperio_slide()], folder, out_dir=tmp_path / "out",
                            options=SlideOptions(device="cpu"))[0]
    adata = ad.read_h5ad(result.h5ad)
    assert np.isfinite(adata.X).all() and "lower" not in adata.layers
    assert adata.uns["stflow"]["intervals"]["method"] == "none"
    assert "has no interval calibration" in caplog.text and "re-run the train stage" in caplog.text


def test_a_level_outside_zero_one_is_refused_before_any_output(model_dir, tmp_path, capsys):
    message = refuse(capsys, tmp_path / "out", str(aperio_slide()), "--model-dir", str(model_dir),
                     "--level", "1.5")
    assert "--level: 1.5 is not a coverage level in (0, 1)" in message
    assert finished_outputs(tmp_path / "out") == []


# --- bad input: refused, named, and no output that looks finished ------------------------

def refuse(capsys, out: Path, *args: str) -> str:
    code = main(["predict-slide", *args, "--out", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and "Fix:" in err
    assert not [p for p in finished_outputs(out) if not p.startswith(".")], finished_outputs(out)
    assert not list(out.glob(".*tmp-*")) if out.exists() else True
    return err


def test_a_slide_without_tissue_is_refused(model_dir, tmp_path, capsys):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (2000, 1500), (246, 246, 244)).save(blank)
    err = refuse(capsys, tmp_path / "out", str(blank), "--model-dir", str(model_dir),
                 "--um-per-px", "0.5")
    assert "blank.png" in err and "no tissue was detected" in err


def test_an_unreadable_file_is_refused(model_dir, tmp_path, capsys):
    broken = tmp_path / "broken.svs"
    broken.write_bytes(b"not a slide at all" * 100)
    err = refuse(capsys, tmp_path / "out", str(broken), "--model-dir", str(model_dir))
    assert "broken.svs" in err and "neither a whole-slide image" in err
    err = refuse(capsys, tmp_path / "out", str(broken), "--model-dir", str(model_dir),
                 "--um-per-px", "0.5")
    assert "broken.svs" in err and "cannot decode this image" in err


def test_a_plain_image_without_its_scale_is_refused(model_dir, tmp_path, capsys):
    image = tmp_path / "he.jpg"
    Image.fromarray(tissue_like(800, 900)).save(image)
    err = refuse(capsys, tmp_path / "out", str(image), "--model-dir", str(model_dir))
    assert "he.jpg" in err and "plain image" in err and "--um-per-px" in err


def broken_copy(model_dir: Path, tmp_path: Path, change) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    change(copy)
    return copy


def test_a_model_folder_from_an_older_version_or_incomplete_is_refused(model_dir, tmp_path,
                                                                       capsys):
    slide = str(aperio_slide())
    old = broken_copy(model_dir, tmp_path / "a", lambda d: (d / "deploy.json").unlink())
    err = refuse(capsys, tmp_path / "out", slide, "--model-dir", str(old))
    assert "has no deploy.json" in err and "not written by `stflow train`" in err
    assert "re-run" in err

    def future(d: Path) -> None:
        record = json.loads((d / "deploy.json").read_text())
        (d / "deploy.json").write_text(json.dumps({**record, "version": 99}))

    err = refuse(capsys, tmp_path / "out", slide, "--model-dir",
                 str(broken_copy(model_dir, tmp_path / "b", future)))
    assert "format version 99" in err
    lost = broken_copy(model_dir, tmp_path / "c", lambda d: (d / "model.pt").unlink())
    err = refuse(capsys, tmp_path / "out", slide, "--model-dir", str(lost))
    assert "lacks model.pt" in err
    err = refuse(capsys, tmp_path / "out", slide, "--model-dir", str(tmp_path / "nowhere"))
    assert "model folder does not exist" in err


def test_other_encoder_weights_or_another_encoder_are_refused(model_dir, tmp_path, capsys):
    def other_weights(d: Path) -> None:
        record = json.loads((d / "deploy.json").read_text())
        (d / "deploy.json").write_text(json.dumps({**record, "weights_sha256": "0" * 64}))

    err = refuse(capsys, tmp_path / "out", str(aperio_slide()), "--model-dir",
                 str(broken_copy(model_dir, tmp_path / "a", other_weights)))
    assert "are not the ones the model was trained with" in err
    err = refuse(capsys, tmp_path / "out", str(aperio_slide()), "--model-dir", str(model_dir),
                 "--encoder", "uni")
    assert "was trained on 'efficientnet_lite0' features, not on 'uni'" in err


@pytest.mark.slow
def test_an_encoder_whose_weights_are_not_available_offline_is_refused(model_dir, tmp_path):
    def gated(d: Path) -> None:
        record = json.loads((d / "deploy.json").read_text())
        (d / "deploy.json").write_text(json.dumps({**record, "encoder": "uni"}))

    folder = broken_copy(model_dir, tmp_path / "a", gated)
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "stflow", "predict-slide",
                             str(aperio_slide()), "--model-dir", str(folder), "--out", str(out)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "encoder 'uni': cannot load weights" in result.stderr
    assert "--weights" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


@pytest.mark.slow
def test_a_failure_while_sampling_leaves_nothing_that_looks_finished(model_dir, tmp_path,
                                                                      monkeypatch):
    def boom(self, *args, **kwargs):
        raise StflowError("sampling failed")

    monkeypatch.setattr(DeployedModel, "draw", boom)
    out = tmp_path / "out"
    with pytest.raises(StflowError, match="sampling failed"):
        predict_slides([aperio_slide()], model_dir, out_dir=out,
                       options=SlideOptions(device="cpu"))
    assert finished_outputs(out) == []

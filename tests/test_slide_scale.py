"""`stflow predict-slide` at Visium HD scale: features given as a store, a spot cap checked
before any work, one sample held at a time, and outputs made and written a row chunk at a
time with the same numbers as in one piece."""

from __future__ import annotations

import argparse
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import zarr
from slide_models import ENCODER, GENES, deployable_model, grid_slide
from slides import aperio_slide

import stflow.deploy.predict_slide as predict_module
from stflow.choices import DEFAULT_MAX_SPOTS
from stflow.cli import build_parser, main
from stflow.data.encoders.builders import load_encoder
from stflow.deploy.predict_slide import DeployedModel, SlideOptions, predict_slides
from stflow.deploy.slide_maps import spot_raster
from stflow.deploy.spot_budget import lattice_estimate
from stflow.deploy.spot_grid import SpotLayout, virtual_spots
from stflow.inference.chunked_h5ad import write_h5ad_in_chunks
from stflow.intervals.calibration import apply_calibration
from stflow.models.registry import build_estimator
from stflow.models.stflow.moments import RunningMoments

MPP = 0.499  # the Aperio slide's µm per level-0 pixel (2220 x 2967 px)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return deployable_model(tmp_path_factory.mktemp("model") / "final")


def write_store(path: Path, coords_um: np.ndarray, features: np.ndarray, encoder: str = ENCODER,
                weights_sha256: str | None = None) -> Path:
    """A features store laid out as `stflow embed` writes one."""
    group = zarr.open_group(path, mode="w", zarr_format=3)
    group.create_array("features", data=features.astype(np.float32))
    barcode = group.create_array("barcode", shape=(len(features),), dtype=str)
    barcode[:] = np.array([f"spot{i}" for i in range(len(features))], dtype=object)
    group.create_array("coords_um", data=coords_um)
    group.attrs.update({"encoder": encoder, "feature_dim": features.shape[1],
                        "weights_sha256": weights_sha256 or load_encoder(ENCODER).weights_sha256,
                        "um_per_px": MPP, "complete": True})
    return path


def lattice_um(pitch_um: float) -> np.ndarray:
    """Centres in µm of a square lattice over the middle of the Aperio slide."""
    xs = np.arange(200.0, 900.0, pitch_um)
    ys = np.arange(200.0, 1300.0, pitch_um)
    return np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[Path, np.ndarray]:
    coords = lattice_um(20.0)  # 35 x 55 = 1925 spots
    features = np.random.default_rng(5).normal(size=(len(coords), 1280)).astype(np.float32)
    return write_store(tmp_path_factory.mktemp("store") / "S.zarr", coords, features), features


def test_running_moments_equal_the_stacked_mean_and_std_with_ddof_1():
    samples = np.random.default_rng(0).normal(3.0, 2.0, size=(6, 301, 7)).astype(np.float32)
    for chunk in (None, 50):
        moments = RunningMoments()
        for sample in samples:
            moments.add(sample, chunk)
        mean, std = moments.result()
        assert mean.dtype == std.dtype == np.float32
        np.testing.assert_allclose(mean, samples.mean(0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(std, samples.std(0, ddof=1), rtol=1e-5, atol=1e-5)
    one = RunningMoments()
    one.add(samples[0])
    mean, std = one.result()
    np.testing.assert_array_equal(mean, samples[0])
    assert (std == 0).all()


@pytest.mark.slow
def test_streamed_sample_moments_equal_the_stacked_samples_in_any_chunk_size():
    rng = np.random.default_rng(1)
    slides = [grid_slide("A", 8, rng), grid_slide("B", 8, rng, side=9)]
    model = build_estimator("stflow", {"epochs": 1, "hidden": 16, "layers": 1, "heads": 1,
                                       "device": "cpu", "k": 4})
    model.fit(slides[:1], slides[:1])
    samples = model.sample_predictions(slides[1:], 4, seed=3)[0]
    for chunk in (None, 10):
        mean, std = model.draw_moments(slides[1], 4, seed=3, chunk_spots=chunk)
        np.testing.assert_allclose(mean, samples.mean(0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(std, samples.std(0, ddof=1), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_features_given_in_chunks_give_the_one_piece_numbers_and_the_stacked_ones(
        model_dir, store, tmp_path):
    path, features = store
    runs = {}
    for chunk in (None, 300):
        result = predict_slides([aperio_slide()], model_dir, out_dir=tmp_path / str(chunk),
                                features=path, options=SlideOptions(
                                    n_samples=3, device="cpu", chunk_spots=chunk))[0]
        runs[chunk] = ad.read_h5ad(result.h5ad)
        assert sorted(p.name for p in result.maps.iterdir()) == ["ERBB2.png", "GATA3.png"]
    whole, chunked = runs[None], runs[300]
    assert whole.n_obs == len(features) and list(whole.var_names) == GENES
    assert list(whole.obs_names[:2]) == ["spot0", "spot1"]
    np.testing.assert_allclose(whole.obsm["spatial"], lattice_um(20.0) / MPP)
    assert whole.uns["stflow"]["spots"] == "given"
    assert whole.uns["stflow"]["features"] == str(path.resolve())
    for key in ("lower", "upper", "sample_std"):
        np.testing.assert_allclose(chunked.layers[key], whole.layers[key], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(chunked.X, whole.X, rtol=1e-5, atol=1e-5)
    for column in ("shift_score", "tissue_fraction"):
        np.testing.assert_allclose(chunked.obs[column], whole.obs[column], rtol=1e-5)
    assert (chunked.obs["shifted"] == whole.obs["shifted"]).all()
    np.testing.assert_allclose(chunked.varm["conformal_quantile"],
                               whole.varm["conformal_quantile"])
    assert chunked.uns["stflow"]["intervals"]["share_shifted"] == \
        whole.uns["stflow"]["intervals"]["share_shifted"]

    # the one-piece path of before: stacked samples, then the calibration over all spots
    model = DeployedModel(model_dir, SlideOptions(device="cpu"))
    slide = predict_module.Slide("S", features, lattice_um(20.0),
                                 np.asarray(whole.obs_names),
                                 neighbors=predict_module.knn_graph(lattice_um(20.0), 4)[0])
    samples = model.estimator.sample_predictions([slide], 3, seed=0)[0]
    mean = samples.mean(0)
    np.testing.assert_allclose(whole.X, mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(whole.layers["sample_std"], samples.std(0, ddof=1), rtol=1e-4,
                               atol=1e-5)
    intervals = apply_calibration(model.calibration, features, mean, 0.9)
    np.testing.assert_allclose(whole.layers["lower"], intervals.lower, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(whole.layers["upper"], intervals.upper, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(whole.obs["shift_score"], intervals.shift_score, rtol=1e-5)


def test_the_chunked_writer_writes_the_h5ad_anndata_writes(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(23, 5)).astype(np.float32)
    spread = rng.random((23, 5)).astype(np.float32)
    obs = pd.DataFrame({"score": rng.random(23).astype(np.float32), "flag": rng.random(23) > .5},
                       index=[f"s{i}" for i in range(23)])
    rest = ad.AnnData(obs=obs, var=pd.DataFrame(index=list("abcde")))
    rest.obsm["spatial"] = rng.random((23, 2))
    rest.uns["stflow"] = {"kind": "slide_prediction", "seconds": {"sampling": 1.5}}
    chunks = ((slice(i, i + 7), {"X": x[i:i + 7], "sample_std": spread[i:i + 7]})
              for i in range(0, 23, 7))
    path = write_h5ad_in_chunks(tmp_path / "p.h5ad", 23, chunks, lambda: rest)
    back = ad.read_h5ad(path)
    reference = rest.copy()
    reference.X, reference.layers["sample_std"] = x, spread
    reference.write_h5ad(tmp_path / "ref.h5ad", compression="gzip")
    expected = ad.read_h5ad(tmp_path / "ref.h5ad")
    np.testing.assert_array_equal(back.X, expected.X)
    np.testing.assert_array_equal(back.layers["sample_std"], expected.layers["sample_std"])
    pd.testing.assert_frame_equal(back.obs, expected.obs)
    np.testing.assert_array_equal(back.obsm["spatial"], expected.obsm["spatial"])
    assert back.uns["stflow"]["seconds"] == {"sampling": 1.5}
    assert list(back.var_names) == list("abcde") and back.X.dtype == np.float32
    with h5py.File(path) as file:
        assert file["X"].compression == "gzip"


def test_an_interrupted_write_leaves_no_file_that_looks_finished(tmp_path):
    def chunks():
        yield slice(0, 2), {"X": np.ones((2, 3), np.float32)}
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_h5ad_in_chunks(tmp_path / "p.h5ad", 4, chunks(), lambda: None)
    assert list(tmp_path.iterdir()) == []


def test_a_failure_while_writing_leaves_neither_h5ad_nor_maps(model_dir, store, tmp_path,
                                                               monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(predict_module, "prediction_anndata", broken)
    with pytest.raises(OSError, match="disk full"):
        predict_slides([aperio_slide()], model_dir, out_dir=tmp_path / "out",
                       features=store[0], options=SlideOptions(n_samples=1, device="cpu",
                                                               chunk_spots=500))
    assert list((tmp_path / "out").iterdir()) == []


def refuse(capsys, out: Path, *args: str) -> str:
    code = main(["predict-slide", str(aperio_slide()), *args, "--out", str(out), "--device",
                 "cpu"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and "Fix:" in err
    assert not out.exists() or not list(out.iterdir())
    return err


def test_too_many_lattice_spots_are_refused_before_the_lattice_or_embedding(
        model_dir, tmp_path, capsys, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("work done before the spot count was checked")

    monkeypatch.setattr(predict_module, "virtual_spots", never)
    monkeypatch.setattr(predict_module, "embed_windows", never)
    err = refuse(capsys, tmp_path / "out", "--model-dir", str(model_dir), "--max-spots", "100",
                 "--pitch-um", "10")
    assert "cmu_small_region.svs" in err and "more than --max-spots 100" in err
    count = int(err.split("a 10 µm square lattice over its tissue would have about ")[1]
                .split(" spots")[0].replace(",", ""))
    assert count > 1000 and "--pitch-um" in err


def test_too_many_given_spots_or_features_are_refused_before_the_model_is_loaded(
        model_dir, store, tmp_path, capsys, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("model loaded before the spot count was checked")

    monkeypatch.setattr(DeployedModel, "__init__", never)
    err = refuse(capsys, tmp_path / "out", "--model-dir", str(model_dir), "--features",
                 str(store[0]), "--max-spots", "1000")
    assert "S.zarr (spots of" in err and "cmu_small_region.svs" in err
    assert "holds 1,925 spots, more than --max-spots 1,000" in err and "fewer spots" in err
    spots = tmp_path / "spots.csv"
    pd.DataFrame({"x": np.arange(20.0) + 500, "y": np.full(20, 500.0)}).to_csv(spots)
    err = refuse(capsys, tmp_path / "out", "--model-dir", str(model_dir), "--spots",
                 str(spots), "--max-spots", "10")
    assert "spots.csv" in err and "gives 20 spots, more than --max-spots 10" in err


def test_features_of_another_encoder_or_other_weights_are_refused(model_dir, tmp_path, capsys):
    coords = lattice_um(100.0)
    features = np.zeros((len(coords), 1280), np.float32)
    other = write_store(tmp_path / "uni.zarr", coords, features, encoder="uni")
    err = refuse(capsys, tmp_path / "out", "--model-dir", str(model_dir), "--features",
                 str(other))
    assert "uni.zarr" in err and "holds 'uni' features" in err and "stflow embed" in err
    weights = write_store(tmp_path / "w.zarr", coords, features, weights_sha256="0" * 64)
    err = refuse(capsys, tmp_path / "out", "--model-dir", str(model_dir), "--features",
                 str(weights))
    assert "w.zarr" in err and "weights sha256 000000000000" in err


def test_the_lattice_estimate_is_close_to_the_lattice_it_saves_building():
    mask = np.zeros((200, 300), bool)
    yy, xx = np.mgrid[:200, :300]
    mask[(yy - 100) ** 2 / 80**2 + (xx - 150) ** 2 / 120**2 < 1] = True
    for layout in ("square", "hex"):
        spots = SpotLayout(16.0, layout)
        placed = virtual_spots(mask, 8.0, 2400, 1600, 0.5, spots, 16.0, 0.5)
        assert lattice_estimate(mask, 8.0, 0.5, spots) == pytest.approx(placed.n, rel=0.05)


def test_many_spots_are_drawn_as_a_raster_of_mean_values():
    xy = np.array([[0.5, 0.5], [1.5, 0.5], [0.2, 2.7]])
    raster, extent = spot_raster(xy, np.array([1.0, 3.0, 5.0]), (4, 4), 2.0)
    assert extent == (0.0, 4.0, 4.0, 0.0)
    np.testing.assert_array_equal(raster[0], [2.0, np.nan])  # spots 0 and 1 share a cell
    np.testing.assert_array_equal(raster[1], [5.0, np.nan])


def test_the_cli_and_the_library_default_to_the_same_spot_cap():
    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    cli_default = commands.choices["predict-slide"].get_default("max_spots")
    assert cli_default == DEFAULT_MAX_SPOTS == SlideOptions().max_spots == 3_000_000


@pytest.mark.slow
def test_features_standardised_in_place_give_the_same_moments():
    rng = np.random.default_rng(4)
    slide = grid_slide("A", 8, rng)
    model = build_estimator("stflow", {"epochs": 1, "hidden": 16, "layers": 1, "heads": 1,
                                       "device": "cpu", "k": 4})
    model.fit([slide], [slide])
    raw = slide.features.copy()
    expected = model.draw_moments(slide, 3, seed=1)
    np.testing.assert_array_equal(slide.features, raw)  # left alone unless given up
    got = model.draw_moments(slide, 3, seed=1, reuse_features=True)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    assert not np.array_equal(slide.features, raw)  # standardised where they were

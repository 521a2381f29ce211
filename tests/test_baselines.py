"""Spot-based baselines: HEST's PCA+ridge probe, random forest, MLP and a spatial ridge."""

from __future__ import annotations

import numpy as np
import pytest

from stflow.data.dataset import Slide
from stflow.data.graph import knn_graph
from stflow.data.holdout import holdout_masks
from stflow.errors import StflowError
from stflow.evaluation.hest_metric import mean_pearson
from stflow.models.baselines.arrays import train_val_arrays
from stflow.models.baselines.forest import RandomForest
from stflow.models.baselines.mlp import MLPRegressor
from stflow.models.baselines.ridge import PCARidge
from stflow.models.baselines.spatial_ridge import SpatialRidge
from stflow.models.registry import build_estimator
from stflow.models.stflow.trainer import SlideArrays, holdout_split

# name: (class, small parameters, test Pearson it must reach on linear synthetic data)
SMALL = {
    "ridge": (PCARidge, {"alpha": "validation", "n_components": 16}, 0.8),
    "ridge_hest": (PCARidge, {"alpha": "hest", "n_components": 16}, 0.8),
    "rf": (RandomForest, {"n_estimators": 10, "n_components": 16, "n_jobs": 1}, 0.3),
    "mlp": (MLPRegressor, {"hidden": 32, "max_epochs": 40}, 0.7),
    "spatial_ridge": (SpatialRidge, {"k": 4, "n_components": 16}, 0.5),
}


def grid_slide(name: str, rng: np.random.Generator, side: int = 12, dim: int = 24,
               genes: int = 5, weights: np.ndarray | None = None, noise: float = 0.3) -> Slide:
    """Spots on a square grid whose log1p targets are a linear function of the features."""
    xy = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2) * 100.0
    features = rng.normal(size=(len(xy), dim)).astype(np.float32)
    weights = rng.normal(size=(dim, genes)) if weights is None else weights
    targets = features @ weights + noise * rng.normal(size=(len(xy), genes))
    return Slide(sample=name, features=features, coords_um=xy,
                 barcodes=np.array([f"{name}_{i}" for i in range(len(xy))]),
                 targets=targets.astype(np.float32))


@pytest.fixture(scope="module")
def data() -> tuple[list[Slide], list[Slide], list[Slide]]:
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(24, 5))
    make = lambda name: grid_slide(name, rng, weights=weights)  # noqa: E731
    return [make("a"), make("b")], [make("v")], [make("t")]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_each_baseline_fits_predicts_and_round_trips(name, data, tmp_path):
    cls, params, floor = SMALL[name]
    train, val, test = data
    model = cls(seed=0, **params)
    history = model.fit(train, val)
    assert history and {"train_loss", "val_loss", "val_pearson"} <= set(history[-1])
    preds = model.predict(test)
    assert len(preds) == 1 and preds[0].shape == (test[0].n_spots, 5)
    assert preds[0].dtype == np.float32
    assert mean_pearson(test[0].targets, preds[0]) > floor

    model.save(tmp_path)
    assert not list(tmp_path.glob("*.pkl")) and not list(tmp_path.glob("*.joblib"))
    loaded = cls.load(tmp_path)
    np.testing.assert_allclose(loaded.predict(test)[0], preds[0], rtol=1e-6, atol=1e-6)


def test_registry_names_build_these_classes():
    assert isinstance(build_estimator("ridge_hest"), PCARidge)
    assert build_estimator("ridge_hest").settings.alpha == "hest"
    assert build_estimator("ridge").settings.alpha == "validation"
    assert isinstance(build_estimator("rf"), RandomForest)
    assert build_estimator("rf").settings.n_estimators == 70
    assert isinstance(build_estimator("mlp"), MLPRegressor)
    assert isinstance(build_estimator("spatial_ridge"), SpatialRidge)


def test_hest_alpha_is_hests_fixed_formula(data):
    train, val, _ = data
    model = PCARidge(alpha="hest", n_components=16)
    model.fit(train, val)
    assert model.chosen_alpha == pytest.approx(100 / (16 * 5))
    assert np.all(model.intercept == 0)  # HEST fits without intercept


def test_validation_alpha_beats_hest_alpha_on_few_noisy_spots():
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(200, 5)) * 0.1
    make = lambda name: grid_slide(name, rng, side=10, dim=200, weights=weights,  # noqa: E731
                                   noise=2.0)
    train, val, test = [make("a"), make("b")], [make("v")], [make("t")]
    hest = PCARidge(alpha="hest")
    tuned = PCARidge(alpha="validation")
    hest.fit(train, [])  # the same training spots; hest would also fit on val if given it
    tuned.fit(train, val)
    assert tuned.chosen_alpha > 100 * hest.chosen_alpha
    score = lambda m: mean_pearson(test[0].targets, m.predict(test)[0])  # noqa: E731
    assert score(tuned) > score(hest) + 0.05


def test_spatial_ridge_beats_ridge_when_targets_depend_on_neighbours():
    rng = np.random.default_rng(2)
    weights = rng.normal(size=(16, 4))
    slides = []
    for name in ("a", "b", "v", "t"):
        slide = grid_slide(name, rng, side=14, dim=16, genes=4, weights=weights)
        neighbors, _ = knn_graph(slide.coords_um, 4)
        slide.targets = (slide.features[neighbors].mean(axis=1) @ weights).astype(np.float32)
        slides.append(slide)
    train, val, test = slides[:2], [slides[2]], [slides[3]]
    plain, spatial = PCARidge(alpha="validation"), SpatialRidge(k=4)
    plain.fit(train, val)
    spatial.fit(train, val)
    score = lambda m: mean_pearson(test[0].targets, m.predict(test)[0])  # noqa: E731
    assert score(spatial) > 0.9 > score(plain) + 0.3


def test_spatial_ridge_uses_the_graph_stage_neighbours_when_present(data):
    train, _, _ = data
    slide = train[0]
    reversed_order = Slide(sample="r", features=slide.features, coords_um=slide.coords_um,
                           barcodes=slide.barcodes, targets=slide.targets,
                           neighbors=np.roll(np.arange(slide.n_spots), 1)[:, None])
    feats = SpatialRidge(k=8)._features(reversed_order)
    np.testing.assert_allclose(feats[1, 24:], slide.features[0])


def test_without_validation_slides_a_contiguous_fifth_is_held_out(data):
    train, _, _ = data
    masks = holdout_masks([s.coords_um for s in train], [s.sample for s in train], 0.2, seed=3)
    for slide, held in zip(train, masks, strict=True):  # a fifth of every slide
        assert int(held.sum()) == round(0.2 * slide.n_spots)
        coords = slide.coords_um
        centre = coords[held].mean(axis=0)
        radius = np.linalg.norm(coords[held] - centre, axis=1).max()
        outside = np.linalg.norm(coords[~held] - centre, axis=1)
        assert (outside > 0.5 * radius).all()  # a compact disc, not scattered spots
    history = PCARidge(alpha="validation", n_components=16).fit(train, [])
    assert np.isfinite(history[0]["val_pearson"])


def test_baselines_hold_out_the_same_spots_as_the_stflow_trainer(data):
    train, _, _ = data
    slide = train[0]
    _, _, x_va, y_va = train_val_arrays([slide.features], [slide.targets], [slide.coords_um],
                                        [slide.sample], [], [], seed=5)
    rng = np.random.default_rng(5)  # the trainer seeds its hold-out with the model seed
    arrays = SlideArrays(slide.sample, slide.features, slide.coords_um, slide.targets)
    _, stflow_val = holdout_split(arrays, 0.2, rng, 8)
    assert np.array_equal(x_va, stflow_val.features)
    assert np.array_equal(y_va, stflow_val.targets)


@pytest.mark.parametrize("name", ["ridge_hest", "rf"])
def test_models_without_selection_fit_on_train_and_val(name, data):
    """HEST-bench fits these on every non-test sample: the val slides are training data."""
    cls, params, _ = SMALL[name]
    train, val, _ = data
    with_val, pooled = cls(seed=0, **params), cls(seed=0, **params)
    history = with_val.fit(train, val)
    pooled.fit(train + val, [])
    np.testing.assert_allclose(with_val.predict(val)[0], pooled.predict(val)[0], atol=1e-6)
    assert np.isnan(history[0]["val_pearson"])  # val was trained on: no validation score


def test_tuned_models_do_not_train_on_val(data):
    train, val, _ = data
    tuned = PCARidge(alpha="validation", n_components=16)
    tuned.fit(train, val)
    refit = PCARidge(alpha=tuned.chosen_alpha, n_components=16)  # fixed alpha, train only
    refit.fit(train, [])
    np.testing.assert_allclose(tuned.predict(val)[0], refit.predict(val)[0], atol=1e-6)


def test_tampered_forest_file_is_refused(data, tmp_path):
    train, val, _ = data
    model = RandomForest(n_estimators=3, n_components=8, n_jobs=1)
    model.fit(train, val)
    model.save(tmp_path)
    blob = bytearray((tmp_path / "forest.npz").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (tmp_path / "forest.npz").write_bytes(bytes(blob))
    with pytest.raises(StflowError, match="sha256"):
        RandomForest.load(tmp_path)


def test_bad_parameters_and_untrained_models_are_refused(data):
    with pytest.raises(StflowError, match="alpha"):
        PCARidge(alpha="best")
    with pytest.raises(StflowError, match="before fit"):
        PCARidge().predict(data[2])
    with pytest.raises(StflowError, match="no targets"):
        test = data[2][0]
        PCARidge().fit([Slide(test.sample, test.features, test.coords_um, test.barcodes)], [])

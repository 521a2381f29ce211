"""Flow matching (Algorithms 1 and 2), the trainer and the STFlow estimator."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from grid_slides import grid_slide

from stflow.data.dataset import Slide
from stflow.device import resolve_device
from stflow.errors import StflowError
from stflow.evaluation.hest_metric import mean_pearson
from stflow.models.registry import build_estimator
from stflow.models.stflow.estimator import STFlowEstimator
from stflow.models.stflow.flow import draw, flow_matching_loss, masked_mse
from stflow.models.stflow.networks.geometry import prepare_geometry
from stflow.models.stflow.priors import make_prior
from stflow.models.stflow.settings import STFlowSettings
from stflow.models.stflow.trainer import (
    SlideArrays,
    correction_gate,
    holdout_split,
    random_region,
)

SMALL = dict(hidden=16, layers=1, heads=2, dropout=0.0, regions_per_slide=4,
             regions_per_step=2, device="cpu", lr=5e-3)


class Recorder:
    """A stub denoiser that returns a fixed Ŷ and records what it was given."""

    def __init__(self, y_hat: torch.Tensor) -> None:
        self.y_hat, self.calls = y_hat, []

    def __call__(self, features, y_t, t, geometry, chunk_size=None):
        self.calls.append((y_t.clone(), t.clone()))
        return self.y_hat.expand_as(y_t)


def _geometry(n: int = 12, batch: int = 1):
    coords = np.random.default_rng(0).uniform(0, 500, size=(batch, n, 2))
    neighbors = np.stack([np.roll(np.arange(n), -s)[:, None] for s in (1, 2)], -1)
    return prepare_geometry(coords, np.broadcast_to(neighbors[..., 0], (batch, n, 2)).copy())


def test_sampler_follows_algorithm_2():
    y_hat = torch.full((1, 12, 3), 2.0)
    stub = Recorder(y_hat)
    prior = make_prior("gaussian")
    out = draw(stub, torch.zeros(1, 12, 4), _geometry(), prior, 3, steps=5,
                 generator=torch.Generator().manual_seed(3))
    y0 = prior.draw(12, 3, torch.Generator().manual_seed(3)).reshape(1, 12, 3)
    assert [round(float(t), 6) for _, t in stub.calls] == [0.0, 0.2, 0.4, 0.6, 0.8]
    for y_t, t in stub.calls:  # Euler steps toward a fixed Ŷ trace the straight path
        assert torch.allclose(y_t, (1 - t) * y0 + t * y_hat, atol=1e-5)
    assert torch.equal(out, y_hat)


def test_sampler_without_flow_matching_is_one_step_from_zero():
    stub = Recorder(torch.ones(1, 12, 3))
    draw(stub, torch.zeros(1, 12, 4), _geometry(), make_prior("zinb"), 3,
           flow_matching=False)
    (y_t, t), = stub.calls
    assert torch.count_nonzero(y_t) == 0 and float(t) == 0.0


def test_training_loss_interpolates_prior_and_truth_and_masks_padding():
    targets = torch.rand(2, 12, 3)
    stub = Recorder(torch.zeros(1, 1, 3))
    geometry = _geometry(batch=2)
    prior = make_prior("zinb")
    loss = flow_matching_loss(stub, torch.zeros(2, 12, 4), targets, geometry, prior,
                              torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)
    y0 = prior.draw(24, 3, gen).reshape(2, 12, 3)
    t = torch.rand(2, generator=gen)
    y_t, t_seen = stub.calls[0]
    assert torch.equal(t_seen, t)
    assert torch.allclose(y_t, t[:, None, None] * targets + (1 - t[:, None, None]) * y0)
    assert float(loss) == pytest.approx(float((targets**2).mean()), rel=1e-6)
    mask = torch.ones(1, 4, dtype=torch.bool)
    mask[0, 3] = False
    pred = torch.tensor([[[1.0], [1.0], [1.0], [100.0]]])
    assert float(masked_mse(pred, torch.zeros(1, 4, 1), mask)) == 1.0


def test_regions_are_contiguous_and_holdout_is_disjoint():
    grid = np.stack(np.meshgrid(np.arange(20), np.arange(10)), -1).reshape(-1, 2) * 100.0
    rng = np.random.default_rng(0)
    for _ in range(20):
        index = random_region(grid, rng, 8)
        assert len(index) >= 9 and len(index) == len(np.unique(index))
        outside = np.setdiff1d(np.arange(len(grid)), index)
        # contiguous: some spot of the region is at least as close to all of it as to the rest
        assert any(np.linalg.norm(grid[index] - grid[c], axis=1).max()
                   <= np.linalg.norm(grid[outside] - grid[c], axis=1).min(initial=np.inf)
                   for c in index)
    slide = SlideArrays("s", np.zeros((200, 3), np.float32), grid, np.zeros((200, 2)))
    train, val = holdout_split(slide, 0.2, rng, 8)
    assert len(val.coords_um) == 40 and len(train.coords_um) == 160
    assert not {tuple(c) for c in train.coords_um} & {tuple(c) for c in val.coords_um}


_slide = grid_slide


@pytest.fixture(scope="module")
def trained():
    train, val, test = [_slide("a", 1), _slide("b", 2)], [_slide("v", 3)], _slide("t", 4)
    estimator = STFlowEstimator(seed=7, epochs=8, patience=8, **SMALL)
    history = estimator.fit(train, val)
    return estimator, history, train, val, test


def test_training_reduces_the_loss_and_learns_the_signal(trained):
    estimator, history, *_, test = trained
    assert [set(row) for row in history] == [{"epoch", "train_loss", "val_loss",
                                              "val_pearson"}] * len(history)
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    (pred,) = estimator.predict([test])
    assert pred.shape == test.targets.shape and pred.dtype == np.float32
    assert mean_pearson(test.targets, pred) > 0.3


@pytest.mark.slow
def test_same_seed_gives_identical_predictions(trained):
    estimator, history, train, val, test = trained
    again = STFlowEstimator(seed=7, epochs=8, patience=8, **SMALL)
    assert again.fit(train, val) == history
    assert np.array_equal(again.predict([test])[0], estimator.predict([test])[0])


def test_save_load_round_trip_predicts_identically(trained, tmp_path):
    estimator, *_, test = trained
    estimator.save(tmp_path)
    assert {"model.pt", "config.json"} <= {p.name for p in tmp_path.iterdir()}
    loaded = STFlowEstimator.load(tmp_path)
    assert np.array_equal(loaded.predict([test])[0], estimator.predict([test])[0])


def test_device_is_chosen_at_load_time_not_saved(trained, tmp_path, monkeypatch, caplog):
    estimator, *_, test = trained
    estimator.save(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert "device" not in config["params"]
    # A model trained on a GPU predicts on a CPU-only node.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="stflow.device"):
        loaded = STFlowEstimator.load(tmp_path, device="cuda")
    assert loaded.device == torch.device("cpu") and "no CUDA GPU" in caplog.text
    assert np.array_equal(loaded.predict([test])[0], estimator.predict([test])[0])
    assert STFlowEstimator.load(tmp_path).device == torch.device("cpu")


def test_settings_of_another_version_are_refused_with_a_fix(trained, tmp_path):
    estimator, *_ = trained
    estimator.save(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["params"]["attention"] = "linear"  # a setting this version does not have
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(StflowError, match=r"config.json: its params do not fit.*re-run the train"):
        STFlowEstimator.load(tmp_path)


def test_weights_of_another_architecture_are_refused_with_a_fix(trained, tmp_path):
    estimator, *_ = trained
    estimator.save(tmp_path)
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    state["state_dict"] = {k: v for k, v in state["state_dict"].items()
                           if "edge_invariant" not in k}  # as saved before that layer existed
    torch.save(state, tmp_path / "model.pt")
    with pytest.raises(StflowError, match=r"model.pt: its weights do not fit.*re-run the train"):
        STFlowEstimator.load(tmp_path)


def test_device_names_resolve_or_are_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    for bad in ("gpu", "", "mps"):
        with pytest.raises(StflowError, match="Fix: use auto, cpu, cuda"):
            resolve_device(bad)
    with pytest.raises(StflowError, match="device"):
        STFlowEstimator(seed=0, device="tpu0")


@pytest.mark.parametrize("model", ["stflow_zinb_fitted", "stflow_nofm", "stflow_egnn"])
def test_registry_variants_train_without_validation_slides(model):
    estimator = build_estimator(model, dict(SMALL, epochs=2), seed=0)
    history = estimator.fit([_slide("a", 1)], [])
    assert len(history) == 2 and np.isfinite(history[-1]["train_loss"])
    assert estimator.predict([_slide("t", 4)])[0].shape == (100, 4)


def test_bad_inputs_are_refused_with_a_fix():
    good = _slide("a", 1)
    with pytest.raises(StflowError, match="NaN"):
        Slide("nan", np.full((20, 8), np.nan, np.float32), good.coords_um[:20],
              good.barcodes[:20])
    few = Slide("few", good.features[:5], good.coords_um[:5], good.barcodes[:5],
                good.targets[:5], good.counts[:5])
    estimator = STFlowEstimator(seed=0, epochs=1, **SMALL)
    with pytest.raises(StflowError, match="fewer than k"):
        estimator.fit([good, few], [])
    coords = good.coords_um.copy()
    coords[1] = coords[0]
    dup = Slide("dup", good.features, coords, good.barcodes, good.targets, good.counts)
    with pytest.raises(StflowError, match="duplicate"):
        estimator.fit([dup], [])
    unlabelled = Slide("u", good.features, good.coords_um, good.barcodes)
    with pytest.raises(StflowError, match="no expression targets"):
        estimator.fit([unlabelled], [])
    wrong_dim = Slide("w", good.features[:, :5], good.coords_um, good.barcodes, good.targets)
    with pytest.raises(StflowError, match="dimensions"):
        estimator.fit([good, wrong_dim], [])
    with pytest.raises(StflowError, match=r"unknown parameters \[.layerz.\]"):
        build_estimator("stflow", {"layerz": 3})


def test_standardised_targets_pca_features_skip_and_ema_round_trip(trained, tmp_path):
    """Per-gene standardised targets are undone at prediction; all of it saves and loads."""
    _, _, train, val, test = trained
    estimator = STFlowEstimator(seed=7, epochs=6, patience=6, target_scaling="standard",
                                feature_pca=4, spatial_skip=True, ema=0.9,
                                weight_decay=0.01, **SMALL)
    estimator.fit(train, val)
    pooled = np.concatenate([s.targets for s in train])
    assert np.allclose(estimator.target_mean, pooled.mean(0), atol=1e-5)
    assert estimator.feature_basis.shape == (8, 4)
    assert estimator.prior.shift is not None  # Y0 lives where the standardised targets live
    (pred,) = estimator.predict([test])
    # back in log1p units: per-gene levels match the data, not the standardised scale
    assert np.abs(pred.mean(0) - test.targets.mean(0)).max() < 0.5 * test.targets.std(0).max()
    assert mean_pearson(test.targets, pred) > 0.3
    estimator.save(tmp_path)
    loaded = STFlowEstimator.load(tmp_path)
    assert np.array_equal(loaded.predict([test])[0], pred)


def test_min_steps_per_epoch_tops_up_small_folds():
    slide = _slide("a", 1)
    steps = []
    estimator = STFlowEstimator(seed=0, epochs=1, min_steps_per_epoch=6, **SMALL)
    original = torch.optim.AdamW.step

    def counting(self, *args, **kwargs):
        steps.append(1)
        return original(self, *args, **kwargs)

    torch.optim.AdamW.step = counting
    try:
        estimator.fit([slide], [])
    finally:
        torch.optim.AdamW.step = original
    assert len(steps) == 6  # 4 regions per slide would give 2 steps of 2 regions


@pytest.mark.slow
def test_an_ensemble_averages_networks_of_consecutive_seeds_and_round_trips(trained, tmp_path):
    _, _, train, val, test = trained
    pair = STFlowEstimator(seed=7, epochs=3, patience=3, ensemble=2, **SMALL)
    history = pair.fit(train, val)
    assert len(pair.members) == 2 and pair.model is pair.members[0]
    assert {row.get("member", 0) for row in history} == {0, 1}
    alone = [STFlowEstimator(seed=s, epochs=3, patience=3, **SMALL) for s in (7, 8)]
    for estimator in alone:
        estimator.fit(train, val)
    for mine, theirs in zip(pair.members, [e.model for e in alone], strict=True):
        for a, b in zip(mine.state_dict().values(), theirs.state_dict().values(), strict=True):
            assert torch.equal(a, b)  # member i is the single model of seed + i
    (pred,) = pair.predict([test])
    pair.save(tmp_path)
    loaded = STFlowEstimator.load(tmp_path)
    assert len(loaded.members) == 2
    assert np.array_equal(loaded.predict([test])[0], pred)


class Zeros(torch.nn.Module):
    """A denoiser that predicts nothing: what is left of a prediction is the base's."""

    def forward(self, features, y_t, t, geometry, chunk_size=None):
        return torch.zeros_like(y_t)


def test_a_residual_base_is_a_validated_spatial_ridge_that_the_networks_correct(trained,
                                                                                tmp_path):
    _, _, train, val, test = trained
    estimator = STFlowEstimator(seed=7, epochs=3, patience=3, residual_base="spatial_ridge",
                                **SMALL)
    history = estimator.fit(train, val)
    assert estimator.base.chosen_alpha > 0  # chosen on the validation slides
    (pred,) = estimator.predict([test])
    (base,) = estimator.base.predict([test])
    assert not np.allclose(pred, base)  # the networks add their correction...
    estimator.save(tmp_path)
    loaded = STFlowEstimator.load(tmp_path)
    assert np.array_equal(loaded.predict([test])[0], pred)
    assert len(estimator.gates) == 1 and ((estimator.gates[0] >= 0)
                                          & (estimator.gates[0] <= 1)).all()
    np.testing.assert_array_equal(loaded.gates[0], estimator.gates[0])
    loaded.members = [Zeros()]  # ...on top of the base, in log1p units
    assert np.allclose(loaded.predict([test])[0], base, atol=1e-5)
    fixed = estimator.refit_params(history)
    assert fixed["base_alpha"] == estimator.base.chosen_alpha and fixed["val_fraction"] == 0
    refit = STFlowEstimator(seed=7, **{**SMALL, **fixed, "epochs": 2},
                            residual_base="spatial_ridge")
    refit.fit(train + val, [])
    assert refit.base.chosen_alpha == fixed["base_alpha"]  # nothing re-selected
    with pytest.raises(StflowError, match="residual_base='pca': 'pca' is not one of"):
        STFlowEstimator(residual_base="pca")


class FixedCorrection(torch.nn.Module):
    """A denoiser whose output (the correction of the base) is fixed in advance."""

    def __init__(self, correction: np.ndarray) -> None:
        super().__init__()
        self.correction = torch.from_numpy(correction)[None]

    def forward(self, features, y_t, t, geometry, chunk_size=None):
        return self.correction


def test_the_correction_is_kept_per_gene_where_it_helps_on_validation():
    rng = np.random.default_rng(0)
    coords = np.stack(np.meshgrid(np.arange(10), np.arange(10)), -1).reshape(-1, 2) * 100.0
    correction = rng.normal(size=(100, 4)).astype(np.float32)
    offset = rng.normal(size=(100, 4)).astype(np.float32)
    targets = offset + correction * np.array([1.0, 0.5, 0.0, -1.0], np.float32)
    val = [SlideArrays("v", rng.normal(size=(100, 3)).astype(np.float32), coords,
                       targets, offset=offset)]
    config = STFlowSettings(flow_matching=False, k=4)
    gate = correction_gate(FixedCorrection(correction), make_prior("zero"), val, 4, config,
                           torch.device("cpu"))
    np.testing.assert_allclose(gate, [1.0, 0.5, 0.0, 0.0], atol=1e-5)  # whole, half, none
    assert (correction_gate(FixedCorrection(correction), make_prior("zero"), [], 4, config,
                            torch.device("cpu")) == 1).all()  # nothing to judge by: kept


def test_min_region_fraction_sets_the_smallest_training_region():
    grid = np.stack(np.meshgrid(np.arange(20), np.arange(10)), -1).reshape(-1, 2) * 100.0
    rng = np.random.default_rng(0)
    sizes = [len(random_region(grid, rng, 8, min_fraction=0.5)) for _ in range(50)]
    assert min(sizes) >= 100 and max(sizes) <= 200
    assert len(random_region(grid, rng, 8, min_fraction=1.0)) == 200

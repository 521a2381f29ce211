"""Calibrated intervals and the shift flag, as small tested pieces: the conformal quantile,
coverage on exchangeable spots, a flag for spots unlike the training spots, and the
calibration a model folder keeps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stflow.errors import StflowError
from stflow.intervals.calibration import (
    Calibration,
    LevelCurve,
    apply_calibration,
    candidate_scales,
    choose_difficulty,
    load_calibration,
    save_calibration,
)
from stflow.intervals.conformal import (
    check_level,
    conformal_quantile,
    interval,
    nonconformity,
    weighted_conformal_quantile,
)
from stflow.intervals.shift import ShiftReference


def test_the_conformal_quantile_is_the_finite_sample_corrected_order_statistic():
    scores = np.arange(1, 10, dtype=float)[:, None]  # n = 9
    assert conformal_quantile(scores, 0.9)[0] == 9  # ⌈10 · 0.9⌉ = 9th smallest
    assert conformal_quantile(scores, 0.5)[0] == 5
    assert np.isinf(conformal_quantile(scores[:5], 0.9)[0])  # too few spots: unbounded


@pytest.mark.parametrize("level", [0.0, 1.0, 1.5, -0.1, "high", None])
def test_a_level_outside_zero_one_is_refused_by_name(level):
    with pytest.raises(StflowError, match=r"not a coverage level in \(0, 1\).*Fix"):
        check_level(level)


def test_normalised_intervals_cover_exchangeable_spots_at_the_nominal_rate():
    rng = np.random.default_rng(0)
    n_cal, n_test, genes = 2000, 20000, 5
    difficulty = rng.uniform(0.2, 3.0, size=n_cal + n_test)  # heteroscedastic noise
    # log1p-like: far enough above 0 that clipping the lower bound never matters here
    truth = 20 + rng.normal(size=(n_cal + n_test, genes)) * difficulty[:, None]
    prediction = np.full_like(truth, 20.0)
    cal, test = slice(0, n_cal), slice(n_cal, None)
    for scale, name in ((difficulty, "normalised"), (np.ones_like(difficulty), "plain")):
        q = conformal_quantile(nonconformity(truth[cal], prediction[cal], scale[cal]), 0.9)
        lower, upper = interval(prediction[test], scale[test], q)
        covered = (truth[test] >= lower) & (truth[test] <= upper)
        assert 0.88 <= covered.mean() <= 0.92, name
        if name == "normalised":
            normalised_width = float(np.mean(upper - lower))
    assert normalised_width < float(np.mean(upper - lower))  # the right difficulty is narrower


def test_the_difficulty_is_chosen_by_width_on_held_back_calibration_spots():
    rng = np.random.default_rng(1)
    shift = rng.uniform(0.5, 4.0, size=600)
    level = rng.uniform(0, 3, size=(600, 3))  # predicted log1p levels
    flat = LevelCurve.fit(level, level + rng.normal(size=(600, 3)))  # training: no trend
    truth = level + rng.normal(size=(600, 3)) * shift[:, None]
    chosen, rows = choose_difficulty(truth, level, candidate_scales(shift, flat, level), seed=0)
    assert chosen == "shift"  # the errors grow with the shift score
    # every candidate covers exchangeable held-back spots at the level: 1800 spot x gene
    # pairs of 300 spots per half, so a band of about two quantile-estimation sd
    assert [row["difficulty"] for row in rows] == ["constant", "shift", "level"]
    assert all(0.87 <= row["coverage"] <= 0.93 for row in rows), rows
    steep = LevelCurve.fit(level, level + rng.normal(size=(600, 3)) * level)
    truth = level + rng.normal(size=(600, 3)) * level
    chosen = choose_difficulty(truth, level, candidate_scales(shift, steep, level), seed=0)[0]
    assert chosen == "level"
    truth = level + rng.normal(size=(600, 3))
    chosen = choose_difficulty(truth, level, candidate_scales(shift, flat, level), seed=0)[0]
    assert chosen in {"constant", "level"}


def test_a_gene_constant_on_the_calibration_spots_does_not_decide_the_difficulty():
    rng = np.random.default_rng(6)
    shift = rng.uniform(0.5, 4.0, size=60)
    level = rng.uniform(0, 3, size=(60, 3))
    flat = LevelCurve.fit(level, level + rng.normal(size=(60, 3)))
    truth = level + rng.normal(size=(60, 3)) * shift[:, None]
    truth[:, 2] = 0.0  # silent on this small held-out region; predicted non-zero
    chosen, rows = choose_difficulty(truth, level, candidate_scales(shift, flat, level), seed=0)
    assert chosen == "shift" and all(np.isfinite(row["width_sd"]) for row in rows)
    assert max(row["width_sd"] for row in rows) < 100


def test_the_level_curve_follows_the_training_error_at_each_predicted_level():
    rng = np.random.default_rng(5)
    prediction = rng.uniform(0, 4, size=(4000, 2))
    truth = prediction + rng.normal(size=(4000, 2)) * (0.1 + prediction)
    curve = LevelCurve.fit(prediction, truth)
    expected = (0.1 + np.array([[0.5, 3.5]])) * np.sqrt(2 / np.pi)  # E|N(0, s²)| = s·√(2/π)
    np.testing.assert_allclose(curve(np.array([[0.5, 3.5]])), expected, rtol=0.15)
    assert (curve(np.zeros((1, 2))) > 0).all()


def test_the_shift_flag_marks_spots_unlike_the_training_spots():
    rng = np.random.default_rng(2)
    basis = rng.normal(size=(6, 40))
    train = rng.normal(size=(1500, 6)) @ basis + 0.1 * rng.normal(size=(1500, 40))
    same = rng.normal(size=(500, 6)) @ basis + 0.1 * rng.normal(size=(500, 40))
    unlike = rng.normal(size=(500, 6)) @ basis + rng.normal(size=(500, 40))
    reference = ShiftReference.fit(train, seed=0)
    reference.set_threshold(reference.score(same[:250]))
    assert np.mean(reference.score(same[250:]) > reference.threshold) < 0.15
    assert np.mean(reference.score(unlike) > reference.threshold) > 0.9


def _calibration(rng: np.random.Generator) -> Calibration:
    features = rng.normal(size=(200, 12))
    reference = ShiftReference.fit(features, seed=0)
    reference.set_threshold(reference.score(rng.normal(size=(50, 12))))
    level = rng.uniform(0, 2, size=(200, 4))
    curve = LevelCurve.fit(level, level + rng.normal(size=(200, 4)))
    return Calibration(np.abs(rng.normal(size=(50, 4))).astype(np.float32), "shift",
                       reference, 2.5, curve, "the validation samples ['V']", "the kept model",
                       [{"difficulty": "shift", "width_sd": 1.0, "coverage": 0.9}])


def test_applied_intervals_hold_the_prediction_and_widen_with_the_level():
    rng = np.random.default_rng(3)
    calibration = _calibration(rng)
    prediction = rng.normal(size=(30, 4))
    narrow = apply_calibration(calibration, rng.normal(size=(30, 12)), prediction, 0.8)
    assert (narrow.lower <= prediction + 1e-6).all() and (prediction - 1e-6 <= narrow.upper).all()
    assert narrow.levels == (0.5, 0.8, 0.9, 0.95) and narrow.quantiles.shape == (4, 4)
    assert (np.diff(narrow.quantiles, axis=1) >= 0).all()
    assert narrow.info["level"] == 0.8 and narrow.info["n_calibration_spots"] == 50
    odd = apply_calibration(calibration, rng.normal(size=(30, 12)), prediction, 0.85)
    assert odd.levels == (0.5, 0.8, 0.85, 0.9, 0.95)


def test_a_calibration_survives_its_folder_and_a_damaged_one_is_refused(tmp_path):
    rng = np.random.default_rng(4)
    calibration = _calibration(rng)
    assert load_calibration(tmp_path) is None  # a folder saved before calibration existed
    save_calibration(calibration, tmp_path)
    loaded = load_calibration(tmp_path)
    features = rng.normal(size=(10, 12))
    assert np.array_equal(loaded.scores, calibration.scores)
    assert np.allclose(loaded.shift.score(features), calibration.shift.score(features))
    levels = rng.uniform(0, 2, size=(10, 4))
    assert np.allclose(loaded.level_curve(levels), calibration.level_curve(levels))
    assert loaded.shift.threshold == calibration.shift.threshold
    (tmp_path / "calibration.npz").write_bytes(b"not an npz")
    with pytest.raises(StflowError, match="calibration is incomplete or damaged.*Fix: re-run"):
        load_calibration(tmp_path)


# --- calibrated for whom -------------------------------------------------------------------

def test_weighted_quantile_with_equal_weights_is_the_order_statistic_and_weighs_patients_alike():
    rng = np.random.default_rng(5)
    scores = rng.random((99, 3))
    for level in (0.5, 0.8, 0.9, 0.95):
        assert np.array_equal(weighted_conformal_quantile(scores, np.ones(99), level),
                              conformal_quantile(scores, level))
    # 950 spots of an easy patient, 50 of a hard one: per spot the easy one decides; with
    # each patient weighing alike the 90 % quantile lies in the hard patient's scores
    pooled = np.concatenate([np.full(950, 0.1), np.linspace(1, 2, 50)])[:, None]
    weights = np.concatenate([np.full(950, 1 / 950), np.full(50, 1 / 50)])
    assert conformal_quantile(pooled, 0.9)[0] == pytest.approx(0.1)
    assert weighted_conformal_quantile(pooled, weights, 0.9)[0] > 1.5
    missing = scores.copy()
    missing[:50, 0] = np.nan  # a gene that fold did not predict: its spots do not count
    assert weighted_conformal_quantile(missing, None, 0.9)[0] == \
        conformal_quantile(scores[50:, :1], 0.9)[0]


def test_lower_bounds_are_clipped_at_zero_and_never_above_the_prediction():
    prediction = np.array([[0.2, 3.0, -0.1]])
    lower, upper = interval(prediction, np.ones(1), np.array([1.0, 1.0, 1.0]))
    assert lower[0].tolist() == pytest.approx([0.0, 2.0, -0.1])
    assert upper[0].tolist() == pytest.approx([1.2, 4.0, 0.9])


def test_a_folder_says_whom_its_intervals_were_calibrated_for(tmp_path):
    rng = np.random.default_rng(6)
    calibration = _calibration(rng)
    calibration.scope, calibration.weights = "patient", rng.uniform(0.5, 1, 50)
    save_calibration(calibration, tmp_path)
    loaded = load_calibration(tmp_path)
    assert loaded.scope == "patient" and np.allclose(loaded.weights, calibration.weights)
    info = apply_calibration(loaded, rng.normal(size=(5, 12)), rng.uniform(size=(5, 4))).info
    assert info["calibration"] == "patient" and "new patient" in info["calibrated_for"]
    record = json.loads((tmp_path / "calibration.json").read_text())
    del record["calibration"]  # a record that does not say whom it was calibrated for
    (tmp_path / "calibration.json").write_text(json.dumps(record))
    with pytest.raises(StflowError, match=r"calibration is incomplete or damaged.*'calibration'"):
        load_calibration(tmp_path)


def _fold_run(root, name, patient_samples, rng, calibration):
    """A fold's prediction folder (truth, prediction, shift scores) and model folder."""
    import anndata as ad
    import pandas as pd

    model_dir, prediction_dir = root / f"model_{name}", root / f"pred_{name}"
    model_dir.mkdir()
    prediction_dir.mkdir()
    save_calibration(calibration, model_dir)
    for sample, (n, spread) in patient_samples.items():
        truth = rng.uniform(1, 3, (n, 4))
        adata = ad.AnnData(truth + rng.normal(scale=spread, size=(n, 4)),
                           var=pd.DataFrame(index=[f"g{i}" for i in range(4)]))
        adata.layers["truth"] = truth
        adata.obs["shift_score"] = rng.uniform(1, 3, n)
        adata.uns["sample"] = sample
        adata.write_h5ad(prediction_dir / f"{sample}.h5ad")
    return prediction_dir, model_dir


def test_the_final_model_is_calibrated_on_out_of_fold_patients_each_weighing_alike(tmp_path):
    from stflow.intervals.across_patients import calibrate_across_patients

    rng = np.random.default_rng(7)
    final = _calibration(rng)
    final.difficulty = "constant"
    runs = [_fold_run(tmp_path, "0", {"A1": (300, 0.1)}, rng, _calibration(rng)),
            _fold_run(tmp_path, "1", {"B1": (20, 1.0), "B2": (20, 1.0)}, rng, _calibration(rng))]
    patients = {"A1": "A", "B1": "B", "B2": "B"}
    across = calibrate_across_patients(final, runs, patients, ["g0", "g1", "g2", "g3"])
    assert across.scope == "patient" and across.n_spots == 340
    assert "['A', 'B']" in across.spots
    weights = across.weights / across.weights.sum()
    assert weights[:300].sum() == pytest.approx(0.5) and weights[300:].sum() == pytest.approx(0.5)
    q90 = across.quantiles((0.9,))[:, 0]
    assert (q90 > 1.0).all()  # set by patient B's misses, though A has most spots
    alone = calibrate_across_patients(final, runs[:1], patients, ["g0", "g1", "g2", "g3"])
    assert alone is final  # one patient out of fold: stays within, and logs it


def test_the_shift_flag_marks_at_most_five_percent_of_exchangeable_spots_whatever_n():
    rng = np.random.default_rng(8)
    reference = ShiftReference.fit(rng.normal(size=(100, 8)), seed=0)
    for n in (20, 40, 200):
        flagged = []
        for _ in range(300):
            reference.set_threshold(rng.random(n))
            flagged.append(np.mean(rng.random(2000) > reference.threshold))
        assert 0.03 <= np.mean(flagged) <= 0.05 + 0.005, n  # exact order statistic: <= 5 %


def test_a_calibration_too_small_to_split_keeps_the_constant_difficulty_quietly():
    import warnings

    curve = LevelCurve.fit(np.ones((5, 2)), np.ones((5, 2)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Mean of empty slice"
        chosen, rows = choose_difficulty(np.ones((3, 2)), np.ones((3, 2)),
                                         candidate_scales(np.ones(3), curve, np.ones((3, 2))),
                                         seed=0)
    assert (chosen, rows) == ("constant", [])

"""Scoring a slide prediction against hidden truth: spot matching and spread-vs-error rank."""

from __future__ import annotations

import numpy as np

from stflow.deploy.uncertainty import match_spots, spread_error_spearman, uncertainty_report


def test_spots_are_matched_one_to_one_within_the_distance():
    measured = np.array([[0.0, 0.0], [200.0, 0.0], [400.0, 0.0]])
    predicted = np.array([[10.0, 5.0], [205.0, 0.0], [215.0, 0.0], [900.0, 0.0]])
    ours, theirs = match_spots(predicted, measured, max_distance=50.0)
    # (215, 0) loses (200, 0) to the nearer (205, 0); (900, 0) and (400, 0) are too far apart
    assert sorted(zip(ours.tolist(), theirs.tolist(), strict=True)) == [(0, 0), (1, 1)]


def test_a_spread_that_tracks_the_error_ranks_it_and_a_constant_one_cannot():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(300, 3))
    std = rng.uniform(0.1, 1.0, size=(300, 3))
    mean = truth + rng.normal(size=(300, 3)) * std  # errors scale with the spread
    rho = spread_error_spearman(truth, mean, std)
    assert (rho > 0.3).all()
    shuffled = spread_error_spearman(truth, mean, rng.permuted(std, axis=0))
    assert (np.abs(shuffled) < 0.15).all()
    assert np.isnan(spread_error_spearman(truth, mean, np.zeros_like(std))).all()
    report = uncertainty_report(truth, mean, std)
    assert report["n_spots"] == 300 and report["spread_error_spearman_positive"] == 1.0
    assert report["spread_error_spearman_median"] > 0.3 and report["pearson_mean"] > 0.5

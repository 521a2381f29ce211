"""Scoring slide predictions against measured spots: is the spread a useful uncertainty?

Used where the truth of a "new" slide is known but was hidden from the prediction (a fold's
test sections): virtual spots are matched to measured ones by position, the mean is scored
with the HEST metric, and the spread is scored by how well it ranks the absolute errors.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree
from scipy.stats import spearmanr

from stflow.metrics import pearson_per_gene


def match_spots(predicted_xy: np.ndarray, measured_xy: np.ndarray, max_distance: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (predicted index, measured index) of mutual nearest spots within ``max_distance``.

    Mutual nearest neighbours make the pairing one-to-one; the KD-trees keep it O(N log N).
    """
    predicted = np.asarray(predicted_xy, np.float64)
    measured = np.asarray(measured_xy, np.float64)
    dist, nearest_measured = cKDTree(measured).query(predicted)
    _, nearest_predicted = cKDTree(predicted).query(measured)
    index = np.arange(len(predicted))
    mutual = (nearest_predicted[nearest_measured] == index) & (dist <= max_distance)
    return index[mutual], nearest_measured[mutual]


def spread_error_spearman(truth: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Per gene, Spearman's rho between the predicted spread and the absolute error.

    NaN for a gene whose spread or error is constant (e.g. a deterministic model).
    """
    error = np.abs(np.asarray(truth, np.float64) - np.asarray(mean, np.float64))
    std = np.asarray(std, np.float64)
    rho = np.full(error.shape[1], np.nan)
    for g in range(error.shape[1]):
        if np.ptp(std[:, g]) > 0 and np.ptp(error[:, g]) > 0:
            rho[g] = spearmanr(std[:, g], error[:, g]).statistic
    return rho


def uncertainty_report(truth: np.ndarray, mean: np.ndarray, std: np.ndarray) -> dict[str, float]:
    """Mean per-gene Pearson of the mean, the median over genes of rho(spread, |error|) and
    the share of genes where it is positive, with the mean spread and mean absolute error."""
    pearson = pearson_per_gene(truth, mean)
    rho = spread_error_spearman(truth, mean, std)
    return {"n_spots": int(len(truth)),
            "spread_mean": float(np.mean(std)),
            "abs_error_mean": float(np.mean(np.abs(np.asarray(truth) - np.asarray(mean)))),
            "pearson_mean": float(np.nanmean(pearson)) if np.isfinite(pearson).any()
            else float("nan"),
            "spread_error_spearman_median": float(np.nanmedian(rho)) if np.isfinite(rho).any()
            else float("nan"),
            "spread_error_spearman_positive": float(np.mean(rho[np.isfinite(rho)] > 0))
            if np.isfinite(rho).any() else float("nan")}

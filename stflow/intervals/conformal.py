"""Normalised split-conformal intervals, per gene.

A calibration spot's score is ``|truth − prediction| / difficulty``; the interval of a new
spot is ``prediction ± q · difficulty`` with ``q`` the finite-sample-corrected quantile of the
scores (the ⌈(n+1)·level⌉-th smallest of n). If calibration and new spots are exchangeable,
at least ``level`` of new spots fall inside, for each gene. It is written here rather than
taken from crepes or MAPIE because the project needs it for 50+ genes at once with a shared
difficulty, stored as plain arrays (no pickled objects in a model folder), and the
arithmetic is these few lines.
"""

from __future__ import annotations

import math

import numpy as np

from stflow.errors import StflowError, check_finite

STANDARD_LEVELS = (0.5, 0.8, 0.9, 0.95)  # every prediction file carries these
DEFAULT_LEVEL = 0.9
MIN_DIFFICULTY = 1e-6  # a difficulty is a positive scale: zero would make a score infinite


def check_level(level: float, where: str = "intervals.level") -> float:
    """``level`` as a float in (0, 1), or a clear error naming it."""
    try:
        value = float(level)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 < value < 1.0:
        raise StflowError(f"{where}: {level!r} is not a coverage level in (0, 1). "
                          "Fix: give a fraction such as 0.9 for 90 % intervals")
    return value


def conformal_quantile(scores: np.ndarray, level: float) -> np.ndarray:
    """Per column, the ⌈(n+1)·level⌉-th smallest of n scores (inf when that exceeds n).

    ``scores`` is (n, G); the result (G,) is the half-width scale that covers at least
    ``level`` of exchangeable new spots.
    """
    level = check_level(level)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise StflowError(f"conformal scores: shape {scores.shape}. Fix: pass (spots, genes)")
    n = scores.shape[0]
    rank = math.ceil((n + 1) * level)
    if n == 0 or rank > n:
        return np.full(scores.shape[1], np.inf)
    return np.sort(scores, axis=0)[rank - 1]


def weighted_conformal_quantile(scores: np.ndarray, weights: np.ndarray | None,
                                level: float) -> np.ndarray:
    """:func:`conformal_quantile` with a weight per calibration spot (patients weighted
    alike: each spot 1 / its patient's spots) and NaN for a gene a spot has no score for:
    per column, the smallest score whose share of the weight reaches ``level`` · (n+1)/n
    (n: that column's scored spots), the same finite-sample correction, so equal weights
    give exactly the ⌈(n+1)·level⌉-th smallest."""
    if weights is None and not np.isnan(scores).any():
        return conformal_quantile(scores, level)
    level = check_level(level)
    scores = np.asarray(scores, dtype=np.float64)
    scored = ~np.isnan(scores)
    weight = np.where(scored, (np.ones(len(scores)) if weights is None
                               else np.asarray(weights, np.float64))[:, None], 0.0)
    n = scored.sum(axis=0)
    target = level * (n + 1) / np.maximum(n, 1)
    order = np.argsort(np.where(scored, scores, np.inf), axis=0, kind="stable")
    share = np.cumsum(np.take_along_axis(weight, order, 0), axis=0) / np.maximum(
        weight.sum(axis=0), 1e-300)
    first = (share >= target - 1e-12).argmax(axis=0)
    quantile = np.take_along_axis(scores, order, 0)[first, np.arange(scores.shape[1])]
    return np.where((target > 1) | (n == 0), np.inf, quantile)


def nonconformity(truth: np.ndarray, prediction: np.ndarray,
                  difficulty: np.ndarray) -> np.ndarray:
    """(n, G) scores ``|truth − prediction| / difficulty`` (difficulty (n,) or (n, G))."""
    truth = np.asarray(truth, dtype=np.float64)
    prediction = np.asarray(prediction, dtype=np.float64)
    check_finite(prediction, "calibration predictions")
    return np.abs(truth - prediction) / _broadcast(difficulty, truth.shape)


def interval(prediction: np.ndarray, difficulty: np.ndarray, quantile: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) = prediction ∓ quantile · difficulty, float32, the lower bound clipped
    at 0: log1p counts are never negative, so the part below 0 covers nothing and would only
    widen the reported widths (a prediction below 0 keeps its own value as the bound)."""
    prediction = np.asarray(prediction, dtype=np.float64)
    half = np.asarray(quantile, dtype=np.float64)[None, :] * _broadcast(difficulty,
                                                                          prediction.shape)
    floor = np.minimum(prediction, 0.0)
    return (np.maximum(prediction - half, floor).astype(np.float32),
            (prediction + half).astype(np.float32))


def _broadcast(difficulty: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A per-spot (n,) or per-spot-and-gene (n, G) difficulty as (n, G), floored above 0."""
    difficulty = np.asarray(difficulty, dtype=np.float64)
    if difficulty.ndim == 1:
        difficulty = difficulty[:, None]
    return np.maximum(np.broadcast_to(difficulty, shape), MIN_DIFFICULTY)

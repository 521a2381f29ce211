"""The per-gene Pearson metric at the bottom of the library, below the models and evaluation.

The models score their validation split with it (early stopping, search) and evaluation
scores the test folds with it (:mod:`stflow.evaluation.hest_metric`), so both read one definition.
A gene that is constant in the truth has no correlation (NaN, left out of a mean); a gene
whose *prediction* is constant scores r = 0.
"""

from __future__ import annotations

import numpy as np

from stflow.errors import check_finite, input_error


def _as_matrix(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2:
        raise input_error(name, f"expected a (spots, genes) matrix, got shape {array.shape}",
                          "pass one row per spot and one column per gene")
    check_finite(array, name)
    return array


def pearson_per_gene(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Pearson r of each column of ``truth`` with the same column of ``pred``.

    Returns a (G,) array: NaN where the truth column is constant (the gene cannot be scored,
    for any model; callers exclude it), 0 where only the prediction is constant (a
    constant prediction explains none of the variation). No warning is raised.
    """
    truth = _as_matrix(truth, "truth")
    pred = _as_matrix(pred, "pred")
    if truth.shape != pred.shape:
        raise input_error("pred", f"shape {pred.shape} differs from truth {truth.shape}",
                          "predict the same spots and genes as the truth")
    if truth.shape[0] < 2:
        return np.full(truth.shape[1], np.nan)
    dt = truth - truth.mean(axis=0)
    dp = pred - pred.mean(axis=0)
    return correlation_from_moments((dt * dt).sum(axis=0), (dp * dp).sum(axis=0),
                                    (dt * dp).sum(axis=0), np.abs(truth).max(axis=0),
                                    np.abs(pred).max(axis=0), truth.shape[0])


def correlation_from_moments(ss_truth: np.ndarray, ss_pred: np.ndarray, cross: np.ndarray,
                             absmax_truth: np.ndarray, absmax_pred: np.ndarray,
                             n_spots: int | np.ndarray) -> np.ndarray:
    """Pearson r from centred sums of squares and cross-products (any matching shapes), with
    the rules of :func:`pearson_per_gene`; the bootstrap combines the sums of its blocks and
    scores each replicate with this same function.

    A column whose spread is only floating-point noise next to its scale (``absmax`` over
    its spots) counts as constant: NaN for the truth, 0 for the prediction.
    """
    nt, npd = np.sqrt(ss_truth), np.sqrt(ss_pred)
    root_n = np.sqrt(n_spots)
    varies_t = (nt > absmax_truth * root_n * 1e-12) & (nt > 0)
    ok = varies_t & (npd > absmax_pred * root_n * 1e-12) & (npd > 0)
    out = np.where(varies_t, 0.0, np.nan)
    out[ok] = cross[ok] / (nt[ok] * npd[ok])
    return np.clip(out, -1.0, 1.0)


def mean_pearson(truth: np.ndarray, pred: np.ndarray) -> float:
    """Mean per-gene Pearson over the genes that vary in the truth (NaN when none does)."""
    values = pearson_per_gene(truth, pred)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")

"""The benchmark metric, exactly as HEST-bench computes it, and the tables built from it.

Per fold the test spots of all test samples are pooled, the Pearson correlation between
measured and predicted log1p expression is computed per gene, and the fold score is the
mean over genes. Across folds the score is reported as mean ± population std (ddof=0);
with several seeds the fold spread and the seed spread are reported separately.
A gene that is constant in the truth has no correlation: it is left out of the mean and
counted as ``n_constant_genes`` instead of turning the average into NaN. A gene whose
*prediction* is constant scores r = 0, so every model is averaged over the same genes and
collapsing a hard gene to a constant is not rewarded by dropping it.

Every row of every table carries the split ``scheme`` of its splits.json, so a
leave-one-section-out number (``section``) is never read as a patient-stratified one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from stflow.errors import check_finite, input_error

log = logging.getLogger(__name__)


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


def fold_metrics(truths: Sequence[np.ndarray], preds: Sequence[np.ndarray],
                 genes: Sequence[str], samples: Sequence[str]) -> dict:
    """Score one fold: pooled per-gene Pearson plus a per-sample breakdown."""
    if not truths or len(truths) != len(preds) or len(truths) != len(samples):
        raise input_error("predictions", f"{len(truths)} truths, {len(preds)} predictions and "
                          f"{len(samples)} sample names", "pass one prediction per test sample")
    pooled_truth = np.concatenate([np.asarray(t) for t in truths], axis=0)
    pooled_pred = np.concatenate([np.asarray(p) for p in preds], axis=0)
    if pooled_truth.shape[1] != len(genes):
        raise input_error("predictions", f"{pooled_truth.shape[1]} gene columns but "
                          f"{len(genes)} gene names", "keep var and X aligned")
    per_gene = pearson_per_gene(pooled_truth, pooled_pred)
    finite = np.isfinite(per_gene)
    per_sample = {s: mean_pearson(t, p) for s, t, p in zip(samples, truths, preds, strict=True)}
    return {
        "n_test_spots": int(pooled_truth.shape[0]),
        "n_genes": int(len(genes)),
        "n_constant_genes": int((~finite).sum()),
        "pearson_mean": float(per_gene[finite].mean()) if finite.any() else None,
        "pearson_per_gene": {g: (float(v) if np.isfinite(v) else None)
                             for g, v in zip(genes, per_gene, strict=True)},
        "pearson_per_sample": {s: (v if np.isfinite(v) else None) for s, v in per_sample.items()},
    }

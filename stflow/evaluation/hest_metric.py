"""The benchmark metric, exactly as HEST-bench computes it, and the tables built from it
(the per-gene Pearson itself is :mod:`stflow.metrics`, below the models that also use it).

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

from stflow.errors import input_error
from stflow.metrics import correlation_from_moments, mean_pearson, pearson_per_gene

# the metric itself lives below the models; evaluation scores folds with it
__all__ = ["correlation_from_moments", "fold_metrics", "mean_pearson", "pearson_per_gene"]

log = logging.getLogger(__name__)


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

"""How far a spot's image features lie from the training spots': the shift flag.

A model is only as good as the spots it has seen. Each spot is scored by the mean distance
to its ``k`` nearest training spots in a whitened PCA space fitted on the training features
(whitening puts every retained direction on one scale, so the distance is not dominated by
the few directions of largest variance). The flag's threshold is the conformal order statistic
of the scores of validation spots, which the model did not train on either, so a spot
exchangeable with them is flagged at most 5 % of the time: the flag claims that a spot (or,
by its share of flagged spots, a slide) is unlike the data the model was trained and checked
on. It is not an error warning: far-from-training spots need not be predicted worse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from stflow.errors import StflowError

N_COMPONENTS = 32
K_NEAREST = 10
MAX_REFERENCE = 20_000  # training spots kept as the reference (a seeded subsample beyond)
THRESHOLD_PERCENTILE = 95.0


@dataclass
class ShiftReference:
    """The training spots' features in a whitened PCA space, and the flag's threshold."""

    feature_mean: np.ndarray  # (D,)
    feature_scale: np.ndarray  # (D,)
    components: np.ndarray  # (C, D) principal axes of the standardised features
    scales: np.ndarray  # (C,) standard deviation along each axis
    reference: np.ndarray  # (M, C) whitened training spots
    k: int
    threshold: float = float("inf")

    @classmethod
    def fit(cls, features: np.ndarray, seed: int = 0, n_components: int = N_COMPONENTS,
            k: int = K_NEAREST) -> ShiftReference:
        """Fit on the (N, D) training features."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or len(x) < 3:
            raise StflowError(f"shift reference: {x.shape} training features. Fix: train on "
                              "at least 3 spots")
        rng = np.random.default_rng(seed)
        if len(x) > MAX_REFERENCE:
            x = x[np.sort(rng.choice(len(x), MAX_REFERENCE, replace=False))]
        mean = x.mean(0)
        scale = np.where(x.std(0) > 1e-8, x.std(0), 1.0)
        z = (x - mean) / scale
        _, singular, axes = np.linalg.svd(z - z.mean(0), full_matrices=False)
        keep = min(n_components, len(x) - 1, x.shape[1])
        scales = singular[:keep] / np.sqrt(len(x) - 1)
        keep = max(1, int((scales > 1e-6 * scales[0]).sum()))
        reference = cls(mean, scale, axes[:keep], scales[:keep], np.empty((0, keep)),
                        int(min(k, len(x) - 1)))
        reference.reference = reference.whiten(features=x)
        return reference

    def whiten(self, features: np.ndarray) -> np.ndarray:
        """(N, C) coordinates of ``features`` in the whitened space."""
        z = (np.asarray(features, dtype=np.float64) - self.feature_mean) / self.feature_scale
        return (z @ self.components.T) / self.scales

    def score(self, features: np.ndarray) -> np.ndarray:
        """(N,) mean distance to the ``k`` nearest training spots (float32)."""
        if len(features) == 0:
            return np.zeros(0, np.float32)
        distances, _ = cKDTree(self.reference).query(self.whiten(features), k=self.k)
        distances = distances.reshape(len(features), -1)
        return distances.mean(1).astype(np.float32)

    def set_threshold(self, validation_scores: np.ndarray,
                      percentile: float = THRESHOLD_PERCENTILE) -> None:
        """The flag's threshold: the conformal order statistic of the validation spots'
        scores, the ⌈(n+1)·p⌉-th smallest of n, so a spot exchangeable with them is flagged
        with probability at most 1 − p (5 %), whatever n (an interpolated percentile flags
        more than that on small n). Below 19 spots, the largest score (at most 1/(n+1))."""
        scores = np.sort(np.asarray(validation_scores, np.float64).ravel())
        if not len(scores):
            raise StflowError("shift flag: no validation spots to set its threshold on. Fix: "
                              "give the model validation samples or a held-out region")
        rank = min(math.ceil((len(scores) + 1) * percentile / 100), len(scores))
        self.threshold = float(scores[rank - 1])

    def arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for an npz (no pickled objects in a model folder)."""
        return {"shift_feature_mean": self.feature_mean, "shift_feature_scale": self.feature_scale,
                "shift_components": self.components, "shift_scales": self.scales,
                "shift_reference": self.reference.astype(np.float32),
                "shift_k": np.asarray(self.k), "shift_threshold": np.asarray(self.threshold)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ShiftReference:
        return cls(arrays["shift_feature_mean"], arrays["shift_feature_scale"],
                   arrays["shift_components"], arrays["shift_scales"],
                   np.asarray(arrays["shift_reference"], np.float64),
                   int(arrays["shift_k"]), float(arrays["shift_threshold"]))

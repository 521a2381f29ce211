"""StandardScaler → PCA as arrays (HEST-bench's preprocessing), saved without pickle."""

from __future__ import annotations

from typing import Any

import numpy as np

from stflow.errors import input_error


class Projection:
    """StandardScaler followed by PCA, kept as arrays so it saves without pickle."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, components: np.ndarray,
                 pca_mean: np.ndarray) -> None:
        self.mean, self.scale = mean, scale
        self.components, self.pca_mean = components, pca_mean

    @classmethod
    def fit(cls, x: np.ndarray, n_components: int, seed: int) -> Projection:
        """Fit HEST's scaler + PCA; components capped at min(n_samples, n_features)."""
        from sklearn.decomposition import PCA
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(x)
        k = max(1, min(n_components, x.shape[0], x.shape[1]))
        pca = PCA(n_components=k, random_state=seed).fit(scaler.transform(x))
        return cls(scaler.mean_, scaler.scale_, pca.components_, pca.mean_)

    def transform(self, x: np.ndarray) -> np.ndarray:
        if x.shape[1] != len(self.mean):
            raise input_error("features", f"{x.shape[1]} feature columns, the model was "
                              f"trained on {len(self.mean)}",
                              "predict with features of the encoder the model was trained on")
        return ((x - self.mean) / self.scale - self.pca_mean) @ self.components.T

    def arrays(self) -> dict[str, np.ndarray]:
        return {"scaler_mean": self.mean, "scaler_scale": self.scale,
                "pca_components": self.components, "pca_mean": self.pca_mean}

    @classmethod
    def from_arrays(cls, data: Any) -> Projection:
        return cls(data["scaler_mean"], data["scaler_scale"], data["pca_components"],
                   data["pca_mean"])

"""Ridge on [own features ‖ mean of the k neighbours' features]: the one baseline that sees
the spatial context."""

from __future__ import annotations

import numpy as np

from stflow.data.dataset import Slide
from stflow.data.graph import knn_graph
from stflow.errors import input_error
from stflow.models.baselines.baseline_settings import SpatialRidgeSettings
from stflow.models.baselines.ridge import PCARidge


def neighbour_indices(slide: Slide, k: int) -> np.ndarray:
    """(N, k') indices of each spot's nearest other spots: the graph stage's, else a kNN."""
    if slide.neighbors is not None and slide.neighbors.shape[1] > 0:
        return np.asarray(slide.neighbors[:, :k], dtype=np.int64)
    k_eff = min(k, slide.n_spots - 1)
    if k_eff < 1:
        return np.arange(slide.n_spots)[:, None]
    neighbors, _ = knn_graph(np.asarray(slide.coords_um, dtype=np.float64), k_eff,
                             where=f"sample {slide.sample}")
    return np.asarray(neighbors, dtype=np.int64)


class SpatialRidge(PCARidge):
    """Ridge on ``[own features ‖ mean features of the k nearest spots]``.

    The simplest model that uses spatial context: it shows how much of STFlow's gain a
    linear neighbourhood average already captures.
    """

    name = "spatial_ridge"

    settings_class = SpatialRidgeSettings

    def _features(self, slide: Slide) -> np.ndarray:
        x = np.asarray(slide.features, dtype=np.float64)
        neighbors = neighbour_indices(slide, self.settings.k)
        if neighbors.size and (neighbors.min() < 0 or neighbors.max() >= len(x)):
            raise input_error(f"sample {slide.sample}", "neighbour indices out of range",
                              "re-run the graph stage for this sample")
        return np.hstack([x, x[neighbors].mean(axis=1)])

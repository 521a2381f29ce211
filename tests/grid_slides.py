"""Small grid sections whose expression is a smooth function of their features (for models)."""

from __future__ import annotations

import numpy as np

from stflow.data.dataset import Slide


def grid_slide(name: str, seed: int, side: int = 10, dim: int = 8, genes: int = 4) -> Slide:
    """A side × side grid at 100 µm (jittered) with Poisson counts driven by the features."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2)
    coords = grid * 100.0 + rng.normal(0, 3, size=grid.shape)
    features = rng.normal(size=(len(grid), dim)).astype(np.float32)
    weights = np.random.default_rng(42).normal(size=(dim, genes))
    counts = rng.poisson(np.exp(features @ weights / np.sqrt(dim))).astype(np.float32)
    return Slide(name, features, coords, np.array([f"{name}{i}" for i in range(len(grid))]),
                 np.log1p(counts), counts)

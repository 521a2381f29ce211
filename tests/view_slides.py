"""Predictions to view: a plain H&E-like image and an h5ad laid out as predict-slide writes
it (X, layers lower/upper, obs shifted, level-0 pixel centres, scanpy's uns["spatial"])."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from PIL import Image
from slides import tissue_like

GENES = ["ERBB2", "GATA3", "KRT5"]


def spot_grid(width: int, height: int, pitch: float, right_margin: float) -> np.ndarray:
    """Spot centres on a square lattice over the image but its right margin (left bare, so
    the tiles there show the H&E alone)."""
    xs = np.arange(pitch / 2, width * (1 - right_margin), pitch)
    ys = np.arange(pitch / 2, height, pitch)
    return np.array([(x, y) for y in ys for x in xs], dtype=np.float64)


def write_prediction(folder: Path, *, width: int = 1200, height: int = 900, pitch: float = 30,
                     truth: bool = False, right_margin: float = 0.35) -> Path:
    """``folder/slide.h5ad`` and its image ``folder/slide.png``; ERBB2 rises left to right,
    GATA3 top to bottom, so the two genes colour the spots differently."""
    folder.mkdir(parents=True, exist_ok=True)
    image = folder / "slide.png"
    Image.fromarray(tissue_like(height, width)).save(image)
    xy = spot_grid(width, height, pitch, right_margin)
    x, y = xy[:, 0] / width, xy[:, 1] / height
    mean = np.stack([4 * x, 4 * y, np.full_like(x, 1.0)], axis=1).astype(np.float32)
    adata = ad.AnnData(mean, obs=pd.DataFrame(
        {"shifted": (x < 0.1) & (y < 0.2)}, index=[f"s{i}" for i in range(len(xy))]),
        var=pd.DataFrame(index=GENES))
    adata.layers["lower"] = np.clip(mean - 0.5 * (1 + y[:, None]), 0, None).astype(np.float32)
    adata.layers["upper"] = (mean + 0.5 * (1 + y[:, None])).astype(np.float32)
    if truth:
        adata.layers["truth"] = (mean + 0.3).astype(np.float32)
    adata.obsm["spatial"] = xy
    adata.uns["spatial"] = {"slide": {"metadata": {"source_image_path": str(image)},
                                      "scalefactors": {"spot_diameter_fullres": pitch * 0.8}}}
    adata.uns["stflow"] = {"kind": "slide_prediction", "sample": "slide", "model": "ridge",
                           "intervals": {"level": 0.9, "calibration": "patient"}}
    path = folder / "slide.h5ad"
    adata.write_h5ad(path)
    return path

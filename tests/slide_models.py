"""A small deployable model folder, made without running the workflow (for slide tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stflow.data.dataset import Slide
from stflow.data.encoders.builders import load_encoder
from stflow.intervals.calibration import calibrate, save_calibration
from stflow.models.registry import build_estimator, save_estimator
from stflow.records.deployment import Deployment, write_deployment

GENES = ["ERBB2", "GATA3", "ACTB", "KRT19"]
ENCODER = "efficientnet_lite0"
FAST_STFLOW = {"epochs": 1, "patience": 1, "hidden": 16, "layers": 1, "heads": 1,
               "device": "cpu", "k": 4}


def grid_slide(name: str, dim: int, rng: np.random.Generator, side: int = 6,
               pitch_um: float = 200.0) -> Slide:
    """A square-lattice section with random features and expression."""
    xy = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2) * pitch_um
    counts = rng.poisson(2.0, size=(len(xy), len(GENES))).astype(np.float32)
    return Slide(name, rng.normal(size=(len(xy), dim)).astype(np.float32), xy.astype(float),
                 np.array([f"{name}_{i}" for i in range(len(xy))]), np.log1p(counts), counts)


def deployable_model(folder: Path, model: str = "stflow", params: dict | None = None,
                     patch_size_px: int = 64, layout: str = "square",
                     pitch_um: float = 200.0, calibrated: bool = True) -> Path:
    """Train ``model`` briefly on random features of the offline encoder's width and write
    its folder as train does (manifest, model files, calibration, deploy.json);
    ``calibrated=False`` leaves the calibration out, as for a model that could not be
    calibrated."""
    encoder = load_encoder(ENCODER)
    rng = np.random.default_rng(0)
    slides = [grid_slide(f"S{i}", encoder.feature_dim, rng, pitch_um=pitch_um)
              for i in range(2)]
    estimator = build_estimator(model, params if params is not None else
                                (FAST_STFLOW if model == "stflow" else {}), seed=0)
    estimator.fit(slides[:1], slides[1:])
    save_estimator(model, estimator, folder)
    if calibrated:
        save_calibration(calibrate(estimator, slides[:1], slides[1:], seed=0), folder)
    write_deployment(folder, Deployment(
        model=model, genes=GENES, encoder=ENCODER, weights_sha256=encoder.weights_sha256,
        feature_dim=encoder.feature_dim, patch_size_um=112.0, patch_size_px=patch_size_px,
        min_tissue=0.5, graph_k=4, pitch_um=pitch_um, layout=layout,
        trained_on=["S0", "S1"], fold="final"))
    return folder

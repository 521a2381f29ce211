"""Spot arrays, checks and plain-array files shared by the baselines."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stflow.atomic import atomic_output, read_json
from stflow.data.dataset import Slide
from stflow.data.holdout import VAL_FRACTION, holdout_masks
from stflow.errors import input_error


def spot_targets(slide: Slide) -> np.ndarray:
    if slide.targets is None:
        raise input_error(f"sample {slide.sample}", "has no targets (log1p expression)",
                          "train only on samples with measured expression")
    return np.asarray(slide.targets, dtype=np.float64)


def train_val_arrays(train_x: list[np.ndarray], train_y: list[np.ndarray],
                     train_coords: list[np.ndarray], train_names: list[str],
                     val_x: list[np.ndarray], val_y: list[np.ndarray], seed: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stack training and validation spots; without val slides, hold out what STFlow does.

    The hold-out is :func:`stflow.data.holdout.holdout_masks` (a contiguous ``VAL_FRACTION`` of
    every training slide, seeded alike), so on folds with a single training sample the
    baselines and STFlow select on the same validation spots.
    """
    if val_x:
        return (np.concatenate(train_x), np.concatenate(train_y),
                np.concatenate(val_x), np.concatenate(val_y))
    masks = holdout_masks(train_coords, train_names, VAL_FRACTION, seed)
    x_tr = np.concatenate([x[~m] for x, m in zip(train_x, masks, strict=True)])
    y_tr = np.concatenate([y[~m] for y, m in zip(train_y, masks, strict=True)])
    x_va = np.concatenate([x[m] for x, m in zip(train_x, masks, strict=True)])
    y_va = np.concatenate([y[m] for y, m in zip(train_y, masks, strict=True)])
    return x_tr, y_tr, x_va, y_va


def check_slides(slides: list[Slide], what: str) -> None:
    if not slides:
        raise input_error(what, "no slides given", f"pass at least one {what} slide")


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        raise input_error(path, "model file does not exist", "re-run the train stage")
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def read_config(path: Path) -> dict:
    return read_json(path, "model config", "re-run the train stage")


def mse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((y - p) ** 2))


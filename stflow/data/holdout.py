"""The validation hold-out used when a fold has no validation slides, shared by all models.

STFlow's trainer and the baselines draw it alike, so on folds with a single training
sample every model selects its checkpoint or hyper-parameters on the same spots.
"""

from __future__ import annotations

import numpy as np

from stflow.catalogue import VAL_FRACTION as VAL_FRACTION  # the one definition
from stflow.errors import input_error


def nearest_spots(coords: np.ndarray, centre: int, n: int) -> np.ndarray:
    """Indices of the ``n`` spots nearest spot ``centre`` (a contiguous region), sorted."""
    squared = ((coords - coords[centre]) ** 2).sum(1)
    if n >= len(coords):
        return np.arange(len(coords))
    return np.sort(np.argpartition(squared, n - 1)[:n])


def holdout_index(coords_um: np.ndarray, fraction: float, rng: np.random.Generator,
                  min_spots: int, name: str) -> np.ndarray:
    """Validation spots of one slide: the ``round(fraction·N)`` spots nearest a random spot.

    A contiguous region (rather than random spots) keeps validation spots from sitting
    between training spots, which would make validation optimistic on smooth tissue. Both
    sides keep at least ``min_spots`` spots. STFlow and the baselines share this rule.
    """
    n_spots = len(coords_um)
    n_val = int(round(fraction * n_spots))
    if n_val < min_spots or n_spots - n_val < min_spots:
        raise input_error(f"sample {name}", f"{n_spots} spots are too few to hold out "
                          f"{fraction:.0%} for validation (each side needs {min_spots})",
                          "give validation slides, a larger val_fraction or a smaller k")
    return nearest_spots(coords_um, int(rng.integers(n_spots)), n_val)


def holdout_masks(coords_um: list[np.ndarray], names: list[str], fraction: float, seed: int,
                  min_spots: int = 1) -> list[np.ndarray]:
    """Boolean validation masks, one per slide, drawn in order from ``default_rng(seed)``.

    This is the hold-out STFlow's trainer uses (``stflow.models.stflow.trainer.train_denoiser``), so models
    built with the same seed and fraction validate on the same spots.
    """
    rng = np.random.default_rng(seed)
    masks = []
    for coords, name in zip(coords_um, names, strict=True):
        mask = np.zeros(len(coords), dtype=bool)
        mask[holdout_index(coords, fraction, rng, min_spots, name)] = True
        masks.append(mask)
    return masks

"""The pitch and lattice of spots, measured from their coordinates in microns.

Ingest (the spot size drawn under ``sc.pl.spatial``), training (the deployment record) and
new slides (virtual spots at the training pitch) all read it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from stflow.errors import input_error

LAYOUTS = ("square", "hex")
# Spot diameter as a share of the pitch, as on the arrays (ST: 100 of 200 µm; Visium: 55 of 100)
SPOT_DIAMETER_FRACTION = {"square": 0.5, "hex": 0.55}


@dataclass(frozen=True)
class SpotLayout:
    """Centre-to-centre spacing of neighbouring spots and their lattice."""

    pitch_um: float
    layout: str  # "square" or "hex"

    @property
    def spot_diameter_um(self) -> float:
        return self.pitch_um * SPOT_DIAMETER_FRACTION[self.layout]


def measure_layout(coords_um: list[np.ndarray]) -> SpotLayout:
    """The pitch and lattice of spots of some sections.

    The nearest-neighbour distance is biased low on a jittered lattice (the least of 4 or 6
    noisy distances), so it only finds each spot's lattice neighbours (within 1.25 of it);
    the pitch is the median distance to all of them. A spot inside a square lattice has 4
    such neighbours, inside a hexagonal one 6: the upper quartile of the counts tells them
    apart despite borders.
    """
    distances, counts = [], []
    for coords in coords_um:
        coords = np.asarray(coords, dtype=np.float64)
        if len(coords) < 3:
            continue
        tree = cKDTree(coords)
        nearest = float(np.median(tree.query(coords, k=2)[0][:, 1]))
        pairs = tree.query_pairs(1.25 * nearest, output_type="ndarray")
        distances.append(np.linalg.norm(coords[pairs[:, 0]] - coords[pairs[:, 1]], axis=1))
        counts.append(np.bincount(pairs.ravel(), minlength=len(coords)))
    if not distances:
        raise input_error("training spots", "too few spots to measure their spacing",
                          "train on sections with at least 3 spots")
    pitch = float(np.median(np.concatenate(distances)))
    interior = float(np.quantile(np.concatenate(counts), 0.75))
    return SpotLayout(pitch, "hex" if interior >= 5 else "square")

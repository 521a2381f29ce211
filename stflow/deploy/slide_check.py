"""Whether a slide of a cohort can be read, checked before it is predicted: one small job per
slide (rules/slides.smk, a checkpoint), so that the cohort table is built from the slides that
read and lists the others with the reason, while each unreadable slide fails only its own
predict_slide job. Light: OpenSlide and Pillow, no deep-learning import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openslide

from stflow.atomic import write_json
from stflow.data.patches.readers import open_slide
from stflow.deploy.slide_scale import slide_mpp
from stflow.errors import StflowError

OVERVIEW_SIDE = 256  # px: reading an overview decodes (a level of) the whole image


def check_slide(slide: str, image: str | Path, um_per_px: float | None) -> dict[str, Any]:
    """The slide's scale and size, or why it cannot be read (``readable`` tells which)."""
    record: dict[str, Any] = {"slide": slide, "image": str(image)}
    try:
        mpp, source = slide_mpp(Path(image), um_per_px)
        with open_slide(image) as reader:
            reader.thumbnail(OVERVIEW_SIDE)
            width, height = reader.width, reader.height
    except (StflowError, OSError, SyntaxError, ValueError, openslide.OpenSlideError) as err:
        return {**record, "readable": False, "reason": str(err)}
    return {**record, "readable": True, "um_per_px": mpp, "um_per_px_from": source,
            "width": int(width), "height": int(height)}


def write_slide_check(slide: str, image: str | Path, um_per_px: float | None,
                      out: str | Path) -> dict[str, Any]:
    """:func:`check_slide` written as JSON to ``out`` (atomically)."""
    record = check_slide(slide, image, um_per_px)
    write_json(record, out)
    return record

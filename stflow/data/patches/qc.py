"""QC thumbnail: where the patches are, on the tissue (kept green, dropped red)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from stflow.atomic import atomic_output

QC_SIDE = 2048  # long side of the QC figure


def draw_qc(thumbnail: Image.Image, scale: float, centres_px: np.ndarray, side_l0: float,
            kept: np.ndarray, out: str | Path) -> None:
    """Draw each spot as a circle of the patch size; ``scale`` is level-0 px per thumb px."""
    image = thumbnail.convert("RGB")
    if max(image.size) > QC_SIDE:
        shrink = max(image.size) / QC_SIDE
        image = image.resize((round(image.width / shrink), round(image.height / shrink)))
        scale *= shrink
    else:
        image = image.copy()
    draw = ImageDraw.Draw(image)
    radius = max(side_l0 / 2 / scale, 1.0)
    width = max(1, round(radius / 8))
    for (x, y), keep in zip(np.asarray(centres_px) / scale, kept, strict=True):
        colour = (0, 170, 0) if keep else (220, 0, 0)
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline=colour, width=width)
    with atomic_output(out) as tmp:
        image.save(tmp, format="PNG")

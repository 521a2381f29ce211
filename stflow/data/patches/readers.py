"""Read a fixed physical window around a spot from a slide image.

Pyramidal whole-slide images (svs, tiff, ndpi, mrxs, ...) go through OpenSlide, which reads
from the pyramid level closest to (and not coarser than) the wanted resolution. Plain images
(JPEG, PNG, non-pyramidal TIFF) are decoded once by Pillow; for JPEG the decoder itself
downscales by 2, 4 or 8 when the patches are coarser than the image, which saves memory.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import openslide
from PIL import Image

from stflow.errors import input_error

WHITE = (255, 255, 255)
# Whole-slide JPEGs are far beyond Pillow's decompression-bomb guard; these are trusted inputs.
Image.MAX_IMAGE_PIXELS = None


class SlideReader(ABC):
    """An open image that yields square windows in level-0 pixel coordinates."""

    kind: str
    path: Path
    width: int
    height: int

    @abstractmethod
    def read_window(self, cx: float, cy: float, side_l0: float, size_px: int) -> np.ndarray:
        """(size_px, size_px, 3) uint8 RGB of the level-0 square of side ``side_l0`` centred
        on (cx, cy); parts outside the image are white."""

    @abstractmethod
    def thumbnail(self, max_side: int) -> tuple[Image.Image, float]:
        """An RGB overview no larger than ``max_side`` and its level-0 pixels per pixel."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the file handle."""

    def __enter__(self) -> SlideReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _window_box(x0: float, y0: float, side: float) -> tuple[int, int, int, float, float]:
    """Integer read box (left, top, size) covering a float window, and the window's offset in it."""
    ix, iy = math.floor(x0), math.floor(y0)
    fx, fy = x0 - ix, y0 - iy
    size = math.ceil(max(fx, fy) + side) + 1
    return ix, iy, size, fx, fy


def _resample(region: Image.Image, fx: float, fy: float, side: float, size_px: int) -> np.ndarray:
    """Resize the float sub-window ``(fx, fy, side)`` of ``region`` to ``size_px`` (antialiased)."""
    box = (fx, fy, fx + side, fy + side)
    return np.asarray(region.resize((size_px, size_px), Image.Resampling.BILINEAR, box=box))


class OpenSlideReader(SlideReader):
    """Pyramidal slides through OpenSlide."""

    kind = "openslide"

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.slide = openslide.OpenSlide(str(path))
        except openslide.OpenSlideError as err:
            raise input_error(path, f"OpenSlide cannot read this slide ({err})",
                              "check that the file is complete (re-download it)") from err
        self.width, self.height = self.slide.dimensions

    def read_window(self, cx: float, cy: float, side_l0: float, size_px: int) -> np.ndarray:
        level = self.slide.get_best_level_for_downsample(side_l0 / size_px)
        ds = float(self.slide.level_downsamples[level])
        ix, iy, _, fx, fy = _window_box(cx - side_l0 / 2, cy - side_l0 / 2, side_l0)
        side = side_l0 / ds
        size = math.ceil(max(fx, fy) / ds + side) + 1
        rgba = np.asarray(self.slide.read_region((ix, iy), level, (size, size)))
        # OpenSlide returns transparent pixels outside the scanned area: composite on white.
        alpha = rgba[..., 3:4].astype(np.uint16)
        rgb = (rgba[..., :3] * alpha + 255 * (255 - alpha)) // 255
        region = Image.fromarray(rgb.astype(np.uint8))
        return _resample(region, fx / ds, fy / ds, side, size_px)

    def thumbnail(self, max_side: int) -> tuple[Image.Image, float]:
        thumb = self.slide.get_thumbnail((max_side, max_side)).convert("RGB")
        return thumb, self.width / thumb.width

    def close(self) -> None:
        self.slide.close()


class PillowReader(SlideReader):
    """Plain images, decoded once (JPEG reduced in the decoder when patches are coarser)."""

    kind = "pillow"

    def __init__(self, path: Path, downsample: float = 1.0) -> None:
        self.path = path
        try:
            image = Image.open(path)
            self.width, self.height = image.size
            if image.format == "JPEG" and downsample >= 2:
                scale = max(s for s in (1, 2, 4, 8) if s <= downsample)
                image.draft("RGB", (math.ceil(self.width / scale), math.ceil(self.height / scale)))
            image.load()
        except (OSError, SyntaxError, Image.DecompressionBombError) as err:
            raise input_error(path, f"cannot decode this image ({err})",
                              "check that the file is a complete JPEG/PNG/TIFF image") from err
        self.image = image if image.mode == "RGB" else image.convert("RGB")
        self.scale_x = self.width / self.image.width
        self.scale_y = self.height / self.image.height

    def read_window(self, cx: float, cy: float, side_l0: float, size_px: int) -> np.ndarray:
        side = side_l0 / self.scale_x
        x0 = (cx - side_l0 / 2) / self.scale_x
        y0 = (cy - side_l0 / 2) / self.scale_y
        ix, iy, size, fx, fy = _window_box(x0, y0, side)
        box = (ix, iy, ix + size, iy + size)
        inside = ix >= 0 and iy >= 0 and box[2] <= self.image.width and box[3] <= self.image.height
        if inside:
            region = self.image.crop(box)
        else:  # Pillow pads with black: paste the clipped crop onto a white canvas instead
            region = Image.new("RGB", (size, size), WHITE)
            clip = (max(ix, 0), max(iy, 0), min(box[2], self.image.width),
                    min(box[3], self.image.height))
            if clip[0] < clip[2] and clip[1] < clip[3]:
                region.paste(self.image.crop(clip), (clip[0] - ix, clip[1] - iy))
        return _resample(region, fx, fy, side, size_px)

    def thumbnail(self, max_side: int) -> tuple[Image.Image, float]:
        factor = max(1, math.ceil(max(self.image.size) / max_side))
        thumb = self.image.reduce(factor) if factor > 1 else self.image.copy()
        return thumb, self.width / thumb.width

    def close(self) -> None:
        self.image.close()


def open_slide(path: str | Path, downsample: float = 1.0) -> SlideReader:
    """OpenSlide for formats it recognises (pyramids), Pillow for everything else.

    ``downsample`` (level-0 pixels per patch pixel) lets the Pillow path decode JPEGs reduced.
    """
    path = Path(path)
    if not path.is_file():
        raise input_error(path, "image file not found",
                          "check uns['image_path'] of the ingested sample or re-run ingest")
    fmt = openslide.OpenSlide.detect_format(str(path))
    if fmt is not None and fmt != "generic-tiff" or fmt == "generic-tiff" and _is_tiled(path):
        return OpenSlideReader(path)
    return PillowReader(path, downsample)


def _is_tiled(path: Path) -> bool:
    """OpenSlide's generic-tiff driver needs tiles; striped TIFFs go through Pillow."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return tif.pages[0].is_tiled

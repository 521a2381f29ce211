"""The H&E as a Deep Zoom (DZI) pyramid: ``image.dzi`` and ``image_files/{level}/{col}_{row}.jpeg``.

Written with openslide's ``DeepZoomGenerator``, which reads whole-slide files (SVS, NDPI,
pyramidal TIFF: ``OpenSlide``) and plain images (JPEG, PNG, TIFF: ``ImageSlide``) alike;
OpenSeadragon shows the pyramid at every zoom from the level it needs.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from stflow.errors import input_error

log = logging.getLogger(__name__)

TILE_SIZE = 254   # + 2 x 1 px overlap = 256 px tiles, the DZI default
OVERLAP = 1
FORMAT = "jpeg"
QUALITY = 85


@dataclass(frozen=True)
class Pyramid:
    """What the page needs to show the pyramid without reading ``image.dzi`` (a file://
    page may not fetch it): level-0 size, tile size, overlap and the tiles' format."""

    width: int
    height: int
    tile_size: int = TILE_SIZE
    overlap: int = OVERLAP
    format: str = FORMAT

    def tile_source(self, url: str) -> dict:
        """OpenSeadragon's inline DZI tile source, tiles under ``url``."""
        return {"Image": {"xmlns": "http://schemas.microsoft.com/deepzoom/2008", "Url": url,
                          "Format": self.format, "Overlap": str(self.overlap),
                          "TileSize": str(self.tile_size),
                          "Size": {"Width": str(self.width), "Height": str(self.height)}}}


def open_image(path: str | Path):
    """The slide or plain image at ``path`` as an openslide object: ``OpenSlide`` for a
    whole-slide file, else ``ImageSlide`` over the image decoded once (so the tile threads
    share pixels, not a lazily read file)."""
    import openslide
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise input_error(path, "H&E image not found", "give the slide's image with --image")
    try:
        if openslide.OpenSlide.detect_format(str(path)):
            return openslide.OpenSlide(str(path))
        Image.MAX_IMAGE_PIXELS = None  # whole-slide JPEGs are legitimately huge
        with Image.open(path) as image:
            return openslide.ImageSlide(image.convert("RGB"))
    except (openslide.OpenSlideError, OSError, ValueError) as err:
        raise input_error(path, f"cannot be read as a slide or an image ({err})",
                          "give the slide's H&E image (SVS, NDPI, TIFF, JPEG, PNG) with "
                          "--image") from None


def image_size(image_path: str | Path) -> tuple[int, int]:
    """Level-0 width and height of the slide or image (a plain image's header only)."""
    import openslide
    from PIL import Image

    path = Path(image_path)
    if path.is_file() and not openslide.OpenSlide.detect_format(str(path)):
        try:
            with Image.open(path) as image:
                return image.size
        except OSError:
            pass  # open_image names the problem
    slide = open_image(path)
    try:
        return tuple(int(v) for v in slide.dimensions)
    finally:
        slide.close()


def write_pyramid(image_path: str | Path, out_dir: Path, *, threads: int = 1) -> Pyramid:
    """Write ``out_dir/image.dzi`` and ``out_dir/image_files/``; return the pyramid's size."""
    from openslide.deepzoom import DeepZoomGenerator

    slide = open_image(image_path)
    try:
        zoom = DeepZoomGenerator(slide, tile_size=TILE_SIZE, overlap=OVERLAP,
                                 limit_bounds=False)
        (out_dir / "image.dzi").write_text(zoom.get_dzi(FORMAT))
        jobs = []
        for level in range(zoom.level_count):
            folder = out_dir / "image_files" / str(level)
            folder.mkdir(parents=True, exist_ok=True)
            cols, rows = zoom.level_tiles[level]
            jobs += [(level, col, row, folder / f"{col}_{row}.{FORMAT}")
                     for row in range(rows) for col in range(cols)]

        def tile(job: tuple) -> None:
            level, col, row, path = job
            zoom.get_tile(level, (col, row)).convert("RGB").save(path, quality=QUALITY)

        with ThreadPoolExecutor(max(1, threads)) as pool:
            list(tqdm(pool.map(tile, jobs), total=len(jobs), desc="view: tiles",
                      disable=len(jobs) < 500))
        width, height = zoom.level_dimensions[-1]
    finally:
        slide.close()
    log.info("pyramid of %s: %d x %d px, %d tiles", image_path, width, height, len(jobs))
    return Pyramid(width=int(width), height=int(height))

"""Cut one fixed physical window per spot into a HEST-compatible ``patches/{sample}.h5``.

Patches are streamed into the file in blocks, so memory does not grow with the number of
spots; the file is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from stflow.atomic import atomic_output
from stflow.choices import MIN_TISSUE, PATCH_SIZE_PX, PATCH_SIZE_UM
from stflow.data.patches.qc import draw_qc
from stflow.data.patches.readers import SlideReader, open_slide
from stflow.data.patches.tissue import tissue_mask, window_fractions
from stflow.errors import check_finite, check_shape, input_error

log = logging.getLogger(__name__)

BLOCK = 64  # patches written per h5 append
THUMB_SIDE = 2048  # tissue segmentation resolution (long side)


@dataclass(frozen=True)
class PatchSummary:
    """What extraction did, for logs, tests and the QC figure."""

    n_spots: int
    n_kept: int
    n_dropped_background: int
    kept: np.ndarray  # (N,) bool, in input order
    tissue_fraction: np.ndarray  # (N,) float
    threshold: float  # saturation cut used
    reader: str  # "openslide" or "pillow"


def _check_inputs(image_path: Path, centres: np.ndarray, mpp: float, barcodes: Sequence[str],
                  size_um: float, size_px: int, min_tissue: float, sample: str) -> None:
    check_shape(centres, "spot centres", (None, 2), sample)
    check_finite(centres, "spot centres", sample)
    if len(barcodes) != len(centres):
        raise input_error(sample, f"{len(barcodes)} barcodes for {len(centres)} spot centres",
                          "pass one barcode per spot")
    if len(set(barcodes)) != len(barcodes):
        raise input_error(sample, "spot barcodes are not unique", "make the barcodes unique")
    if len(centres) == 0:
        raise input_error(sample, "no spots", "check the ingested sample")
    if not (np.isfinite(mpp) and mpp > 0):
        raise input_error(sample, f"microns per pixel is {mpp}",
                          f"set a positive uns['mpp'] for the image {image_path}")
    if not (size_um > 0 and size_px > 0):
        raise input_error(sample, f"patch size {size_um} µm / {size_px} px",
                          "use positive --size-um and --size-px")
    if not 0 <= min_tissue <= 1:
        raise input_error(sample, f"min_tissue={min_tissue}", "use a fraction in [0, 1]")


def _check_inside(reader: SlideReader, centres: np.ndarray, barcodes: Sequence[str],
                  sample: str) -> None:
    outside = ((centres[:, 0] < 0) | (centres[:, 0] >= reader.width)
               | (centres[:, 1] < 0) | (centres[:, 1] >= reader.height))
    if outside.any():
        first = int(np.argmax(outside))
        raise input_error(
            f"sample {sample} ({reader.path})",
            f"{int(outside.sum())} spot centres lie outside the {reader.width}x{reader.height} "
            f"image (first: {barcodes[first]} at x={centres[first, 0]:.1f}, "
            f"y={centres[first, 1]:.1f})",
            "obsm['spatial'] must be level-0 pixels of this image with x = column and "
            "y = row; rescale the coordinates if they refer to a downscaled image")


def extract_patches(image_path: str | Path, centres_px: np.ndarray, *, mpp: float,
                    barcodes: Sequence[str], out: str | Path, sample: str | None = None,
                    size_um: float = float(PATCH_SIZE_UM), size_px: int = PATCH_SIZE_PX,
                    min_tissue: float = MIN_TISSUE,
                    qc_png: str | Path | None = None, workers: int | None = None) -> PatchSummary:
    """Write ``out`` (HEST layout) with one ``size_um`` window per spot, resized to ``size_px``.

    ``centres_px`` are level-0 pixel (x, y) centres, ``mpp`` the level-0 µm per pixel. Spots
    whose patch has a tissue fraction below ``min_tissue`` are dropped and counted.
    """
    image_path = Path(image_path)
    sample = sample or Path(out).stem
    centres = np.asarray(centres_px, dtype=np.float64)
    barcodes = [str(b) for b in barcodes]
    _check_inputs(image_path, centres, mpp, barcodes, size_um, size_px, min_tissue, sample)
    side_l0 = size_um / mpp
    workers = workers or min(4, os.cpu_count() or 1)
    with open_slide(image_path, downsample=side_l0 / size_px) as reader:
        _check_inside(reader, centres, barcodes, sample)
        thumb, scale = reader.thumbnail(THUMB_SIDE)
        mask, threshold = tissue_mask(np.asarray(thumb))
        fractions = window_fractions(mask, scale, centres, side_l0)
        kept = fractions >= min_tissue
        n, n_kept = len(centres), int(kept.sum())
        if n_kept == 0:
            raise input_error(f"sample {sample} ({image_path})",
                              f"all {n} patches have less than {min_tissue:.0%} tissue",
                              "check the spot coordinates and mpp, or lower --min-tissue")
        index = np.flatnonzero(kept)

        def one(i: int) -> np.ndarray:
            return reader.read_window(centres[i, 0], centres[i, 1], side_l0, size_px)

        needs = n_kept * size_px * size_px * 3  # uncompressed: lzf only makes it smaller
        # no chunk cache: HDF5 crashes the interpreter flushing a cache the disk cannot take
        with atomic_output(out, needs=needs) as tmp, h5py.File(tmp, "w", rdcc_nbytes=0) as h5, \
                ThreadPoolExecutor(workers) as pool:
            img = h5.create_dataset("img", shape=(n_kept, size_px, size_px, 3), dtype=np.uint8,
                                    chunks=(1, size_px, size_px, 3), compression="lzf")
            for start in tqdm(range(0, n_kept, BLOCK), desc=f"patches {sample}", unit="block",
                              leave=False):
                img[start:start + BLOCK] = np.stack(list(pool.map(one, index[start:start + BLOCK])))
            h5.create_dataset("coords", data=np.rint(centres[kept]).astype(np.int64))
            h5.create_dataset("barcode", data=np.array([b.encode() for b in barcodes])[kept].reshape(-1, 1))
            h5.attrs.update({"pixel_size": size_um / size_px, "patch_size_um": float(size_um),
                             "patch_size_px": int(size_px), "mpp": float(mpp), "sample": sample,
                             "n_dropped_background": n - n_kept, "min_tissue": float(min_tissue)})
        if qc_png is not None:
            draw_qc(thumb, scale, centres, side_l0, kept, qc_png)
    log.info("%s: %d patches kept, %d dropped as background (<%.0f%% tissue, saturation > %.1f),"
             " read with %s", sample, n_kept, n - n_kept, 100 * min_tissue, threshold,
             reader.kind)
    return PatchSummary(n, n_kept, n - n_kept, kept, fractions, threshold, reader.kind)

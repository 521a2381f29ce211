"""Tissue versus background, segmented once per slide on a thumbnail.

Stained tissue is coloured; glass, white or tinted background, grey shadows and black
borders are much less so. Pixels are split by HSV saturation at Otsu's threshold (clamped
to a sane range), then the mask is closed and its holes filled, so pale tissue inside the
section (fat, lumina, loose stroma) counts as tissue as it does in HEST's segmentation.
A patch's tissue fraction is the share of its window covered by that mask.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SATURATION_RANGE = (15.0, 45.0)  # 0..255; glass (even tinted) lies below, H&E tissue above
CLOSING_FRACTION = 0.01  # closing radius as a fraction of the thumbnail's long side
MIN_OBJECT_FRACTION = 1e-4  # specks smaller than this share of the thumbnail are dropped


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation in 0..255 of a (..., 3) uint8 RGB array."""
    rgb = np.asarray(rgb)
    high = rgb.max(axis=-1).astype(np.float32)
    low = rgb.min(axis=-1).astype(np.float32)
    return np.where(high > 0, 255.0 * (high - low) / np.maximum(high, 1.0), 0.0)


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of values in 0..255 (maximises the between-class variance)."""
    hist = np.bincount(np.clip(values, 0, 255).astype(np.uint8).ravel(), minlength=256)
    hist = hist.astype(np.float64)
    levels = np.arange(256, dtype=np.float64)
    weight0 = np.cumsum(hist)
    weight1 = weight0[-1] - weight0
    sum0 = np.cumsum(hist * levels)
    mean0 = sum0 / np.maximum(weight0, 1)
    mean1 = (sum0[-1] - sum0) / np.maximum(weight1, 1)
    between = weight0 * weight1 * (mean0 - mean1) ** 2
    return float(np.argmax(between)) + 0.5


def tissue_mask(thumbnail_rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """Boolean tissue mask of a thumbnail and the saturation threshold used."""
    sat = ndimage.median_filter(saturation(thumbnail_rgb).astype(np.uint8), size=3)
    threshold = float(np.clip(otsu_threshold(sat), *SATURATION_RANGE))
    mask = sat > threshold
    # closing with a disk through distance transforms: O(pixels) whatever the radius; the
    # padding keeps tissue that touches the border from being eroded away
    radius = max(1.0, CLOSING_FRACTION * max(mask.shape))
    pad = int(np.ceil(radius)) + 1
    grown = ndimage.distance_transform_edt(~np.pad(mask, pad)) <= radius
    mask = (ndimage.distance_transform_edt(grown) > radius)[pad:-pad, pad:-pad]
    mask = ndimage.binary_fill_holes(mask)
    labels, n = ndimage.label(mask)
    if n:
        sizes = np.bincount(labels.ravel())
        small = sizes < MIN_OBJECT_FRACTION * mask.size
        small[0] = False
        mask[small[labels]] = False
    return mask, threshold


def window_fractions(mask: np.ndarray, scale: float, centres_px: np.ndarray,
                     side_l0: float) -> np.ndarray:
    """Share of each level-0 square window (side ``side_l0`` around each centre) that is tissue.

    ``scale`` is level-0 pixels per mask pixel; parts of a window outside the image count as
    background. Uses a summed-area table, so it is O(1) per spot.
    """
    table = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    table[1:, 1:] = np.cumsum(np.cumsum(mask, axis=0), axis=1)
    half = side_l0 / 2 / scale
    c = np.asarray(centres_px, dtype=np.float64) / scale
    x0 = np.clip(np.rint(c[:, 0] - half), 0, mask.shape[1]).astype(np.int64)
    x1 = np.clip(np.rint(c[:, 0] + half), 0, mask.shape[1]).astype(np.int64)
    y0 = np.clip(np.rint(c[:, 1] - half), 0, mask.shape[0]).astype(np.int64)
    y1 = np.clip(np.rint(c[:, 1] + half), 0, mask.shape[0]).astype(np.int64)
    inside = table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]
    area = max(1.0, float(np.rint(2 * half)) ** 2)
    return np.clip(inside / area, 0.0, 1.0)

"""Patch extraction: one fixed physical window per spot, HEST-compatible h5 output.

``stflow patches --st st/S.h5ad --out patches/S.h5 --qc figures/qc/S.png``
"""

from __future__ import annotations

from stflow.data.patches.extract import PatchSummary, extract_patches
from stflow.data.patches.ingested import patches_from_h5ad
from stflow.data.patches.readers import SlideReader, open_slide
from stflow.data.patches.tissue import tissue_mask, window_fractions

__all__ = ["PatchSummary", "SlideReader", "extract_patches", "open_slide", "patches_from_h5ad",
           "tissue_mask", "window_fractions"]

"""Patch extraction: one fixed physical window per spot, HEST-compatible h5 output.

``stflow patches --st st/S.h5ad --out patches/S.h5 --qc figures/qc/S.png``
"""

from __future__ import annotations

import argparse

from stflow.data.patches.extract import PatchSummary, extract_patches
from stflow.data.patches.ingested import patches_from_h5ad
from stflow.data.patches.readers import SlideReader, open_slide
from stflow.data.patches.tissue import tissue_mask, window_fractions

__all__ = ["PatchSummary", "SlideReader", "extract_patches", "open_slide", "patches_from_h5ad",
           "register", "tissue_mask", "window_fractions"]


def _run(args: argparse.Namespace) -> None:
    patches_from_h5ad(args.st, args.out, size_um=args.size_um, size_px=args.size_px,
                      min_tissue=args.min_tissue, qc_png=args.qc, workers=args.workers)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``stflow patches``."""
    parser = subparsers.add_parser("patches", help="cut one patch per spot into patches/{sample}.h5",
                                   description=__doc__)
    parser.add_argument("--st", required=True, help="ingested st/{sample}.h5ad")
    parser.add_argument("--out", required=True, help="output patches/{sample}.h5")
    parser.add_argument("--qc", default=None, help="QC thumbnail PNG (kept green, dropped red)")
    parser.add_argument("--size-um", type=float, default=112.0, help="patch side in microns")
    parser.add_argument("--size-px", type=int, default=224, help="patch side in pixels")
    parser.add_argument("--min-tissue", type=float, default=0.5,
                        help="drop patches with a smaller tissue fraction")
    parser.add_argument("--workers", type=int, default=None, help="reader threads")
    parser.set_defaults(func=_run)

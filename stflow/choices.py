"""Names and defaults the ``stflow`` command offers, in a module that imports nothing heavy.

The parser shows these in ``--help``; the library modules that act on them (sources,
splits, genes, download, device) import them from here, so each is defined once and
``stflow --help`` never loads numpy, torch or scanpy to print them.
"""

from __future__ import annotations

import argparse
import re

from stflow.catalogue import SOURCES as SOURCES  # the one list (stflow/catalogue.py)

SCHEMES = ("patient", "section")  # how stflow.data.splits builds folds
# whose spots calibrate the intervals (intervals.calibration; stflow.data.splits, final model)
CALIBRATIONS = ("auto", "patient", "within")
ALL_PATIENTS = "all"  # intervals.calibration_patients: every training patient of a fold
MIN_FRACTION = 0.10  # HEST: a target gene is expressed in this share of every sample's spots
HEST_REPO = "MahmoodLab/hest"  # the Hugging Face dataset HEST downloads come from
DEVICES = ("auto", "cpu", "cuda", "cuda:N")  # where torch runs (stflow.device.resolve_device)

# The patch a spot is predicted from: the defaults of config/schema.yaml's patches: (filled in
# by stflow.schema), of `stflow patches` and of the patch writers (stflow.data.patches);
# written as YAML writes them, so the workflow's params do not change with where they come from
PATCH_SIZE_UM = 112  # side in microns
PATCH_SIZE_PX = 224  # side in pixels
MIN_TISSUE = 0.5  # a patch with a smaller tissue fraction is dropped
PATCH_DEFAULTS = {"size_um": PATCH_SIZE_UM, "size_px": PATCH_SIZE_PX, "min_tissue": MIN_TISSUE}
# `stflow predict-slide --max-spots`: a slide with more spots is refused before any work
# (stflow.deploy.spot_budget, stflow.deploy.predict_slide.SlideOptions)
DEFAULT_MAX_SPOTS = 3_000_000

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def device_name(text: str) -> str:
    """An argparse type: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, refused before any work."""
    if not _DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"'{text}' is not a device: use {', '.join(DEVICES)}")
    return text

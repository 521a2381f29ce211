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

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def device_name(text: str) -> str:
    """An argparse type: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, refused before any work."""
    if not _DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"'{text}' is not a device: use {', '.join(DEVICES)}")
    return text

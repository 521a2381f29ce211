"""One place that turns a device name (``auto``, ``cpu``, ``cuda``, ``cuda:N``) into a device.

A model trained on a GPU must still predict on a CPU-only node, so asking for CUDA where
there is none falls back to the CPU with a warning instead of failing deep inside torch.
"""

from __future__ import annotations

import logging

import torch

from stflow.errors import StflowError

log = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; CUDA without a GPU → CPU (with a warning)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise StflowError(f"unknown device '{device}'. Fix: use auto, cpu, cuda or cuda:N"
                          ) from err
    if resolved.type not in ("cpu", "cuda"):
        raise StflowError(f"device '{device}' is not supported. Fix: use auto, cpu, cuda or "
                          "cuda:N")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            log.warning("device %s requested but no CUDA GPU is visible: using the CPU", device)
            return torch.device("cpu")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise StflowError(f"device '{device}': only {torch.cuda.device_count()} CUDA "
                              "GPU(s) are visible. Fix: use auto, cuda or a valid cuda:N")
    return resolved

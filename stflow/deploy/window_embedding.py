"""Patches of a new slide streamed straight into the model's encoder, batch by batch.

Windows are read ahead of the encoder, so reading overlaps the forward pass, and neither the
slide nor its patches are ever held whole: memory is a few batches of patches plus the (N, D)
features. On CUDA a large pyramid is read by worker processes (the GPU outruns threads); on
the CPU the forward needs every core and reading costs a few per cent of it, so threads
reading two batches ahead suffice and spare the processes' start-up (``window_reading``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from contextlib import closing
from dataclasses import dataclass

import numpy as np
import torch

from stflow.data.embedding import iter_features
from stflow.data.encoders import Encoder
from stflow.data.patches.readers import OpenSlideReader, SlideReader
from stflow.deploy.window_reading import process_batches, thread_batches

# Below this many windows, starting worker processes (0.2-3 s) costs more than it saves.
PROCESS_MIN_WINDOWS = 2048


@dataclass
class StreamTimes:
    """Seconds spent waiting for patches and in the encoder (they overlap otherwise)."""

    patches_wait_s: float = 0.0
    embed_s: float = 0.0


def window_batches(reader: SlideReader, centres: np.ndarray, side_l0: float, size_px: int,
                   batch_size: int, workers: int) -> Generator[torch.Tensor, None, None]:
    """(B, size_px, size_px, 3) uint8 batches of the windows around ``centres``, in order;
    the windows are read by ``workers`` threads, two batches ahead."""
    return thread_batches(reader, np.asarray(centres, dtype=np.float64), side_l0, size_px,
                          batch_size, workers)


def default_workers(device: torch.device) -> int:
    """Readers: on CUDA all CPUs of this job but one (which feeds the GPU), up to 16; on the
    CPU up to 4, since the forward needs the cores."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = cpus or 1
    return max(1, min(16, cpus - 1)) if device.type == "cuda" else min(4, cpus)


def use_processes(reader: SlideReader, n_windows: int, device: torch.device) -> bool:
    """Processes for a large OpenSlide pyramid on CUDA; threads otherwise (a plain image is
    decoded in memory once, and re-decoding it in every worker would multiply that memory)."""
    return (device.type == "cuda" and isinstance(reader, OpenSlideReader)
            and n_windows >= PROCESS_MIN_WINDOWS)


def embed_windows(reader: SlideReader, centres_px: np.ndarray, side_l0: float, size_px: int,
                  encoder: Encoder, device: torch.device, batch_size: int = 32,
                  workers: int | None = None, times: StreamTimes | None = None,
                  processes: bool | None = None) -> np.ndarray:
    """(N, D) float32 features of the windows around ``centres_px`` (as training embedded them).

    Same window (``side_l0`` level-0 pixels resized to ``size_px``), same encoder transform
    and precision as ``stflow patches`` followed by ``stflow embed``, and the same features
    whichever way the windows are read. ``workers`` readers (default: ``default_workers``);
    ``processes`` forces worker processes (True; for an OpenSlide pyramid) or threads (False)
    instead of ``use_processes``'s choice.
    """
    centres = np.asarray(centres_px, dtype=np.float64)
    features = np.empty((len(centres), encoder.feature_dim), dtype=np.float32)
    workers = workers or default_workers(device)
    if processes is None:
        processes = use_processes(reader, len(centres), device)
    if processes and isinstance(reader, OpenSlideReader):
        batches = process_batches(reader.path, centres, side_l0, size_px, batch_size, workers,
                                  pin_memory=device.type == "cuda")
    else:
        batches = window_batches(reader, centres, side_l0, size_px, batch_size, workers)
    start = 0
    with closing(_timed(batches, times)) as stream:  # readers stop even if the encoder fails
        for block in iter_features(encoder, stream, device, desc=f"embed {encoder.name}"):
            features[start:start + len(block)] = block
            start += len(block)
    return features


def _timed(batches: Generator[torch.Tensor, None, None], times: StreamTimes | None
           ) -> Generator[torch.Tensor, None, None]:
    """The batches, counting the seconds spent waiting for each and those spent on it; the
    readers stop when this ends, however it ends."""
    try:
        while True:
            began = time.perf_counter()
            batch = next(batches, None)
            if times is not None:
                times.patches_wait_s += time.perf_counter() - began
            if batch is None:
                return
            began = time.perf_counter()
            yield batch
            if times is not None:
                times.embed_s += time.perf_counter() - began
    finally:
        batches.close()

"""Patches of a new slide streamed straight into the model's encoder, batch by batch.

Windows are read by a thread pool one batch ahead of the encoder, so reading overlaps the
forward pass, and neither the slide nor its patches are ever held whole: memory is one or two
batches of patches plus the (N, D) features.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from stflow.data.embedding import iter_features
from stflow.data.encoders import Encoder
from stflow.data.patches.readers import SlideReader


@dataclass
class StreamTimes:
    """Seconds spent waiting for patches and in the encoder (they overlap otherwise)."""

    patches_wait_s: float = 0.0
    embed_s: float = 0.0


def window_batches(reader: SlideReader, centres: np.ndarray, side_l0: float, size_px: int,
                   batch_size: int, workers: int) -> Iterator[torch.Tensor]:
    """(B, size_px, size_px, 3) uint8 batches of the windows around ``centres``, in order;
    the windows of a batch are read by ``workers`` threads."""
    with ThreadPoolExecutor(workers) as pool:
        for start in range(0, len(centres), batch_size):
            block = centres[start:start + batch_size]
            yield torch.from_numpy(np.stack(list(pool.map(
                lambda c: reader.read_window(c[0], c[1], side_l0, size_px), block))))


def embed_windows(reader: SlideReader, centres_px: np.ndarray, side_l0: float, size_px: int,
                  encoder: Encoder, device: torch.device, batch_size: int = 32,
                  workers: int | None = None, times: StreamTimes | None = None) -> np.ndarray:
    """(N, D) float32 features of the windows around ``centres_px`` (as training embedded them).

    Same window (``side_l0`` level-0 pixels resized to ``size_px``), same encoder transform
    and precision as ``stflow patches`` followed by ``stflow embed``.
    """
    centres = np.asarray(centres_px, dtype=np.float64)
    features = np.empty((len(centres), encoder.feature_dim), dtype=np.float32)
    workers = workers or min(4, os.cpu_count() or 1)
    batches = window_batches(reader, centres, side_l0, size_px, batch_size, workers)
    prefetched = _prefetch(batches, times)
    start = 0
    for block in iter_features(encoder, prefetched, device, desc=f"embed {encoder.name}"):
        features[start:start + len(block)] = block
        start += len(block)
    return features


def _prefetch(batches: Iterator[torch.Tensor], times: StreamTimes | None
              ) -> Iterator[torch.Tensor]:
    """Produce the next batch in a background thread while the encoder runs on this one."""
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(next, batches, None)
        while True:
            began = time.perf_counter()
            batch = pending.result()
            if times is not None:
                times.patches_wait_s += time.perf_counter() - began
            if batch is None:
                return
            pending = pool.submit(next, batches, None)
            began = time.perf_counter()
            yield batch
            if times is not None:
                times.embed_s += time.perf_counter() - began

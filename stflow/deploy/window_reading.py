"""Windows of a slide read ahead of the encoder: by threads, or by worker processes.

On a GPU the encoder embeds thousands of patches a second while a window costs about 3 ms of
one core (tile decoding, compositing, resampling); threads share one GIL for the Python part
of each read, worker processes share nothing. An OpenSlide handle cannot cross processes,
so each worker opens the slide itself; batches come back in order as uint8 tensors (pinned
for the GPU copy on CUDA) through torch's DataLoader, which also stops its workers when the
consumer stops or fails. Both ways call ``read_block``, so they give the same windows.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import openslide
import torch

from stflow.data.patches.readers import OpenSlideReader, SlideReader
from stflow.errors import StflowError, input_error

# A forked child inherits torch's thread pools (and CUDA's) and any lock another thread of the
# parent holds; a forkserver forks from a clean process that has imported this module once:
# the first loader of a process waits for that import (2.7 s on 2 cores), later ones ~0.3 s.
START_METHOD = "forkserver"
READ_FIX = "check that the slide file is complete and readable (re-copy it)"


def read_block(reader: SlideReader, centres: np.ndarray, side_l0: float, size_px: int
               ) -> np.ndarray:
    """(B, size_px, size_px, 3) uint8 windows around ``centres``; a failed read names the slide
    and the window."""
    windows = []
    for cx, cy in centres:
        try:
            windows.append(reader.read_window(cx, cy, side_l0, size_px))
        except (OSError, openslide.OpenSlideError) as err:
            raise input_error(f"slide {reader.path}", f"the window around level-0 pixel "
                              f"({cx:.0f}, {cy:.0f}) cannot be read ({err})", READ_FIX) from err
    return np.stack(windows)


def blocks(centres: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """``centres`` cut into consecutive batches."""
    return [centres[start:start + batch_size] for start in range(0, len(centres), batch_size)]


def thread_batches(reader: SlideReader, centres: np.ndarray, side_l0: float, size_px: int,
                   batch_size: int, workers: int, ahead: int = 2
                   ) -> Generator[torch.Tensor, None, None]:
    """Batches of windows read by ``workers`` threads sharing ``reader``, ``ahead`` batches
    in advance."""
    pool = ThreadPoolExecutor(max(1, workers))
    pending: deque[list[Future]] = deque()
    todo = iter(blocks(centres, batch_size))
    try:
        while True:
            for block in todo:
                pending.append([pool.submit(read_block, reader, block[i:i + 1], side_l0,
                                            size_px) for i in range(len(block))])
                if len(pending) > ahead:
                    break
            if not pending:
                return
            yield torch.from_numpy(np.concatenate([f.result() for f in pending.popleft()]))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class SlideBatches(torch.utils.data.Dataset):
    """Item ``i`` = the windows of batch ``i``; each worker process opens the slide once.

    A read error comes back as the StflowError itself (not raised), so the caller raises
    it as written instead of DataLoader's "caught in worker" wrapping.
    """

    def __init__(self, path: Path, centres: np.ndarray, side_l0: float, size_px: int,
                 batch_size: int) -> None:
        self.path, self.side_l0, self.size_px = path, side_l0, size_px
        self.blocks = blocks(centres, batch_size)
        self._reader: SlideReader | None = None

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> torch.Tensor | StflowError:
        try:
            if self._reader is None:
                self._reader = self._open()
            return torch.from_numpy(read_block(self._reader, self.blocks[i], self.side_l0,
                                               self.size_px))
        except StflowError as err:
            return err

    def _open(self) -> SlideReader:
        """This worker's own handle on the slide (the caller's has already opened it)."""
        try:
            return OpenSlideReader(self.path)
        except OSError as err:
            raise input_error(f"slide {self.path}", f"a reader process cannot open it ({err})",
                              "leave the slide in place while it is predicted") from err


def process_batches(path: Path, centres: np.ndarray, side_l0: float, size_px: int,
                    batch_size: int, workers: int, pin_memory: bool = False
                    ) -> Generator[torch.Tensor, None, None]:
    """Batches of windows read by ``workers`` processes, each with its own OpenSlide handle,
    two batches ahead per worker; the workers start now (so they start while the caller
    readies the encoder) and stop when the returned generator ends or is closed."""
    context = multiprocessing.get_context(START_METHOD)
    context.set_forkserver_preload([__name__])  # no effect once the server runs: harmless
    loader = torch.utils.data.DataLoader(
        SlideBatches(path, centres, side_l0, size_px, batch_size), batch_size=None,
        shuffle=False, num_workers=workers, multiprocessing_context=context,
        pin_memory=pin_memory, prefetch_factor=2)
    return _drain(iter(loader), path)


def _drain(batches: Iterator[torch.Tensor | StflowError], path: Path
           ) -> Generator[torch.Tensor, None, None]:
    """The loader's batches; a read error raised as written, a dead worker named."""
    try:
        for batch in batches:
            if isinstance(batch, StflowError):
                raise batch
            yield batch
    except RuntimeError as err:  # a worker died (killed, out of memory, crashed in a library)
        raise input_error(f"slide {path}", f"a window reader process failed ({err})",
                          "retry with fewer --threads; from a Python script, call stflow "
                          "under `if __name__ == '__main__':` (workers start by forkserver)"
                          ) from err
    finally:
        batches._shutdown_workers()  # now, not whenever the iterator is collected

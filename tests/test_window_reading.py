"""predict-slide's windows read by worker processes: the same windows, in the same order and
with the same features as threads or a single reader, errors named, and no process left."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import tifffile
import torch
from slide_models import ENCODER
from slides import aperio_slide, tissue_like, write_pyramid_tiff

from stflow.data.embedding import iter_features
from stflow.data.encoders import load_encoder
from stflow.data.patches import open_slide
from stflow.data.patches.readers import OpenSlideReader
from stflow.deploy.window_embedding import embed_windows, window_batches
from stflow.deploy.window_reading import process_batches
from stflow.errors import StflowError

SIDE_L0, SIZE_PX, BATCH = 224.0, 64, 8  # 112 µm windows of the 0.499 µm/px Aperio slide
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def centres() -> np.ndarray:
    """40 spots over the 2220 x 2967 px slide, the first and last rows partly off the image."""
    xs, ys = np.linspace(-60.0, 2280.0, 8), np.linspace(-60.0, 3020.0, 5)
    return np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2) + 0.37  # off the pixel grid


@pytest.fixture(scope="module")
def one_by_one(centres) -> np.ndarray:
    """Each window read in turn by one reader: what every other way must give."""
    with open_slide(aperio_slide()) as reader:
        return np.stack([reader.read_window(cx, cy, SIDE_L0, SIZE_PX) for cx, cy in centres])


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(ENCODER)


@pytest.fixture
def corrupt_slide(tmp_path) -> Path:
    """A pyramid whose header opens but whose every tile fails to decode."""
    path = tmp_path / "corrupt.tiff"
    write_pyramid_tiff(path, tissue_like(512, 512), mpp=0.5)
    with tifffile.TiffFile(path) as tif:
        tiles = [(o, n) for page in tif.pages
                 for o, n in zip(page.dataoffsets, page.databytecounts, strict=True)]
    data = bytearray(path.read_bytes())
    for offset, count in tiles:  # keep each zlib header, zero its deflate stream
        data[offset + 2:offset + count] = bytes(count - 2)
    path.write_bytes(bytes(data))
    return path


def reader_processes() -> set[int]:
    """This test process's descendants (the forkserver and any reader workers)."""
    return {child.pid for child in psutil.Process().children(recursive=True)}


def settled(expected: set[int], timeout_s: float = 10.0) -> set[int]:
    """The descendants once they match ``expected`` (or after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while (now := reader_processes()) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return now


def test_worker_processes_read_the_same_windows_as_one_reader_in_the_same_order(
        centres, one_by_one):
    batches = list(process_batches(aperio_slide(), centres, SIDE_L0, SIZE_PX, BATCH, 2))
    assert [tuple(b.shape) for b in batches] == [(BATCH, SIZE_PX, SIZE_PX, 3)] * 5
    assert all(b.dtype == torch.uint8 for b in batches)
    np.testing.assert_array_equal(torch.cat(batches).numpy(), one_by_one)
    assert (one_by_one[0, 0, 0] == 255).all()  # the off-image corner is white, as ever


def test_threads_reading_ahead_read_the_same_windows_in_the_same_order(centres, one_by_one):
    with open_slide(aperio_slide()) as reader:
        batches = list(window_batches(reader, centres, SIDE_L0, SIZE_PX, BATCH, 3))
    assert [len(b) for b in batches] == [BATCH] * 5
    np.testing.assert_array_equal(torch.cat(batches).numpy(), one_by_one)


@pytest.mark.slow
def test_features_are_identical_whether_windows_come_from_processes_threads_or_memory(
        centres, one_by_one, encoder):
    spots, patches = centres[:16], one_by_one[:16]
    with open_slide(aperio_slide()) as reader:
        assert isinstance(reader, OpenSlideReader)
        by_processes = embed_windows(reader, spots, SIDE_L0, SIZE_PX, encoder, CPU, BATCH,
                                     workers=2, processes=True)
        by_threads = embed_windows(reader, spots, SIDE_L0, SIZE_PX, encoder, CPU, BATCH,
                                   workers=2, processes=False)
    in_memory = np.concatenate(list(iter_features(
        encoder, [torch.from_numpy(patches[i:i + BATCH]) for i in range(0, 16, BATCH)], CPU)))
    assert by_processes.shape == (16, encoder.feature_dim)
    np.testing.assert_array_equal(by_processes, in_memory)
    np.testing.assert_array_equal(by_threads, in_memory)


def test_a_window_a_worker_cannot_read_is_reported_naming_the_slide_and_window(
        corrupt_slide):
    spots = np.array([[256.0, 256.0], [100.0, 100.0]] * 4)
    message = re.escape(f"slide {corrupt_slide}: the window around level-0 pixel (256, 256) "
                        "cannot be read")
    with pytest.raises(StflowError, match=message):
        list(process_batches(corrupt_slide, spots, 64.0, 32, 2, 2))


def test_a_slide_removed_under_the_workers_is_reported_naming_it(tmp_path, encoder):
    path = tmp_path / "moved.tiff"
    write_pyramid_tiff(path, tissue_like(512, 512), mpp=0.5)
    with open_slide(path) as reader:
        path.unlink()  # the caller's handle stays valid; the workers open the file anew
        with pytest.raises(StflowError, match=re.escape(str(path))):
            embed_windows(reader, np.array([[256.0, 256.0]] * 4), 64.0, 32, encoder, CPU, 2,
                          workers=2, processes=True)


def test_no_reader_process_outlives_a_finished_stopped_or_failed_embedding(
        centres, encoder, corrupt_slide):
    list(process_batches(aperio_slide(), centres[:8], SIDE_L0, SIZE_PX, BATCH, 1))  # warm-up
    before = reader_processes()  # the forkserver stays for later slides; workers must not

    list(process_batches(aperio_slide(), centres, SIDE_L0, SIZE_PX, BATCH, 2))
    assert settled(before) == before

    stream = process_batches(aperio_slide(), centres, SIDE_L0, SIZE_PX, BATCH, 2)
    next(stream)
    assert reader_processes() - before  # the workers run (so the check can see them)
    stream.close()  # the consumer stops early
    assert settled(before) == before

    with pytest.raises(StflowError):
        list(process_batches(corrupt_slide, centres[:8] / 8, 64.0, 32, 2, 2))
    assert settled(before) == before

    wrong = dataclasses.replace(encoder, feature_dim=encoder.feature_dim + 1)
    with open_slide(aperio_slide()) as reader, pytest.raises(StflowError, match="features"):
        embed_windows(reader, centres[:4], SIDE_L0, SIZE_PX, wrong, CPU, 2, workers=2,
                      processes=True)  # the encoder fails while the workers read ahead
    assert settled(before) == before


INTERRUPTED = textwrap.dedent("""
    import os, signal, sys, time
    import numpy as np, psutil
    from stflow.deploy.window_reading import process_batches

    if __name__ == "__main__":
        # Ctrl-C's handler, whatever this process inherited: a job started in the background
        # (`cmd &`, nohup, some CI runners) inherits SIGINT ignored, and the signal below
        # would then do nothing
        signal.signal(signal.SIGINT, signal.default_int_handler)
        centres = np.stack(np.meshgrid(np.arange(8) * 250.0, np.arange(8) * 350.0), -1)
        try:
            for i, _ in enumerate(process_batches(sys.argv[1], centres.reshape(-1, 2),
                                                  224.0, 64, 4, 2)):
                if i == 1:  # as Ctrl-C would, while the workers read ahead
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(30)
            sys.exit("not interrupted")
        except KeyboardInterrupt:
            pass
        deadline = time.monotonic() + 10  # workers are the forkserver's children
        while time.monotonic() < deadline:
            workers = [w for c in psutil.Process().children() for w in c.children()]
            if not workers:
                break
            time.sleep(0.1)
        print(len(workers))
""")


@pytest.mark.slow
def test_an_interrupted_embedding_stops_its_workers_without_hanging(tmp_path):
    script = tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(script), str(aperio_slide())], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["0"]

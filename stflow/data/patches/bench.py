"""Patches of a HEST-Benchmark sample: its published ``patches/{id}.h5`` has no whole slide
behind it, so ``patches/{sample}.h5`` is written from those patches instead of cut anew.

The ingested spots are looked up by barcode, resized to ``size_px`` and written in the
ingested order; spots the bench file lacks are dropped and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
from PIL import Image
from tqdm import tqdm

from stflow.atomic import atomic_output
from stflow.choices import PATCH_SIZE_PX, PATCH_SIZE_UM
from stflow.data.patches.extract import BLOCK, PatchSummary
from stflow.data.patches.qc import draw_qc
from stflow.errors import input_error

log = logging.getLogger(__name__)

BENCH_MPP = 0.5  # HEST-bench patches are 224 px at 0.5 µm/px (20x): 112 µm wide
PATCH_FILE_SUFFIXES = {".h5", ".hdf5"}


def is_patch_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in PATCH_FILE_SUFFIXES


def _read_index(h5: h5py.File, path: Path) -> dict[str, int]:
    """Barcode -> row of a bench patch file (``img``, ``barcode``; HEST's layout)."""
    missing = [key for key in ("img", "barcode") if not isinstance(h5.get(key), h5py.Dataset)]
    if missing:
        raise input_error(path, f"lacks the datasets {missing}",
                          "use the HEST-bench patches/{id}.h5 as published")
    img = h5["img"]
    if img.ndim != 4 or img.shape[3] != 3 or img.shape[1] != img.shape[2]:
        raise input_error(path, f"img has shape {img.shape}, expected (N, S, S, 3)",
                          "use the HEST-bench patches/{id}.h5 as published")
    if img.dtype != np.uint8:  # a cast would wrap values above 255 into other colours
        raise input_error(path, f"img holds {img.dtype}, not uint8 RGB",
                          "use the HEST-bench patches/{id}.h5 as published")
    raw = np.asarray(h5["barcode"]).reshape(-1)
    barcodes = [b.decode() if isinstance(b, bytes) else str(b) for b in raw]
    if len(barcodes) != img.shape[0]:
        raise input_error(path, f"{len(barcodes)} barcodes for {img.shape[0]} patches",
                          "download the bench task again")
    return {b: i for i, b in enumerate(barcodes)}


@contextmanager
def _open_bench(path: Path) -> Iterator[h5py.File]:
    """The bench file open for reading; one that is not HDF5 (cut short, an HTML error page
    saved by a failed download) is refused by name, not as h5py's OSError."""
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise input_error(path, f"not a readable HDF5 file ({err})",
                          "download the bench task again (it ships patches/{id}.h5)") from None
    with handle:
        yield handle


def patches_from_bench_h5(bench_h5: str | Path, centres_px: np.ndarray, *, mpp: float,
                          barcodes: Sequence[str], out: str | Path, sample: str,
                          size_um: float = float(PATCH_SIZE_UM), size_px: int = PATCH_SIZE_PX,
                          qc_png: str | Path | None = None, **_: object) -> PatchSummary:
    """Write ``out`` (our patches layout) from a bench patch file, in the ingested order."""
    bench_h5 = Path(bench_h5)
    if not bench_h5.is_file():
        raise input_error(bench_h5, "HEST-bench patch file not found",
                          "download the bench task again (it ships patches/{id}.h5)")
    centres = np.asarray(centres_px, dtype=np.float64)
    barcodes = [str(b) for b in barcodes]
    with _open_bench(bench_h5) as src:
        index = _read_index(src, bench_h5)
        rows = np.array([index.get(b, -1) for b in barcodes])
        kept = rows >= 0
        n, n_kept = len(barcodes), int(kept.sum())
        if n_kept == 0:
            raise input_error(bench_h5, f"holds none of the {n} ingested barcodes of {sample}",
                              "ingest the sample from the same bench task as its patches")
        side = int(src["img"].shape[1])
        bench_um = side * BENCH_MPP
        if abs(bench_um - size_um) > 0.01 * size_um:
            log.warning("%s: bench patches are %.0f µm wide, not patches.size_um=%.0f; "
                        "they are resized, not re-cut", sample, bench_um, size_um)
        needs = n_kept * size_px * size_px * 3  # uncompressed: lzf only makes it smaller
        # no chunk cache: HDF5 crashes the interpreter flushing a cache the disk cannot take
        with atomic_output(out, needs=needs) as tmp, h5py.File(tmp, "w", rdcc_nbytes=0) as h5:
            img = h5.create_dataset("img", shape=(n_kept, size_px, size_px, 3), dtype=np.uint8,
                                    chunks=(1, size_px, size_px, 3), compression="lzf")
            wanted = rows[kept]
            for start in tqdm(range(0, n_kept, BLOCK), desc=f"bench patches {sample}",
                              unit="block", leave=False):
                block = wanted[start:start + BLOCK]
                order = np.argsort(block)  # h5py reads increasing indices
                patches = np.empty((len(block), side, side, 3), np.uint8)
                patches[order] = src["img"][np.sort(block)]
                if side != size_px:
                    patches = np.stack([np.asarray(Image.fromarray(p).resize(
                        (size_px, size_px), Image.Resampling.BILINEAR)) for p in patches])
                img[start:start + len(block)] = patches
            h5.create_dataset("coords", data=np.rint(centres[kept]).astype(np.int64))
            h5.create_dataset("barcode", data=np.array(
                [b.encode() for b in barcodes])[kept].reshape(-1, 1))
            h5.attrs.update({"pixel_size": bench_um / size_px, "patch_size_um": float(bench_um),
                             "patch_size_px": int(size_px), "mpp": float(mpp),
                             "sample": sample, "n_dropped_background": n - n_kept,
                             "min_tissue": 0.0, "source_patches": str(bench_h5)})
    if qc_png is not None:  # no slide to draw on: the spot layout on white
        extent = centres.max(0) + bench_um / mpp
        scale = max(float(extent.max()) / 1024, 1e-9)
        canvas = Image.new("RGB", tuple(int(v / scale) + 1 for v in extent), (255, 255, 255))
        draw_qc(canvas, scale, centres, bench_um / mpp, kept, qc_png)
    log.info("%s: %d bench patches kept, %d ingested spots not in %s", sample, n_kept,
             n - n_kept, bench_h5)
    return PatchSummary(n, n_kept, n - n_kept, kept, kept.astype(float), float("nan"),
                        "hest-bench")

"""Embed every patch of a sample with a frozen encoder into ``features/{encoder}/{sample}.zarr``.

Patches are read from the h5 as uint8 batches (in DataLoader workers on CUDA) and converted
on the device, so reading never starves the model. The store is written under a temporary
name and renamed when complete. Called by hand, a finished store with the same encoder,
weights and patch file (sha256) is reused; in the workflow Snakemake removes the output
before the job runs, so there its own rerun triggers decide and this check never fires.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
import zarr
from tqdm import tqdm

from stflow import __version__
from stflow.atomic import atomic_output, sha256_file
from stflow.data.encoders import PRECISIONS, Encoder, load_encoder
from stflow.data.graph import PATCHES_FIX, PatchSpots, open_patch_file, patch_spots
from stflow.device import resolve_device
from stflow.errors import StflowError, input_error
from stflow.verify import check_recorded

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PatchFile(PatchSpots):
    """What embedding needs from a patch h5, checked once."""

    path: Path
    n: int
    size_px: int
    sha256: str  # of the whole file: features are reused only for these very patches
    sample: str
    patch_size_um: float | None  # the patch's side in µm, when the file records it
    patch_um_per_px: float | None  # µm per patch pixel (HEST's ``pixel_size``)


def read_patch_file(path: str | Path) -> PatchFile:
    """Open and check a ``patches/{sample}.h5`` (HEST layout), without reading the images."""
    path = Path(path)
    check_recorded(path)
    with open_patch_file(path) as h5:
        if "img" not in h5:
            raise input_error(path, "dataset 'img' is missing", PATCHES_FIX)
        img, n = h5["img"], h5["img"].shape[0]
        if img.ndim != 4 or img.shape[3] != 3 or img.dtype != np.uint8:
            raise input_error(path, f"img has shape {img.shape} {img.dtype}, "
                              "expected (N, S, S, 3) uint8", PATCHES_FIX)
        spots = patch_spots(h5, path)
        if len(spots.coords) != n:
            raise input_error(path, f"{n} images but {len(spots.coords)} coords and barcodes",
                              PATCHES_FIX)
        size_px = img.shape[1]
        attrs = h5.attrs
        pixel_size = _positive(attrs.get("pixel_size"))
        size_um = _positive(attrs.get("patch_size_um"))
        if size_um is None and pixel_size is not None:
            size_um = pixel_size * size_px
        sample = attrs.get("sample", path.stem)
        sample = sample.decode() if isinstance(sample, bytes) else str(sample)
    return PatchFile(spots.coords, spots.mpp, spots.barcodes, path, n, size_px,
                     sha256_file(path), sample, size_um, pixel_size)


def _positive(value: object) -> float | None:
    """A positive finite float attribute, or None when absent or meaningless."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) and number > 0 else None


class _Batches(torch.utils.data.Dataset):
    """Batch ``i`` = patches [i·B, (i+1)·B) as one uint8 tensor; each worker opens the file."""

    def __init__(self, path: Path, n: int, batch_size: int) -> None:
        self.path, self.n, self.batch_size = path, n, batch_size
        self._h5: h5py.File | None = None

    def __len__(self) -> int:
        return (self.n + self.batch_size - 1) // self.batch_size

    def __getitem__(self, i: int) -> torch.Tensor:
        if self._h5 is None:
            self._h5 = h5py.File(self.path, "r")
        start = i * self.batch_size
        try:
            block = self._h5["img"][start:start + self.batch_size]
        except OSError as err:
            raise input_error(self.path, f"patches {start}.. cannot be read ({err})",
                              "the file is corrupt: re-run the patches stage") from err
        return torch.from_numpy(block)


def is_finished(store: str | Path, encoder: str, weights_sha256: str, patches: PatchFile
                ) -> bool:
    """True only for a complete store of the same encoder, weights and patch file.

    The patch file's sha256 is part of the key: patches re-cut with another size, mpp or
    tissue filter can keep the spot count, and their old features must not be reused.
    """
    store = Path(store)
    if not store.is_dir():
        return False
    try:
        group = zarr.open_group(store, mode="r")
        attrs = dict(group.attrs)
        return (attrs.get("complete") is True and attrs.get("encoder") == encoder
                and attrs.get("weights_sha256") == weights_sha256
                and attrs.get("patches_sha256") == patches.sha256
                and group["features"].shape[0] == patches.n)
    except Exception:  # unreadable or half-written: not finished, it will be replaced
        return False


def iter_features(encoder: Encoder, batches: Iterable[torch.Tensor],
                  device: torch.device, desc: str = "embed") -> Iterator[np.ndarray]:
    """Features of each uint8 batch; autocast on CUDA at the encoder's precision, fp32 on CPU."""
    model = encoder.model.to(device)
    autocast = device.type == "cuda" and encoder.spec.precision != "fp32"
    with torch.inference_mode():
        for batch in tqdm(batches, desc=desc, unit="batch", leave=False):
            x = encoder.preprocess(batch.to(device, non_blocking=True))
            with torch.autocast(device.type, dtype=PRECISIONS[encoder.spec.precision],
                                enabled=autocast):
                features = model(x).float()
            if features.shape[1] != encoder.feature_dim:
                raise StflowError(f"encoder '{encoder.name}' gave {features.shape[1]} features, "
                                  f"its registry entry says {encoder.feature_dim}. Fix: correct "
                                  "the entry's feature_dim")
            yield features.cpu().numpy()


def precision_used(encoder: Encoder, device: torch.device) -> str:
    """The precision the forward pass actually ran in (CPU is always fp32)."""
    return encoder.spec.precision if device.type == "cuda" else "fp32"


# xarray reads zarr v3 ``dimension_names`` as dims and the group's ``coordinates`` attribute
# as its coordinate variables: ``xarray.open_zarr(store)`` gives features(spot, feature).
DIMS = {"features": ("spot", "feature"), "barcode": ("spot",), "coords_um": ("spot", "axis"),
        "axis": ("axis",)}
COORDINATES = "barcode axis"


def write_spot_arrays(group: zarr.Group, patches: PatchFile) -> None:
    """``barcode``, ``coords_um`` and the ``axis`` labels (x, y), each with its dims."""
    barcode = group.create_array("barcode", shape=(patches.n,), dtype=str,
                                 dimension_names=DIMS["barcode"])
    barcode[:] = np.array(patches.barcodes, dtype=object)
    group.create_array("coords_um", data=patches.coords_um, dimension_names=DIMS["coords_um"])
    axis = group.create_array("axis", shape=(2,), dtype=str, dimension_names=DIMS["axis"])
    axis[:] = np.array(["x", "y"], dtype=object)


def patch_attrs(patches: PatchFile) -> dict[str, object]:
    """What a user needs to place the features: sample, patch window and scale."""
    return {"sample": patches.sample, "patch_size_um": patches.patch_size_um,
            "patch_size_px": patches.size_px, "um_per_px": patches.mpp,
            "patch_um_per_px": patches.patch_um_per_px, "coordinates": COORDINATES}


def consolidate(store: Path) -> None:
    """Consolidated metadata, so ``xarray.open_zarr`` opens the store without a warning.

    zarr warns that consolidation is not yet in the v3 spec; zarr-python and xarray read it.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata",
                                category=UserWarning)
        zarr.consolidate_metadata(str(store))


def embed(patches_h5: str | Path, *, encoder: str | Encoder, out_zarr: str | Path,
          weights: str | Path | None = None, batch_size: int = 64, device: str = "auto",
          num_workers: int | None = None) -> Path:
    """Write the features of every patch in ``patches_h5`` to ``out_zarr``; return its path."""
    patches = read_patch_file(patches_h5)
    enc = encoder if isinstance(encoder, Encoder) else load_encoder(encoder, weights)
    out = Path(out_zarr)
    if is_finished(out, enc.name, enc.weights_sha256, patches):
        log.info("%s is complete for %s with the same weights and patches: reused", out,
                 enc.name)
        return out
    if batch_size < 1:
        raise StflowError(f"batch size {batch_size}. Fix: use a positive --batch-size")
    dev = resolve_device(device)
    if num_workers is None:  # workers only pay off when a GPU is waiting for the data
        num_workers = min(8, max(1, (os.cpu_count() or 2) // 2)) if dev.type == "cuda" else 0
    loader = torch.utils.data.DataLoader(
        _Batches(patches.path, patches.n, batch_size), batch_size=None, shuffle=False,
        num_workers=num_workers, pin_memory=dev.type == "cuda",
        persistent_workers=False, prefetch_factor=4 if num_workers else None)
    with atomic_output(out, needs=patches.n * enc.feature_dim * 4) as tmp:
        group = zarr.open_group(tmp, mode="w", zarr_format=3)
        feats = group.create_array("features", shape=(patches.n, enc.feature_dim),
                                   chunks=(min(max(patches.n, 1), 4096), enc.feature_dim),
                                   dtype="float32", dimension_names=DIMS["features"])
        start = 0
        for features in iter_features(enc, loader, dev, desc=f"embed {enc.name}"):
            feats[start:start + len(features)] = features
            start += len(features)
        write_spot_arrays(group, patches)
        group.attrs.update({"encoder": enc.name, "weights_sha256": enc.weights_sha256,
                            "patches_sha256": patches.sha256,
                            "transform": enc.transform(),
                            "precision": precision_used(enc, dev),
                            "stflow_version": __version__, "feature_dim": enc.feature_dim,
                            **patch_attrs(patches)})
        group.attrs["complete"] = True  # last: only a fully written store carries it
        consolidate(tmp)
    log.info("%s: %d patches embedded with %s on %s", out, patches.n, enc.name, dev)
    return out

"""Encoder registry and embedding into zarr: deterministic, resumable, clear errors."""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest
import torch
import zarr
from slides import tissue_like

from stflow.atomic import sha256_file
from stflow.data.embedding import embed, read_patch_file
from stflow.data.encoders import describe_encoders, load_encoder
from stflow.errors import StflowError


def write_patches(path, n=6, size=64, mpp=0.5, seed=0):
    """A small HEST-layout patch file cut from a synthetic tissue image."""
    image = tissue_like(size * 4, size * 4, seed=seed)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, size * 3, size=(n, 2))
    img = np.stack([image[y:y + size, x:x + size] for x, y in starts])
    with h5py.File(path, "w") as h5:
        h5["img"] = img
        h5["coords"] = (starts + size // 2).astype(np.int64)
        h5["barcode"] = np.array([f"spot{i}".encode() for i in range(n)]).reshape(-1, 1)
        h5.attrs.update({"mpp": mpp, "pixel_size": mpp, "sample": "S"})
    return img


@pytest.fixture(scope="module")
def lite0():
    return load_encoder("efficientnet_lite0")


@pytest.mark.slow
def test_efficientnet_lite0_features_are_deterministic_and_round_trip(tmp_path, lite0):
    img = write_patches(tmp_path / "S.h5", n=6)
    first = embed(tmp_path / "S.h5", encoder=lite0, out_zarr=tmp_path / "a" / "S.zarr",
                  batch_size=4)
    embed(tmp_path / "S.h5", encoder=lite0, out_zarr=tmp_path / "b" / "S.zarr", batch_size=3)
    a, b = zarr.open_group(first, mode="r"), zarr.open_group(tmp_path / "b" / "S.zarr", mode="r")
    np.testing.assert_allclose(a["features"][:], b["features"][:], rtol=1e-5, atol=1e-5)
    assert a["features"].dtype == np.float32 and a["features"].shape == (6, 1280)
    with torch.inference_mode():
        direct = lite0.model(lite0.preprocess(torch.from_numpy(img))).numpy()
    np.testing.assert_allclose(a["features"][:], direct, rtol=1e-4, atol=1e-4)
    assert list(a["barcode"][:]) == [f"spot{i}" for i in range(6)]
    patches = read_patch_file(tmp_path / "S.h5")
    np.testing.assert_allclose(a["coords_um"][:], patches.coords * 0.5)
    assert a["coords_um"].dtype == np.float64
    attrs = dict(a.attrs)
    assert attrs["complete"] is True and attrs["encoder"] == "efficientnet_lite0"
    assert attrs["feature_dim"] == 1280 and attrs["precision"] == "fp32"
    assert attrs["weights_sha256"] == sha256_file(lite0.weights_path)
    assert attrs["transform"]["input_size"] == 224 and attrs["stflow_version"]


class Exploding(torch.nn.Module):
    """Stands in for a model that dies mid-run (killed job) after ``after`` batches."""

    def __init__(self, inner, after):
        super().__init__()
        self.inner, self.after, self.calls = inner, after, 0

    def forward(self, x):
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt("killed")
        return self.inner(x)


@pytest.mark.slow
def test_finished_store_is_reused_and_partial_store_is_not(tmp_path, lite0):
    from dataclasses import replace

    write_patches(tmp_path / "S.h5", n=4)
    out = tmp_path / "features" / "S.zarr"
    dying = replace(lite0, model=Exploding(lite0.model, after=1))
    with pytest.raises(KeyboardInterrupt):
        embed(tmp_path / "S.h5", encoder=dying, out_zarr=out, batch_size=2)
    assert not out.exists() and list(out.parent.iterdir()) == []  # nothing looks finished

    # a store left at the final path without complete=true (e.g. copied mid-write) is redone
    group = zarr.open_group(out, mode="w", zarr_format=3)
    group.create_array("features", shape=(4, 1280), dtype="float32")
    group.attrs.update({"encoder": "efficientnet_lite0", "weights_sha256": lite0.weights_sha256})
    embed(tmp_path / "S.h5", encoder=lite0, out_zarr=out, batch_size=2)
    done = zarr.open_group(out, mode="r")
    assert done.attrs["complete"] is True and np.abs(done["features"][:]).sum() > 0

    # finished with the same weights: reused without running the model at all
    never = replace(lite0, model=Exploding(lite0.model, after=0))
    embed(tmp_path / "S.h5", encoder=never, out_zarr=out, batch_size=2)
    assert never.model.calls == 0
    # other weights: recomputed
    other = replace(lite0, weights_sha256="0" * 64, model=Exploding(lite0.model, after=10))
    embed(tmp_path / "S.h5", encoder=other, out_zarr=out, batch_size=2)
    assert other.model.calls == 2


@pytest.mark.slow
def test_patches_recut_with_the_same_spot_count_are_embedded_again(tmp_path, lite0):
    from dataclasses import replace

    write_patches(tmp_path / "S.h5", n=4)
    out = tmp_path / "S.zarr"
    embed(tmp_path / "S.h5", encoder=lite0, out_zarr=out, batch_size=2)
    first = zarr.open_group(out, mode="r")
    assert first.attrs["patches_sha256"] == sha256_file(tmp_path / "S.h5")
    old = first["features"][:]
    # e.g. another patch size or tissue filter that happens to keep 4 spots
    write_patches(tmp_path / "S.h5", n=4, seed=1)
    counting = replace(lite0, model=Exploding(lite0.model, after=10))
    embed(tmp_path / "S.h5", encoder=counting, out_zarr=out, batch_size=2)
    assert counting.model.calls == 2
    again = zarr.open_group(out, mode="r")
    assert again.attrs["patches_sha256"] == sha256_file(tmp_path / "S.h5")
    assert not np.allclose(again["features"][:], old)


def test_local_weights_for_a_timm_model_and_their_checksum(tmp_path):
    import timm

    reference = timm.create_model("test_vit", pretrained=False, num_classes=0)
    weights = tmp_path / "test_vit.pth"
    torch.save(reference.state_dict(), weights)
    encoder = load_encoder("timm:test_vit", weights=weights)
    assert encoder.feature_dim == 64 and encoder.weights_sha256 == sha256_file(weights)
    write_patches(tmp_path / "S.h5", n=3, size=32)
    out = embed(tmp_path / "S.h5", encoder=encoder, out_zarr=tmp_path / "S.zarr", batch_size=2)
    features = zarr.open_group(out, mode="r")["features"][:]
    x = encoder.preprocess(torch.from_numpy(read_h5_img(tmp_path / "S.h5")))
    assert x.shape[-1] == 160  # resized to the model's input size
    with torch.inference_mode():
        np.testing.assert_allclose(features, reference.eval()(x).numpy(), rtol=1e-4, atol=1e-4)


def read_h5_img(path):
    with h5py.File(path, "r") as h5:
        return h5["img"][:]


def test_unknown_encoder_lists_the_registry():
    with pytest.raises(StflowError, match=r"unknown encoder 'unii'.*efficientnet_lite0.*uni"):
        load_encoder("unii")


@pytest.mark.slow
def test_missing_offline_weights_say_how_to_give_a_path(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(StflowError, match=r"encoder 'uni'.*--weights /path/to/pytorch_model.bin"
                                          r".*encoder_weights: \{uni: "):
        load_encoder("uni")
    with pytest.raises(StflowError, match=r"weights for encoder 'ciga' not found"):
        load_encoder("ciga", weights=tmp_path / "missing.ckpt")
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(StflowError, match=r"bad.bin: cannot read this checkpoint"):
        load_encoder("uni", weights=bad)


def test_corrupt_patch_file_is_named(tmp_path, lite0):
    bad = tmp_path / "S.h5"
    bad.write_bytes(b"\x89HDF garbage")
    with pytest.raises(StflowError, match=r"S.h5: not a readable HDF5 file.*patches stage"):
        embed(bad, encoder=lite0, out_zarr=tmp_path / "S.zarr")
    with h5py.File(tmp_path / "T.h5", "w") as h5:
        h5["img"] = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(StflowError, match=r"T.h5: dataset 'coords' is missing"):
        embed(tmp_path / "T.h5", encoder=lite0, out_zarr=tmp_path / "T.zarr")


def test_encoders_command_lists_the_registry(capsys):
    from stflow.cli import main

    assert main(["encoders"]) == 0
    printed = capsys.readouterr().out
    for name in ("efficientnet_lite0", "ciga", "uni", "gigapath", "uni2_h", "virchow2"):
        assert name in printed
    assert len(describe_encoders()) >= 8


def test_weights_are_hashed_once_then_read_from_the_cache(tmp_path, monkeypatch):
    import stflow.data.encoders.weights as weights

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    checkpoint = tmp_path / "model.bin"
    checkpoint.write_bytes(b"weights")
    digest = weights.weights_sha256(checkpoint)
    assert digest == hashlib.sha256(b"weights").hexdigest()
    monkeypatch.setattr(weights, "sha256_file", lambda path: pytest.fail("hashed twice"))
    assert weights.weights_sha256(checkpoint) == digest
    checkpoint.write_bytes(b"other weights")  # a changed file is hashed anew
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert weights.weights_sha256(checkpoint) == hashlib.sha256(b"other weights").hexdigest()


def test_xarray_opens_a_features_store_with_labelled_dims_coords_and_attributes(tmp_path,
                                                                                 lite0):
    import warnings

    import xarray as xr

    write_patches(tmp_path / "S.h5", n=5)
    with h5py.File(tmp_path / "S.h5", "a") as h5:
        h5.attrs.update({"patch_size_um": 32.0, "sample": "S1"})
    store = embed(tmp_path / "S.h5", encoder=lite0, out_zarr=tmp_path / "S.zarr", batch_size=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no consolidated-metadata or dtype warnings
        ds = xr.open_zarr(store)
    assert ds["features"].dims == ("spot", "feature") and ds["features"].shape == (5, 1280)
    assert ds["coords_um"].dims == ("spot", "axis")
    assert list(ds["axis"].values) == ["x", "y"]
    assert {"barcode", "axis"} <= set(ds.coords) and ds["barcode"].dims == ("spot",)
    assert [str(b) for b in ds["barcode"].values] == [f"spot{i}" for i in range(5)]
    np.testing.assert_allclose(ds["coords_um"].sel(axis="x").values,
                               read_patch_file(tmp_path / "S.h5").coords[:, 0] * 0.5)
    assert ds.attrs["sample"] == "S1" and ds.attrs["encoder"] == "efficientnet_lite0"
    assert ds.attrs["weights_sha256"] == lite0.weights_sha256
    assert ds.attrs["patch_size_um"] == 32.0 and ds.attrs["patch_size_px"] == 64
    assert ds.attrs["um_per_px"] == 0.5 and ds.attrs["patch_um_per_px"] == 0.5
    assert ds.attrs["complete"] is True


def read_hest_embeddings(path):
    """As HEST-bench reads an embedding h5 (``read_assets_from_h5`` then its probe code)."""
    assets = {}
    with h5py.File(path, "r") as f:
        for key in list(f.keys()):
            assets[key] = f[key][:]
    barcodes = assets["barcodes"].flatten().astype(str).tolist()
    return assets, barcodes


def test_export_features_writes_hest_benchs_embedding_layout(tmp_path, lite0):
    from stflow.cli import main

    write_patches(tmp_path / "S.h5", n=5)
    store = embed(tmp_path / "S.h5", encoder=lite0, out_zarr=tmp_path / "S.zarr", batch_size=4)
    out = tmp_path / "hest" / "S.h5"
    assert main(["export-features", str(store), "--format", "hest", "--out", str(out)]) == 0
    assets, barcodes = read_hest_embeddings(out)
    assert set(assets) == {"embeddings", "coords", "barcodes"}
    group = zarr.open_group(store, mode="r")
    assert assets["embeddings"].dtype == np.float32 and assets["embeddings"].shape == (5, 1280)
    np.testing.assert_array_equal(assets["embeddings"], group["features"][:])
    assert assets["barcodes"].shape == (5, 1) and assets["barcodes"].dtype.kind == "S"
    assert barcodes == [f"spot{i}" for i in range(5)]
    with h5py.File(tmp_path / "S.h5", "r") as patches:  # level-0 pixels, as HEST's patches
        np.testing.assert_array_equal(assets["coords"], patches["coords"][:])
    assert assets["coords"].dtype == np.int64 and sorted(p.name for p in out.parent.iterdir()) \
        == ["S.h5", "S.h5.sha256"]  # the file and its checksum, nothing temporary


def test_export_features_refuses_a_store_without_its_scale(tmp_path):
    from stflow.data.export import export_features_hest

    group = zarr.open_group(tmp_path / "old.zarr", mode="w", zarr_format=3)
    group["features"] = np.zeros((2, 3), np.float32)
    group["barcode"] = np.array(["a", "b"])
    group["coords_um"] = np.zeros((2, 2))
    group.attrs["complete"] = True
    with pytest.raises(StflowError, match=r"old.zarr: records no um_per_px.*re-run `stflow "
                                          r"embed`"):
        export_features_hest(tmp_path / "old.zarr", tmp_path / "old.h5")
    assert not (tmp_path / "old.h5").exists()

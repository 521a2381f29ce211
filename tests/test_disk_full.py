"""A full disk at each writing stage: one line naming the file, its filesystem's free space,
what the output needs and the fix; no traceback, no crash, no temporary left; once space is
freed, the same command writes what an undisturbed run writes.

Each test writes to a small tmpfs of its own, filled by a ballast file (mounting needs root,
as in CI; elsewhere the tests skip, saying so)."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pytest
from PIL import Image
from slide_models import deployable_model
from slides import tissue_like
from test_fold import _predict, _train, fold_inputs, registry  # noqa: F401 (fixtures)
from test_tables import write_run

from stflow.atomic import atomic_output, is_disk_full
from stflow.cli import main
from stflow.errors import DiskFullError

REPO = Path(__file__).resolve().parents[1]
DISK = 8 << 20  # bytes of each test's tmpfs


class SmallDisk:
    """A tmpfs at ``root``; ``fill`` leaves only ``leave`` bytes free, ``free`` undoes it."""

    def __init__(self, root: Path) -> None:
        self.root, self.ballast = root, root / "ballast"

    def fill(self, leave: int = 8 << 10) -> None:
        with open(self.ballast, "ab") as handle:
            handle.write(b"\0" * max(os.statvfs(self.root).f_bavail
                                     * os.statvfs(self.root).f_frsize - leave, 0))

    def free(self) -> None:
        self.ballast.unlink(missing_ok=True)

    def leftovers(self) -> list[str]:
        """Every name but the ballast's (temporaries are hidden siblings: listed too)."""
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*")
                      if p != self.ballast)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    root = tmp_path / "disk"
    root.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(root)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): run as root")
    try:
        yield SmallDisk(root)
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def refused(capsys: pytest.CaptureFixture, argv: list[str], path: Path) -> str:
    """Run ``stflow argv``, expect the one-line disk-full error naming ``path`` and exit
    status 1 (not the 2 of bad input: nothing is wrong with the input)."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err and str(path) in err and "free" in err and "Fix:" in err, err
    return err


def assert_full_disk_error(write: Callable[[], object], path: Path, disk: SmallDisk) -> None:
    """``write`` on the filled disk raises the project's one line and leaves nothing."""
    disk.fill()
    with pytest.raises(DiskFullError) as caught:
        write()
    message = str(caught.value)
    assert str(path) in message and "free" in message and "needs" in message, message
    assert "Fix: free space there" in message
    assert not [p for p in disk.leftovers() if ".tmp-" in p], disk.leftovers()
    disk.free()


def test_every_wrapping_of_a_full_disk_is_recognised(tmp_path):
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"), tmp_path)
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"), tmp_path)
    h5py_style = OSError("Can't synchronously write data (errno = 28, error message = "
                         "'No space left on device')")
    assert is_disk_full(h5py_style, tmp_path)
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("file write failed") from inner
    except RuntimeError as wrapped:
        assert is_disk_full(wrapped, tmp_path)
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"), tmp_path)


def test_a_quota_error_is_one_line_and_removes_the_temporary(tmp_path):
    out = tmp_path / "x.tsv"
    with pytest.raises(DiskFullError, match=r"x.tsv: no space left.*Fix: free space"):
        with atomic_output(out) as tmp:
            tmp.write_text("partial")
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
    assert list(tmp_path.iterdir()) == []


def write_st(folder: Path, n: int = 300) -> Path:
    """An ingested section over a tissue-like JPEG, ``n`` spots."""
    jpg = folder / "slide.jpg"
    Image.fromarray(tissue_like(1200, 1200)).save(jpg, quality=95)
    rng = np.random.default_rng(0)
    adata = ad.AnnData(np.ones((n, 3), dtype=np.int32))
    adata.obs_names = [f"B{i}" for i in range(n)]
    adata.obsm["spatial"] = rng.uniform(200, 1000, (n, 2))
    adata.uns.update({"mpp": 0.5, "image_path": str(jpg), "sample": "S9"})
    adata.write_h5ad(folder / "S9.h5ad")
    return folder / "S9.h5ad"


def read_patches(path: Path) -> tuple:
    with h5py.File(path, "r") as h5:
        return h5["img"][:], h5["coords"][:], h5["barcode"][:]


def test_patches_are_refused_up_front_then_written_once_space_is_freed(disk, tmp_path, capsys):
    st = write_st(tmp_path)
    out = disk.root / "patches" / "S9.h5"
    disk.fill()
    err = refused(capsys, ["patches", "--st", str(st), "--out", str(out), "--size-px", "64"], out)
    assert re.search(r"needs up to [\d.]+ MiB", err) and disk.leftovers() == ["patches"]
    disk.free()
    assert main(["patches", "--st", str(st), "--out", str(out), "--size-px", "64"]) == 0
    assert main(["patches", "--st", str(st), "--out", str(tmp_path / "S9.h5"),
                 "--size-px", "64"]) == 0
    for got, want in zip(read_patches(out), read_patches(tmp_path / "S9.h5"), strict=True):
        np.testing.assert_array_equal(got, want)


FILL_THEN_PATCH = """
import sys
import stflow.atomic
from stflow.cli import main
stflow.atomic.check_space = lambda path, needs: None  # as if the disk filled mid-write
sys.exit(main(sys.argv[1:]))
"""


def test_patches_filling_the_disk_mid_write_end_in_one_line_not_a_crash(disk, tmp_path):
    """HDF5 crashed the interpreter (exit 139) flushing its cache at exit: not any more."""
    st = write_st(tmp_path)
    out = disk.root / "S9.h5"
    disk.fill(leave=256 << 10)
    done = subprocess.run([sys.executable, "-c", FILL_THEN_PATCH, "patches", "--st", str(st),
                           "--out", str(out), "--size-px", "64"], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and f"{out}: no space left" in done.stderr
    assert "the output needs up to" in done.stderr and disk.leftovers() == []


@pytest.mark.slow
def test_embed_is_refused_up_front_and_a_store_filling_the_disk_is_named(disk, tmp_path,
                                                                        capsys, monkeypatch):
    from test_encoders_embed import write_patches

    write_patches(tmp_path / "S.h5", n=40)
    out = disk.root / "features" / "S.zarr"
    argv = ["embed", "--patches", str(tmp_path / "S.h5"), "--encoder", "efficientnet_lite0",
            "--out", str(out), "--device", "cpu"]
    disk.fill(leave=64 << 10)
    assert "needs up to 200.0 KiB" in refused(capsys, argv, out)
    monkeypatch.setattr("stflow.atomic.check_space", lambda path, needs: None)
    assert "no space left on its filesystem" in refused(capsys, argv, out)
    assert not [p for p in disk.leftovers() if ".tmp-" in p], disk.leftovers()
    disk.free()
    assert main(argv) == 0
    assert main([*argv[:-3], str(tmp_path / "S.zarr"), "--device", "cpu"]) == 0
    import zarr

    got, want = (zarr.open_group(str(p), mode="r") for p in (out, tmp_path / "S.zarr"))
    np.testing.assert_array_equal(got["features"][:], want["features"][:])


def test_graph(disk, tmp_path):
    from stflow.data.graph import write_graph

    coords = np.random.default_rng(2).choice(20000, size=(3000, 2), replace=False)
    with h5py.File(tmp_path / "S1.h5", "w") as handle:
        handle["coords"] = coords
        handle["barcode"] = np.array([[f"AC{i}".encode()] for i in range(len(coords))])
        handle.attrs["mpp"] = 0.5
    out = disk.root / "graph" / "S1.npz"
    assert_full_disk_error(lambda: write_graph(tmp_path / "S1.h5", out, k=8), out, disk)
    write_graph(tmp_path / "S1.h5", out, k=8)
    write_graph(tmp_path / "S1.h5", tmp_path / "S1.npz", k=8)
    with np.load(out) as got, np.load(tmp_path / "S1.npz") as want:
        for key in want.files:
            np.testing.assert_array_equal(got[key], want[key])


def test_train_and_predict(disk, fold_inputs, registry):  # noqa: F811 (fixtures)
    model = disk.root / "models" / "fold0"
    assert_full_disk_error(lambda: _train(fold_inputs, registry, model), model, disk)
    _train(fold_inputs, registry, model)
    predictions = disk.root / "predictions" / "fold0"
    assert_full_disk_error(lambda: _predict(fold_inputs, model, predictions), predictions, disk)
    _predict(fold_inputs, model, predictions)
    _predict(fold_inputs, model, fold_inputs["root"] / "undisturbed")
    got = ad.read_h5ad(predictions / "P2S1.h5ad")
    want = ad.read_h5ad(fold_inputs["root"] / "undisturbed" / "P2S1.h5ad")
    np.testing.assert_array_equal(got.X, want.X)


def test_tables(disk, tmp_path):
    from stflow.evaluation.paper_tables import write_paper_tables_of_run

    metrics, splits, benchmarks = write_run(tmp_path, ["stflow", "ridge"])
    out = disk.root / "tables"

    def tables(to: Path) -> list[Path]:
        return write_paper_tables_of_run(metrics, splits=splits, benchmarks=benchmarks,
                                         out_dir=to)

    disk.fill(leave=0)
    with pytest.raises(DiskFullError, match=r"tables/\w+\.(tsv|md): no space left"):
        tables(out)
    assert not [p for p in disk.leftovers() if ".tmp-" in p]
    disk.free()
    tables(tmp_path / "undisturbed")
    for path in tables(out):
        assert path.read_bytes() == (tmp_path / "undisturbed" / path.name).read_bytes()


def test_figures(disk, tmp_path):
    import pandas as pd

    from stflow.evaluation.figures import comparison_chart, training_curves

    history = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.0, 0.6, 0.5],
                            "val_loss": [1.0, 0.8, 0.7], "val_pearson": [0.1, 0.2, 0.25]})
    metrics = pd.DataFrame({"encoder": ["E"] * 4, "model": ["stflow", "stflow", "ridge", "ridge"],
                            "fold": ["fold0", "fold1"] * 2, "pearson_mean": [0.3, 0.4, 0.2, 0.1]})

    def figures(to: Path) -> list[Path]:
        training_curves({("E", "stflow", "fold0"): history}, to / "curves.png")
        comparison_chart(metrics, to / "comparison.png")
        return [to / "curves.png", to / "comparison.png"]

    out = disk.root / "figures"
    out.mkdir()
    assert_full_disk_error(lambda: figures(out), out / "curves.png", disk)
    undisturbed = figures(tmp_path)
    for got, want in zip(figures(out), undisturbed, strict=True):
        assert got.read_bytes() == want.read_bytes(), got


@pytest.mark.slow
def test_predict_slide(disk, tmp_path, capsys):
    model_dir = deployable_model(tmp_path / "model" / "final")
    jpg = tmp_path / "slide.jpg"
    Image.fromarray(tissue_like(1500, 1500)).save(jpg, quality=95)
    out = disk.root / "slides"
    argv = ["predict-slide", str(jpg), "--model-dir", str(model_dir), "--um-per-px", "1.0",
            "--device", "cpu", "--n-samples", "2", "--out"]
    disk.fill(leave=16 << 10)
    refused(capsys, [*argv, str(out)], out)
    assert not [p for p in disk.leftovers() if ".tmp-" in p], disk.leftovers()
    disk.free()
    assert main([*argv, str(out)]) == 0 and main([*argv, str(tmp_path / "undisturbed")]) == 0
    got, want = (ad.read_h5ad(p / "slide.h5ad") for p in (out, tmp_path / "undisturbed"))
    np.testing.assert_array_equal(got.X, want.X)
    assert sorted(got.layers) == sorted(want.layers)


# an "Exception ignored ... No space left" from a deallocator is the broken HDF5 state: fail
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_download_and_ingest(disk, tmp_path):
    from stflow.data.download import download_source
    from stflow.data.ingest import ingest_sample

    def download(to: Path) -> Path:
        return download_source("synthetic", to, patients=2, sections=1, grid=8, genes=50)

    raw = disk.root / "raw"
    disk.fill(leave=0)
    with pytest.raises(DiskFullError, match=r"no space left.*Fix: free space there"):
        download(raw)
    assert not [p for p in disk.leftovers() if ".tmp-" in p], disk.leftovers()
    disk.free()
    download(raw)
    download(tmp_path / "raw")
    for want in sorted(p for p in (tmp_path / "raw").rglob("*") if p.is_file()):
        got = raw / want.relative_to(tmp_path / "raw")
        assert got.read_bytes() == want.read_bytes(), got
    # ingest's h5ad (anndata's layout, written into a cache-less HDF5 file): one line, and
    # HDF5 still works in this process afterwards (anndata's own writer left it broken)
    sample = sorted(p.stem for p in (tmp_path / "raw" / "truth").glob("*.npz"))[0]
    st = disk.root / "st" / f"{sample}.h5ad"
    st.parent.mkdir()

    def ingest(out: Path) -> Path:
        return ingest_sample("synthetic", tmp_path / "raw", sample=sample, out=out)

    assert_full_disk_error(lambda: ingest(st), st, disk)
    ingest(st)
    ingest(tmp_path / "undisturbed.h5ad")
    got, want = ad.read_h5ad(st), ad.read_h5ad(tmp_path / "undisturbed.h5ad")
    np.testing.assert_array_equal(got.X.toarray() if hasattr(got.X, "toarray") else got.X,
                                  want.X.toarray() if hasattr(want.X, "toarray") else want.X)
    assert got.obs.equals(want.obs) and got.var.equals(want.var)

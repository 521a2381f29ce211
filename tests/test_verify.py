"""Damaged artifacts are found and named: every artifact records its checksum when written,
``stflow verify`` names each damaged or missing file with the command that redoes it, and a
stage reading a damaged features store names the file instead of the decoder's error."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from stflow.atomic import atomic_output, sidecar_of, write_json
from stflow.cli import main
from stflow.data.dataset import read_features
from stflow.errors import StflowError
from stflow.verify import verify_results


def features_store(path: Path, n: int = 500) -> Path:
    """A finished features store written as embed writes it (atomically, checksummed)."""
    import zarr

    with atomic_output(path) as tmp:
        group = zarr.open_group(tmp, mode="w", zarr_format=3)
        group.create_array("features", data=np.random.default_rng(0).normal(
            size=(n, 16)).astype(np.float32), chunks=(100, 16))
        group.create_array("barcode", data=np.array([f"b{i}" for i in range(n)]))
        group.create_array("coords_um", data=np.zeros((n, 2)))
        group.attrs["complete"] = True
    return path


def results(root: Path) -> Path:
    """A small results folder: a store, a JSON, a model folder and a table."""
    features_store(root / "features" / "enc" / "S1.zarr")
    write_json({"folds": []}, root / "splits.json")
    with atomic_output(root / "models" / "enc" / "ridge" / "seed0" / "fold0") as tmp:
        tmp.mkdir()
        write_json({"model": "ridge"}, tmp / "manifest.json")  # recorded by its folder
        (tmp / "weights.npy").write_bytes(b"\x01" * 4096)
    with atomic_output(root / "tables" / "summary.tsv") as tmp:
        tmp.write_text("a\tb\n1\t2\n")
    return root


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_every_artifact_records_a_checksum_that_sha256sum_checks(tmp_path):
    root = results(tmp_path / "results" / "tiny")
    assert sidecar_of(root / "splits.json").exists()
    assert not (root / "models/enc/ridge/seed0/fold0/manifest.json.sha256").exists()
    model = (root / "models/enc/ridge/seed0/fold0.sha256").read_text()
    assert "fold0/manifest.json" in model and "fold0/weights.npy" in model
    for sidecar in root.rglob("*.sha256"):
        checked = subprocess.run(["sha256sum", "--quiet", "-c", sidecar.name],
                                 cwd=sidecar.parent, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    checked, damaged = verify_results(root)
    assert checked >= 7 and damaged == []


def artifacts(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".sha256"))


@pytest.mark.parametrize("harm", ["flip", "truncate", "delete"])
def test_verify_names_every_harmed_file_with_the_rule_that_redoes_it(tmp_path, harm):
    root = results(tmp_path / "results" / "tiny")
    for path in artifacts(root):  # each file alone: none may be missed
        backup = path.read_bytes()
        if harm == "flip":
            flip_one_byte(path)
        elif harm == "truncate":
            path.write_bytes(backup[: len(backup) // 2])
        else:
            path.unlink()
        _, damaged = verify_results(root, threads=2)
        assert [d.path for d in damaged] == [path], path
        path.write_bytes(backup)
    assert verify_results(root)[1] == []


def test_the_command_lists_each_damaged_file_and_how_to_redo_it(tmp_path, capsys):
    root = results(tmp_path / "results" / "tiny")
    assert main(["verify", str(root)]) == 0
    assert "all " in capsys.readouterr().out
    chunk = next(p for p in (root / "features/enc/S1.zarr/features").rglob("*")
                 if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(chunk.read_bytes()[:10])
    (root / "tables" / "summary.tsv").unlink()
    assert main(["verify", str(root), "--threads", "2"]) == 2
    out, err = capsys.readouterr()
    assert f"{chunk}: damaged" in out and "(rule embed;" in out
    assert f"{root / 'tables' / 'summary.tsv'}: missing" in out and "(rule aggregate;" in out
    assert f"snakemake --cores all --forcerun {chunk}" in out
    assert "2 of" in err and "Traceback" not in err


def test_a_copied_results_folder_verifies_where_it_lands(tmp_path):
    root = results(tmp_path / "results" / "tiny")
    copy = shutil.copytree(root, tmp_path / "elsewhere")
    assert verify_results(copy)[1] == []


def test_reading_a_store_with_a_truncated_chunk_names_the_file_not_the_decoder(tmp_path):
    store = features_store(tmp_path / "S1.zarr")
    chunk = next(p for p in (store / "features").rglob("*")
                 if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(chunk.read_bytes()[: len(chunk.read_bytes()) // 2])
    with pytest.raises(StflowError, match=r"S1.zarr: features store is damaged.*Fix: delete "
                       r"it and run `stflow embed` again"):
        read_features(store)


def test_a_stage_reading_a_damaged_artifact_names_it_before_decoding_it(tmp_path):
    from stflow.crossval.predict import predict_fold
    from stflow.data.dataset import load_slide

    root = results(tmp_path / "results" / "tiny")
    store = root / "features" / "enc" / "S1.zarr"
    assert load_slide("S1", store).n_spots == 500  # as written: read
    chunk = next(p for p in (store / "features").rglob("*")
                 if p.is_file() and p.name != "zarr.json")
    flip_one_byte(chunk)  # a flip the decoder may not even notice
    with pytest.raises(StflowError, match=r"S1.zarr/features/.*damaged.*S1.zarr.sha256.*Fix: delete "
                       r".*S1.zarr and rerun the stage that writes it"):
        load_slide("S1", store)
    model = root / "models" / "enc" / "ridge" / "seed0" / "fold0"
    flip_one_byte(model / "weights.npy")
    with pytest.raises(StflowError, match=r"weights.npy: damaged.*fold0.sha256"):
        predict_fold(model, splits=root / "splits.json", fold="fold0", genes=root / "g.json",
                     st_dir=root, features_dir=root, graph_dir=None, out_dir=root / "p")

"""The hest source on tiny HEST-1k and HEST-Benchmark layouts written by the test."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import tifffile

from stflow.atomic import write_json
from stflow.data.sources import get_source, hest, write_st
from stflow.errors import StflowError

PITCH_PX = 200.0  # spot pitch in pixels: 100 µm Visium pitch -> 0.5 µm/px


def hest_adata(n_side: int = 3, float_counts: bool = True) -> ad.AnnData:
    """A HEST-style h5ad: counts in X (float, as HEST stores them), obsm['spatial'] in px."""
    rng = np.random.default_rng(0)
    n = n_side * n_side
    counts = rng.poisson(2.0, size=(n, 5)).astype(np.float32 if float_counts else np.int64)
    grid = np.stack(np.meshgrid(np.arange(n_side), np.arange(n_side)), -1).reshape(-1, 2)
    adata = ad.AnnData(X=sp.csr_matrix(counts),
                       obs=pd.DataFrame({"in_tissue": [1] * n},
                                        index=[f"spot{i}" for i in range(n)]),
                       var=pd.DataFrame(index=["ERBB2", "ESR1", "PGR", "KRT5", "CD3E"]))
    adata.obsm["spatial"] = 100.0 + grid * PITCH_PX
    return adata


def make_hest1k(root: Path, sample: str = "TENX95", patient: str | None = "Patient 1") -> Path:
    """st/{id}.h5ad, wsis/{id}.tif, metadata/{id}.json."""
    for folder in ("st", "wsis", "metadata"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    hest_adata().write_h5ad(root / "st" / f"{sample}.h5ad")
    tifffile.imwrite(root / "wsis" / f"{sample}.tif", np.full((600, 700, 3), 220, np.uint8))
    meta = {"id": sample, "patient": patient, "st_technology": "Visium",
            "pixel_size_um_estimated": 0.2737, "pixel_size_um_embedded": 0.2645,
            "spot_diameter": 55.0, "inter_spot_dist": 100.0}
    (root / "metadata" / f"{sample}.json").write_text(json.dumps(meta))
    return root


def make_bench(root: Path, samples: tuple[str, ...] = ("S1", "S2", "S3")) -> Path:
    """A bench task folder: adata/, patches/, splits/, var_50genes.json."""
    for folder in ("adata", "patches", "splits"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for sample in samples:
        adata = hest_adata()
        adata.write_h5ad(root / "adata" / f"{sample}.h5ad")
        with h5py.File(root / "patches" / f"{sample}.h5", "w") as f:
            f["img"] = np.zeros((adata.n_obs, 8, 8, 3), np.uint8)
            f["coords"] = adata.obsm["spatial"].astype(np.int64)
            f["barcode"] = np.array(adata.obs_names, dtype="S")[:, None]
    rows = {s: {"sample_id": s, "patches_path": f"patches/{s}.h5", "expr_path": f"adata/{s}.h5ad"}
            for s in samples}
    for k, test in enumerate(samples[:2]):
        train = [s for s in samples if s != test]
        pd.DataFrame([rows[s] for s in train]).to_csv(root / "splits" / f"train_{k}.csv", index=False)
        pd.DataFrame([rows[test]]).to_csv(root / "splits" / f"test_{k}.csv", index=False)
    (root / hest.GENES_FILE).write_text(json.dumps({"genes": ["ERBB2", "ESR1", "PGR"]}))
    return root


def test_hest1k_sample_reads_counts_pixels_metadata_mpp_and_patient(tmp_path: Path) -> None:
    make_hest1k(tmp_path)
    source = get_source("hest")
    assert source.list_samples(tmp_path) == ["TENX95"]
    sample = source.read_sample(tmp_path, "TENX95")
    assert sample.mpp == pytest.approx(0.2737)
    assert sample.patient == "Patient 1"
    assert sample.image_path == tmp_path / "wsis" / "TENX95.tif"
    np.testing.assert_allclose(sample.spatial_px[1], [100.0 + PITCH_PX, 100.0])


def test_hest1k_h5ad_follows_the_ingest_contract(tmp_path: Path) -> None:
    make_hest1k(tmp_path)
    out = write_st(hest.read_sample(tmp_path, "TENX95"), tmp_path / "out" / "TENX95.h5ad")
    adata = ad.read_h5ad(out)
    assert sp.isspmatrix_csr(adata.X) and adata.X.dtype == np.int32
    np.testing.assert_array_equal(adata.X.toarray(), hest_adata().X.toarray())
    assert adata.obs["in_tissue"].dtype == bool
    np.testing.assert_allclose(adata.obsm["spatial_um"], adata.obsm["spatial"] * 0.2737)
    assert adata.uns["source"] == "hest" and adata.uns["patient"] == "Patient 1"


def test_sample_without_patient_is_its_own_patient(tmp_path: Path) -> None:
    make_hest1k(tmp_path, patient=None)
    assert hest.read_sample(tmp_path, "TENX95").patient == "TENX95"


def test_metadata_without_pixel_size_is_refused(tmp_path: Path) -> None:
    make_hest1k(tmp_path)
    (tmp_path / "metadata" / "TENX95.json").write_text(json.dumps({"id": "TENX95"}))
    with pytest.raises(StflowError, match="TENX95.json: has no usable pixel_size_um_estimated"):
        hest.read_sample(tmp_path, "TENX95")


def test_normalised_counts_are_refused(tmp_path: Path) -> None:
    make_hest1k(tmp_path)
    adata = hest_adata()
    adata.X = adata.X.multiply(0.37).tocsr()
    adata.write_h5ad(tmp_path / "st" / "TENX95.h5ad")
    with pytest.raises(StflowError, match="non-integer values"):
        write_st(hest.read_sample(tmp_path, "TENX95"), tmp_path / "out" / "TENX95.h5ad")


def test_bench_sample_uses_its_patch_file_and_spot_pitch(tmp_path: Path) -> None:
    bench = make_bench(tmp_path / "IDC")
    config = {"task": "IDC"}
    assert hest.list_samples(tmp_path, config) == ["S1", "S2", "S3"]
    sample = hest.read_sample(tmp_path, "S2", config)
    assert sample.image_path == bench / "patches" / "S2.h5"
    assert sample.mpp == pytest.approx(100.0 / PITCH_PX)
    write_st(sample, tmp_path / "st" / "S2.h5ad")  # a patch file needs no bounds check


def test_bench_metadata_and_config_override_the_pitch_estimate(tmp_path: Path) -> None:
    make_bench(tmp_path)
    make_hest1k(tmp_path / "full", sample="S1")
    (tmp_path / "metadata").mkdir()
    (tmp_path / "metadata" / "S1.json").write_text(
        (tmp_path / "full" / "metadata" / "S1.json").read_text())
    assert hest.read_sample(tmp_path, "S1").mpp == pytest.approx(0.2737)
    assert hest.read_sample(tmp_path, "S2", {"mpp": 0.3}).mpp == pytest.approx(0.3)


def test_bench_splits_become_splits_json_with_validation_from_training(tmp_path: Path) -> None:
    make_bench(tmp_path)
    splits = hest.read_bench_splits(tmp_path)
    assert splits == {"scheme": "patient", "folds": [
        {"name": "fold0", "train": ["S2"], "val": ["S3"], "test": ["S1"]},
        {"name": "fold1", "train": ["S1"], "val": ["S3"], "test": ["S2"]}]}
    exact = hest.read_bench_splits(tmp_path, val_per_fold=0)
    assert exact["folds"][0] == {"name": "fold0", "train": ["S2", "S3"], "val": [], "test": ["S1"]}
    out = write_json(splits, tmp_path / "splits.json")
    assert json.loads(out.read_text()) == splits


def test_split_without_its_test_file_is_refused(tmp_path: Path) -> None:
    make_bench(tmp_path)
    (tmp_path / "splits" / "test_1.csv").unlink()
    with pytest.raises(StflowError, match="fold 1 lacks its test_1.csv"):
        hest.read_bench_splits(tmp_path)


def test_bench_gene_list_becomes_genes_json(tmp_path: Path) -> None:
    make_bench(tmp_path)
    assert hest.read_bench_genes(tmp_path) == {"genes": ["ERBB2", "ESR1", "PGR"],
                                               "protocol": "list", "n_top": 3}
    (tmp_path / hest.GENES_FILE).write_text("{}")
    with pytest.raises(StflowError, match="var_50genes.json: cannot read the gene list"):
        hest.read_bench_genes(tmp_path)


def fake_hub(monkeypatch: pytest.MonkeyPatch, calls: list[dict]) -> None:
    """Replace huggingface_hub.snapshot_download by a recorder that writes one sample."""
    def snapshot_download(**kwargs: object) -> str:
        calls.append(kwargs)
        make_hest1k(Path(str(kwargs["local_dir"])))
        return str(kwargs["local_dir"])

    monkeypatch.setitem(sys.modules, "huggingface_hub",
                        types.SimpleNamespace(snapshot_download=snapshot_download))


def test_download_asks_the_hub_for_the_samples_with_the_env_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[dict] = []
    fake_hub(monkeypatch, calls)
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    with caplog.at_level("DEBUG"):
        hest.download(tmp_path / "raw", samples=["TENX95"])
    assert calls == [{"repo_id": "MahmoodLab/hest", "repo_type": "dataset",
                      "allow_patterns": ["st/TENX95.h5ad", "wsis/TENX95.tif",
                                         "metadata/TENX95.json"],
                      "local_dir": str(tmp_path / "raw"),
                      "token": "hf_secret_value"}]
    assert "hf_secret_value" not in caplog.text
    hest.download(tmp_path / "raw", samples=["TENX95"])  # already there: used as is
    assert len(calls) == 1
    (tmp_path / "raw" / "metadata" / "TENX95.json").unlink()  # one file missing: fetch again
    hest.download(tmp_path / "raw", samples=["TENX95"])
    assert len(calls) == 2


def test_a_failed_hub_download_shows_the_hub_s_own_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def snapshot_download(**kwargs: object) -> str:
        raise OSError("401 Client Error: access to dataset MahmoodLab/hest is restricted")

    monkeypatch.setitem(sys.modules, "huggingface_hub",
                        types.SimpleNamespace(snapshot_download=snapshot_download))
    with pytest.raises(StflowError, match=r"MahmoodLab/hest: download failed \(OSError: 401 "
                       r"Client Error: access to dataset MahmoodLab/hest is restricted\)"):
        hest.download(tmp_path / "raw", samples=["TENX95"])


def test_bench_download_fetches_one_task_and_a_mirror_needs_no_network(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert hest.allow_patterns(hest.BENCH_REPO, None, "IDC") == ["IDC/*"]
    calls: list[dict] = []
    fake_hub(monkeypatch, calls)
    make_bench(tmp_path / "mirror" / "IDC")
    make_bench(tmp_path / "mirror" / "LUNG", samples=("L1", "L2"))
    hest.download(tmp_path / "raw", repo_id=hest.BENCH_REPO, task="IDC", mirror=tmp_path / "mirror")
    assert calls == []
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["IDC"]
    assert hest.list_samples(tmp_path / "raw", {"task": "IDC"}) == ["S1", "S2", "S3"]


def test_download_asks_only_for_the_files_the_readers_need() -> None:
    assert hest.allow_patterns(hest.BENCH_REPO, ["S1"], "IDC") == [
        "IDC/splits/*", "IDC/var_50genes.json", "IDC/adata/S1.h5ad", "IDC/patches/S1.h5"]
    patterns = hest.allow_patterns(hest.HEST_REPO, ["TENX95"], "IDC")
    assert "st/TENX95.h5ad" in patterns and "IDC/patches/TENX95.h5" in patterns
    assert not [p for p in patterns if p.startswith("*") or "cellvit" in p]


def test_a_configured_patient_wins_and_an_unknown_one_is_refused_when_required(
        tmp_path: Path) -> None:
    make_hest1k(tmp_path, patient=None)
    config = {"patients": {"TENX95": "P9"}, "require_patient": True}
    assert hest.read_sample(tmp_path, "TENX95", config).patient == "P9"
    with pytest.raises(StflowError, match="TENX95.json: sample TENX95 has no patient.*"
                       "dataset.patients"):
        hest.read_sample(tmp_path, "TENX95", {"require_patient": True})


def test_bench_patches_become_our_patch_file_in_the_ingested_order(tmp_path: Path) -> None:
    from stflow.data.patches import patches_from_h5ad

    bench = make_bench(tmp_path / "IDC")
    with h5py.File(bench / "patches" / "S1.h5", "r+") as f:  # distinct patches, reversed order
        del f["img"], f["barcode"]
        f["img"] = np.stack([np.full((8, 8, 3), 10 * i, np.uint8) for i in range(8)])
        f["barcode"] = np.array([f"spot{i}" for i in range(8)][::-1], dtype="S")[:, None]
    st = tmp_path / "st" / "S1.h5ad"
    write_st(hest.read_sample(tmp_path, "S1", {"task": "IDC"}), st)
    summary = patches_from_h5ad(st, tmp_path / "patches.h5", size_um=112, size_px=16,
                                qc_png=tmp_path / "qc.png")
    assert (summary.n_spots, summary.n_kept) == (9, 8)  # spot8 has no bench patch
    with h5py.File(tmp_path / "patches.h5") as f:
        barcodes = [b.decode() for b in f["barcode"][:, 0]]
        assert barcodes == [f"spot{i}" for i in range(8)]
        assert f["img"].shape == (8, 16, 16, 3)
        assert [int(f["img"][i, 0, 0, 0]) for i in range(8)] == [70 - 10 * i for i in range(8)]
        assert f["coords"].shape == (8, 2) and f.attrs["n_dropped_background"] == 1
        assert f.attrs["patch_size_um"] == 4.0 and f.attrs["mpp"] > 0
    assert (tmp_path / "qc.png").read_bytes()[:4] == b"\x89PNG"


def test_bench_genes_cli_checks_the_ingested_samples(tmp_path: Path) -> None:
    from stflow.cli import main

    bench = make_bench(tmp_path / "IDC")
    st = tmp_path / "S1.h5ad"
    write_st(hest.read_sample(tmp_path, "S1", {"task": "IDC"}), st)
    out = tmp_path / "genes.json"
    assert main(["bench-genes", "--bench-dir", str(bench), "--st", str(st), "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert (written["genes"], written["scope"]) == (["ERBB2", "ESR1", "PGR"], "hest-bench")
    (bench / hest.GENES_FILE).write_text(json.dumps({"genes": ["ERBB2", "NOPE"]}))
    assert main(["bench-genes", "--bench-dir", str(bench), "--st", str(st), "--out", str(out)]) == 2

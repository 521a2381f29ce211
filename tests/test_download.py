"""Checksummed downloads, verified mirror copies and the completion manifest of raw/."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from stflow.data.sources import fetch as dl
from stflow.errors import StflowError


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_checksum_list_parses_sha256sum_format_and_skips_itself(tmp_path: Path) -> None:
    lines = [f"{sha(b'')}  ./SHA256SUMS", f"{sha(b'a')}  ./data/a.txt", f"{sha(b'b')}\tdata/b.txt"]
    (tmp_path / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    assert dl.read_checksums(tmp_path / "SHA256SUMS") == {"data/a.txt": sha(b"a"),
                                                           "data/b.txt": sha(b"b")}


def test_malformed_checksum_line_is_refused(tmp_path: Path) -> None:
    (tmp_path / "sums").write_text("not-a-hash data/a.txt\n")
    with pytest.raises(StflowError, match="line 1 is not 'SHA256  path'"):
        dl.read_checksums(tmp_path / "sums")


def test_fetch_verifies_the_hash_and_renames_only_on_success(tmp_path: Path) -> None:
    source = tmp_path / "published.bin"
    source.write_bytes(b"counts" * 1000)
    dest = tmp_path / "raw" / "data" / "file.bin"
    dl.fetch_url(source.as_uri(), dest, sha(source.read_bytes()))
    assert dest.read_bytes() == source.read_bytes()

    wrong = "0" * 64
    other = tmp_path / "raw" / "other.bin"
    with pytest.raises(StflowError, match=f"expected {wrong}, got {sha(source.read_bytes())}"):
        dl.fetch_url(source.as_uri(), other, wrong)
    assert sorted(p.name for p in other.parent.iterdir()) == ["data"]  # no file, no temporary


def test_unreachable_address_names_the_url_and_the_mirror_fix(tmp_path: Path) -> None:
    url = (tmp_path / "absent.bin").as_uri()
    with pytest.raises(StflowError, match="absent.bin: download failed.*--mirror-dir"):
        dl.fetch_url(url, tmp_path / "raw" / "x.bin", "0" * 64, attempts=1)


def test_mirror_copy_verifies_before_placing(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "data").mkdir(parents=True)
    (mirror / "data" / "a.txt").write_bytes(b"alpha")
    placed = dl.copy_from_mirror(mirror, "data/a.txt", tmp_path / "raw", sha(b"alpha"))
    assert placed.read_bytes() == b"alpha"

    (mirror / "data" / "b.txt").write_bytes(b"tampered")
    with pytest.raises(StflowError, match=r"mirror/data/b.txt: SHA-256 mismatch.*Fix: replace"):
        dl.copy_from_mirror(mirror, "data/b.txt", tmp_path / "raw", sha(b"beta"))
    assert not (tmp_path / "raw" / "data" / "b.txt").exists()


def test_missing_mirror_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(StflowError, match="c.txt: file is missing"):
        dl.copy_from_mirror(tmp_path, "c.txt", tmp_path / "raw", sha(b"c"))


def test_manifest_lists_every_file_with_size_and_hash(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "data").mkdir(parents=True)
    (raw / "data" / "a.txt").write_bytes(b"alpha")
    (raw / "b.txt").write_bytes(b"bb")
    (raw / ".cache" / "huggingface").mkdir(parents=True)
    (raw / ".cache" / "huggingface" / "meta").write_bytes(b"hub bookkeeping")
    manifest = dl.write_manifest(raw)
    assert manifest == raw / dl.MANIFEST
    assert manifest.read_text().splitlines() == [
        "path\tbytes\tsha256", f"b.txt\t2\t{sha(b'bb')}", f"data/a.txt\t5\t{sha(b'alpha')}"]
    dl.write_manifest(raw)  # rewriting does not list the manifest itself
    assert "MANIFEST" not in manifest.read_text()


def test_manifest_of_an_empty_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StflowError, match="holds no files"):
        dl.write_manifest(tmp_path)


def test_copy_tree_places_only_matching_files(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    for rel in ("IDC/adata/a.h5ad", "IDC/splits/train_0.csv", "LUNG/adata/b.h5ad"):
        (mirror / rel).parent.mkdir(parents=True, exist_ok=True)
        (mirror / rel).write_text(rel)
    dl.copy_tree(mirror, tmp_path / "raw", ["IDC/*"])
    placed = sorted(p.relative_to(tmp_path / "raw").as_posix()
                    for p in (tmp_path / "raw").rglob("*") if p.is_file())
    assert placed == ["IDC/adata/a.h5ad", "IDC/splits/train_0.csv"]
    with pytest.raises(StflowError, match="no files match"):
        dl.copy_tree(mirror, tmp_path / "raw2", ["COAD/*"])


def test_editing_the_mirror_in_place_later_leaves_raw_as_verified(tmp_path: Path) -> None:
    """raw/ holds copies, not hard links: rewriting a mirror file's bytes in place (same
    inode) after the download must not change raw/ behind its checksum."""
    mirror = tmp_path / "mirror"
    (mirror / "data").mkdir(parents=True)
    (mirror / "data" / "a.txt").write_bytes(b"alpha")
    (mirror / "IDC").mkdir()
    (mirror / "IDC" / "b.txt").write_bytes(b"bravo")
    placed = dl.copy_from_mirror(mirror, "data/a.txt", tmp_path / "raw", sha(b"alpha"))
    dl.copy_tree(mirror, tmp_path / "raw", ["IDC/*"])
    for rel in ("data/a.txt", "IDC/b.txt"):
        with open(mirror / rel, "r+b") as handle:  # in place: the inode stays the same
            handle.write(b"EDIT")
    assert placed.read_bytes() == b"alpha"
    assert (tmp_path / "raw" / "IDC" / "b.txt").read_bytes() == b"bravo"
    assert placed.stat().st_ino != (mirror / "data" / "a.txt").stat().st_ino


def test_copy_tree_copies_again_only_what_changed(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "IDC").mkdir(parents=True)
    (mirror / "IDC" / "a.txt").write_bytes(b"alpha")
    dl.copy_tree(mirror, tmp_path / "raw", None)
    first = (tmp_path / "raw" / "IDC" / "a.txt").stat().st_ino
    dl.copy_tree(mirror, tmp_path / "raw", None)
    assert (tmp_path / "raw" / "IDC" / "a.txt").stat().st_ino == first  # kept as it is
    (mirror / "IDC" / "a.txt").write_bytes(b"ALPHA")
    dl.copy_tree(mirror, tmp_path / "raw", None)
    assert (tmp_path / "raw" / "IDC" / "a.txt").read_bytes() == b"ALPHA"


def test_a_mirror_folder_that_does_not_exist_is_named_as_a_folder(tmp_path: Path) -> None:
    from stflow.data.sources import her2st

    absent = tmp_path / "no-such-mirror"
    with pytest.raises(StflowError, match=r"no-such-mirror: mirror folder does not exist\. "
                       r"Fix: pass the folder .*almaan/her2st"):
        her2st.download(tmp_path / "raw", mirror=absent, samples=["B4"])
    with pytest.raises(StflowError, match="no-such-mirror: mirror folder does not exist"):
        dl.copy_tree(absent, tmp_path / "raw", None)
    assert not (tmp_path / "raw").exists()


def run_cli(*argv: str) -> None:
    """Parse and run one of this module's subcommands, as `stflow` does."""
    import argparse

    from stflow.cli.data import register

    parser = argparse.ArgumentParser(prog="stflow")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    args.func(args)


def test_synthetic_download_ingest_and_samples_on_the_command_line(tmp_path: Path) -> None:
    import anndata as ad
    import pandas as pd

    raw = tmp_path / "raw"
    run_cli("download", "--source", "synthetic", "--out", str(raw), "--n-patients", "2",
            "--n-sections", "1", "--grid", "8", "--n-genes", "80", "--um-per-px", "2.0",
            "--expression-shift", "0")
    manifest = pd.read_csv(raw / dl.MANIFEST, sep="\t")
    assert not np.load(raw / "truth" / "P2S1.npz")["patient_log_shift"].any()
    assert "data/ST-cnts/P1S1.tsv.gz" in set(manifest["path"])
    assert manifest["sha256"].str.fullmatch("[0-9a-f]{64}").all()
    for sample in ("P1S1", "P2S1"):
        run_cli("ingest", "--source", "synthetic", "--raw-dir", str(raw), "--sample", sample,
                "--out", str(tmp_path / "st" / f"{sample}.h5ad"))
    adata = ad.read_h5ad(tmp_path / "st" / "P2S1.h5ad")
    assert adata.uns["patient"] == "P2" and adata.uns["source"] == "synthetic"
    assert adata.uns["mpp"] == pytest.approx(2.0, rel=0.01)  # recovered from the 200 µm grid
    run_cli("samples", "--st", *map(str, sorted((tmp_path / "st").glob("*.h5ad"))),
            "--out", str(tmp_path / "samples.tsv"))
    table = pd.read_csv(tmp_path / "samples.tsv", sep="\t")
    assert list(table["sample"]) == ["P1S1", "P2S1"] and list(table["patient"]) == ["P1", "P2"]


def test_ingest_refuses_options_that_do_not_apply(tmp_path: Path) -> None:
    with pytest.raises(StflowError, match="--image/--patient/--um-per-px do not apply to her2st"):
        run_cli("ingest", "--source", "her2st", "--raw-dir", str(tmp_path), "--sample", "B4",
                "--out", str(tmp_path / "B4.h5ad"), "--image", "x.jpg")


def test_visium_download_needs_a_mirror(tmp_path: Path) -> None:
    with pytest.raises(StflowError, match="visium has no public download"):
        run_cli("download", "--source", "visium", "--out", str(tmp_path / "raw"))

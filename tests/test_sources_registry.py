"""The stages reach every source through the `Source` registry: its download, the download
options it takes, and the ingest options it takes (the others refused, naming the fix)."""

from __future__ import annotations

import pytest

from stflow.choices import SOURCES
from stflow.data.download import download_source
from stflow.data.ingest import ingest_sample
from stflow.data.sources import get_source
from stflow.errors import StflowError


def test_every_source_says_which_download_options_it_takes():
    taken = {name: get_source(name).download_options for name in SOURCES}
    assert taken["her2st"] == {"mirror", "samples"}
    assert taken["hest"] == {"repo_id", "samples", "task", "mirror"}
    assert taken["visium"] == {"mirror", "samples"}
    assert taken["sheet"] == {"sheet", "samples", "mirror"}
    assert taken["synthetic"] == {"patients", "sections", "grid", "genes", "mpp", "seed",
                                  "expression_shift", "stain_shift"}


def test_download_refusals_come_from_the_source(tmp_path):
    with pytest.raises(StflowError, match="visium has no public download"):
        download_source("visium", tmp_path / "raw")
    with pytest.raises(StflowError, match="reads a sample sheet, not a mirror"):
        download_source("sheet", tmp_path / "raw", mirror=tmp_path)


@pytest.mark.parametrize(("source", "given", "message"), [
    ("her2st", {"image": "he.tif"}, "--image/--patient/--um-per-px do not apply to her2st"),
    ("synthetic", {"mpp": 1.0}, "--image/--patient/--um-per-px do not apply to synthetic"),
    ("hest", {"image": "he.tif"}, "--image does not apply to hest"),
    ("sheet", {"patient": "P1"}, "--image/--patient/--mpp do not apply to sheet"),
    ("visium", {"row": {"sample": "A"}}, "a sheet row does not apply to visium"),
    ("hest", {"row": {"sample": "A"}}, "a sheet row does not apply to hest"),
    ("visium", {"require_patient": True}, "visium sections carry no patient id"),
])
def test_ingest_refuses_options_a_source_does_not_take(tmp_path, source, given, message):
    with pytest.raises(StflowError, match=message):
        ingest_sample(source, tmp_path, sample="A", out=tmp_path / "A.h5ad", **given)
    assert not (tmp_path / "A.h5ad").exists()

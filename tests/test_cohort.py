"""The cohort table of predicted slides (stflow.deploy.cohort): per-gene slide means read a
row chunk at a time, the sheet's metadata typed, missing slides listed with their reason."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from stflow.deploy import cohort as cohort_module
from stflow.deploy.cohort import write_cohort
from stflow.errors import StflowError
from stflow.provenance import stflow_uns

GENES = ["ERBB2", "GATA3", "KRT5"]


def slide_h5ad(folder: Path, name: str, n: int, seed: int, genes=GENES) -> Path:
    rng = np.random.default_rng(seed)
    mean = rng.gamma(2.0, 1.0, (n, len(genes))).astype(np.float32)
    adata = ad.AnnData(X=mean, obs=pd.DataFrame({"shifted": rng.random(n) < 0.25},
                                                index=[f"{name}_{i}" for i in range(n)]),
                       var=pd.DataFrame(index=genes),
                       layers={"lower": mean - 0.5, "upper": mean + 1.0},
                       obsm={"spatial": rng.uniform(0, 4000, (n, 2))})
    adata.uns["stflow"] = stflow_uns(
        "slide_prediction", name, "log1p", model="ridge", fold="final", mpp=0.5,
        mpp_source="--um-per-px", tissue_area_mm2=3.25,
        intervals={"method": "normalised split-conformal", "level": 0.9,
                   "calibration": "patient", "calibrated_for": "a new patient"})
    path = folder / f"{name}.h5ad"
    adata.write_h5ad(path)
    return path


def check(folder: Path, name: str, readable: bool) -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"slide": name, "readable": readable,
                                **({} if readable else {"reason": f"{name}.jpg: truncated"})}))
    return path


def test_the_cohort_holds_each_slides_means_metadata_and_the_missing_ones(tmp_path,
                                                                         monkeypatch):
    monkeypatch.setattr(cohort_module, "CHUNK_ROWS", 7)  # means added up over row chunks
    h5ads = {"a": slide_h5ad(tmp_path, "a", 50, 0), "c": slide_h5ad(tmp_path, "c", 30, 1)}
    checks = {s: check(tmp_path, s, s != "b") for s in "abc"}
    metadata = {"a": {"age": "61", "arm": "A"}, "b": {"age": "", "arm": "B"},
                "c": {"age": "70", "arm": "A"}}
    out = tmp_path / "cohort"
    cohort = write_cohort(["a", "b", "c"], h5ads, checks, metadata, ["GATA3", "MISSING"],
                          out / "cohort.h5ad", out / "cohort.tsv", out / "maps")
    saved = ad.read_h5ad(out / "cohort.h5ad")
    assert list(saved.obs_names) == ["a", "c"] and list(saved.var_names) == GENES
    first = ad.read_h5ad(h5ads["a"])
    np.testing.assert_allclose(saved.X[0], first.X.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(saved.layers["upper"][0] - saved.X[0], 1.0, rtol=1e-5)
    assert saved.obs.loc["a", "share_shifted"] == pytest.approx(first.obs["shifted"].mean())
    assert saved.obs["age"].tolist() == [61, 70] and saved.obs["arm"].tolist() == ["A", "A"]
    assert saved.obs["spots"].tolist() == [50, 30]
    assert saved.obs.loc["c", "calibration"] == "patient"
    assert saved.uns["stflow"]["kind"] == "cohort" and saved.uns["stflow"]["model"] == "ridge"
    assert saved.uns["stflow"]["missing"] == {"b": "b.jpg: truncated"}
    table = pd.read_csv(out / "cohort.tsv", sep="\t")
    assert table["slide"].tolist() == ["a", "b", "c"]
    assert table["status"].tolist() == ["predicted", "missing", "predicted"]
    assert table.loc[1, "reason"] == "b.jpg: truncated" and table.loc[1, "arm"] == "B"
    assert {"ERBB2", "ERBB2_lower", "ERBB2_upper"} <= set(table.columns)
    assert sorted(p.name for p in (out / "maps").iterdir()) == ["GATA3.png"]
    assert cohort.n_obs == 2


def test_slides_of_different_models_are_refused_by_name(tmp_path):
    h5ads = {"a": slide_h5ad(tmp_path, "a", 10, 0),
             "b": slide_h5ad(tmp_path, "b", 10, 1, genes=["ERBB2", "GATA3"])}
    checks = {s: check(tmp_path, s, True) for s in h5ads}
    with pytest.raises(StflowError, match=r"b\.h5ad.*another model predicted it"):
        write_cohort(["a", "b"], h5ads, checks, {}, [], tmp_path / "c.h5ad",
                     tmp_path / "c.tsv", tmp_path / "maps")
    assert not (tmp_path / "c.h5ad").exists()


def test_a_cohort_with_no_readable_slide_says_so(tmp_path):
    checks = {"a": check(tmp_path, "a", False)}
    with pytest.raises(StflowError, match="none of the 1 slides could be read"):
        write_cohort(["a"], {}, checks, {}, [], tmp_path / "c.h5ad", tmp_path / "c.tsv",
                     tmp_path / "maps")

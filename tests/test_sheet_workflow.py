"""A user's own data through the workflow: a sample sheet of two patients' Space Ranger
folders (built from real her2st sections) runs to predictions and tables, and a changed row
reruns that sample only. Needs ../shared/data/her2st (skips locally without it, fails in CI)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import anndata as ad
import pandas as pd
import pytest
from spaceranger_layout import build_section, write_sheet
from test_workflow import jobs_of
from workflow_fixtures import TINY, snakemake

pytestmark = pytest.mark.workflow  # every test here spawns Snakemake (and reads ../shared)

TARGETS = ["results/mine/tables/summary.tsv", "results/mine/raw/DOWNLOAD_DONE"]


@pytest.fixture(scope="module")
def sheet_run(her2st_mirror: Path, tmp_path_factory) -> Path:
    """The tiny run's settings (small patches, 12 genes) with the ridge only, on B4 and C2."""
    workdir = tmp_path_factory.mktemp("sheet_run")
    sections = [build_section(her2st_mirror, s, workdir / "data") for s in ("B4", "C2")]
    write_sheet(workdir / "data" / "samples.tsv", sections)
    config = {**{k: v for k, v in TINY.items() if k != "simulate"},
              "dataset": {"name": "mine", "source": "sheet", "sheet": "data/samples.tsv"},
              "models": ["ridge"], "seeds": [0], "evaluation": {"bootstrap": 100}}
    (workdir / "sheet.yaml").write_text(json.dumps(config))
    result = snakemake(workdir, workdir / "sheet.yaml", "--cores", "2", *TARGETS, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir


def test_a_sheet_of_two_patients_runs_to_predictions_and_tables(sheet_run: Path) -> None:
    results = sheet_run / "results" / "mine"
    raw = pd.read_csv(results / "raw" / "sheet.tsv", sep="\t")
    assert list(raw["sample"]) == ["B4", "C2"] and all(Path(p).is_absolute()
                                                       for p in raw["spaceranger"])
    samples = pd.read_csv(results / "samples.tsv", sep="\t")
    assert dict(zip(samples["sample"], samples["patient"], strict=True)) == {"B4": "B", "C2": "C"}
    folds = json.loads((results / "splits.json").read_text())["folds"]
    assert sorted(tuple(f["test"]) for f in folds) == [("B4",), ("C2",)]  # one patient each
    for fold in ("fold0", "fold1"):
        assert list((results / "predictions" / "efficientnet_lite0" / "ridge" / "seed0"
                     / fold).glob("*.h5ad"))
    metrics = pd.read_csv(results / "tables" / "metrics.tsv", sep="\t")
    assert len(metrics) == 2 and metrics["pearson_mean"].notna().all()
    st = ad.read_h5ad(results / "st" / "C2.h5ad")
    assert {"gene_ids", "feature_types"} <= set(st.var) and {"array_row", "array_col"} <= set(st.obs)


def test_a_changed_row_reruns_that_sample_only(sheet_run: Path) -> None:
    sheet = sheet_run / "data" / "samples.tsv"
    text = sheet.read_text()
    try:
        sheet.write_text(re.sub(r"(\nC2\t.*\t)([0-9.]+)\n", lambda m: f"{m[1]}0.7\n", text))
        dry = snakemake(sheet_run, sheet_run / "sheet.yaml", "-n", *TARGETS)
        assert dry.returncode == 0, dry.stderr[-3000:]
        assert jobs_of(dry.stdout)["ingest"] == 1 and "st/C2.h5ad" in dry.stdout
        assert "st/B4.h5ad" not in dry.stdout.split("Job stats:")[0]
    finally:
        sheet.write_text(text)


def test_a_bad_sheet_stops_the_run_before_any_job(sheet_run: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.tsv").write_text("sample\tpatient\tspaceranger\timage\n"
                                      f"B4\t\t{sheet_run}/data/B4/outs\t\n")
    config = json.loads((sheet_run / "sheet.yaml").read_text())
    config["dataset"]["sheet"] = str(tmp_path / "bad.tsv")
    (tmp_path / "bad.yaml").write_text(json.dumps(config))
    dry = snakemake(tmp_path, tmp_path / "bad.yaml", "-n")
    output = dry.stdout + dry.stderr
    assert dry.returncode != 0
    assert "line 2 (sample B4), column patient: empty" in output
    assert "line 2 (sample B4), column image: empty" in output

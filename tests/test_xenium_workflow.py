"""Xenium sections through the workflow: a sample sheet of two patients' Xenium output
folders (built in the test, with their H&E and alignment) runs to predictions and tables
like any other sheet, and a bad Xenium row stops the run before any job."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import pandas as pd
import pytest
from test_workflow import jobs_of
from workflow_fixtures import TINY, snakemake
from xenium_layout import HE_UM_PER_PX, make_xenium

pytestmark = pytest.mark.workflow  # every test here spawns Snakemake

TARGETS = ["results/mine/tables/summary.tsv", "results/mine/raw/DOWNLOAD_DONE"]
HEADER = "sample\tpatient\txenium\timage\talignment\tunit\tbin_um\n"


@pytest.fixture(scope="module")
def xenium_run(tmp_path_factory) -> Path:
    """The tiny run's settings with the ridge only, on two Xenium sections (two patients):
    one binned from transcripts at the default 55 µm, one from cells at 50 µm."""
    workdir = tmp_path_factory.mktemp("xenium_run")
    rows = []
    for name, patient, unit, bin_um, seed in (("X1", "P1", "", "", 0),
                                              ("X2", "P2", "cells", "50", 1)):
        section = make_xenium(workdir / "data" / name, field_um=(900.0, 700.0), n_cells=900,
                              n_transcripts=60_000, seed=seed)
        rows.append(f"{name}\t{patient}\t{name}/xenium\t{name}/he.tif\t"
                    f"{name}/{section.alignment.name}\t"
                    f"{unit}\t{bin_um}\n")
    (workdir / "data" / "samples.tsv").write_text(HEADER + "".join(rows))
    config = {**{k: v for k, v in TINY.items() if k != "simulate"},
              "dataset": {"name": "mine", "source": "sheet", "sheet": "data/samples.tsv"},
              "models": ["ridge"], "seeds": [0], "evaluation": {"bootstrap": 100}}
    (workdir / "xenium.yaml").write_text(json.dumps(config))
    result = snakemake(workdir, workdir / "xenium.yaml", "--cores", "2", *TARGETS, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir


def test_a_xenium_sheet_of_two_patients_runs_to_predictions_and_tables(xenium_run: Path) -> None:
    results = xenium_run / "results" / "mine"
    samples = pd.read_csv(results / "samples.tsv", sep="\t")
    assert dict(zip(samples["sample"], samples["patient"], strict=True)) == {"X1": "P1",
                                                                             "X2": "P2"}
    assert samples["mpp"].round(6).eq(HE_UM_PER_PX).all()  # from the alignment
    folds = json.loads((results / "splits.json").read_text())["folds"]
    assert sorted(tuple(f["test"]) for f in folds) == [("X1",), ("X2",)]
    for fold in ("fold0", "fold1"):
        assert list((results / "predictions" / "efficientnet_lite0" / "ridge" / "seed0"
                     / fold).glob("*.h5ad"))
    metrics = pd.read_csv(results / "tables" / "metrics.tsv", sep="\t")
    assert len(metrics) == 2 and metrics["pearson_mean"].notna().all()
    for sample, unit, bin_um in (("X1", "transcripts", 55.0), ("X2", "cells", 50.0)):
        record = ad.read_h5ad(results / "st" / f"{sample}.h5ad", backed="r").uns["stflow"]
        assert (record["platform"], record["unit"], record["bin_um"]) == ("xenium", unit, bin_um)


def test_a_changed_xenium_row_reruns_that_sample_only(xenium_run: Path) -> None:
    sheet = xenium_run / "data" / "samples.tsv"
    text = sheet.read_text()
    try:
        sheet.write_text(text.replace("\tcells\t50\n", "\tcells\t40\n"))
        dry = snakemake(xenium_run, xenium_run / "xenium.yaml", "-n", *TARGETS)
        assert dry.returncode == 0, dry.stderr[-3000:]
        assert jobs_of(dry.stdout)["ingest"] == 1 and "st/X2.h5ad" in dry.stdout
        assert "st/X1.h5ad" not in dry.stdout.split("Job stats:")[0]
    finally:
        sheet.write_text(text)


def test_a_bad_xenium_sheet_stops_the_run_before_any_job(xenium_run: Path,
                                                         tmp_path: Path) -> None:
    data = xenium_run / "data"
    (tmp_path / "bad.csv").write_text("1,0\n0,1\n")
    (tmp_path / "bad.tsv").write_text(
        HEADER + f"X1\tP1\t{data}/X1/xenium\t{data}/X1/he.tif\t{tmp_path}/bad.csv\t\t0\n")
    config = json.loads((xenium_run / "xenium.yaml").read_text())
    config["dataset"]["sheet"] = str(tmp_path / "bad.tsv")
    (tmp_path / "bad.yaml").write_text(json.dumps(config))
    dry = snakemake(tmp_path, tmp_path / "bad.yaml", "-n")
    output = dry.stdout + dry.stderr
    assert dry.returncode != 0 and "Job stats" not in output
    assert "line 2 (sample X1), column alignment: " in output and "not a 3 x 3" in output
    assert "line 2 (sample X1), column bin_um: '0' is not a positive number" in output

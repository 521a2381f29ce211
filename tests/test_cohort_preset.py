"""The simulated cohort preset (config/cohort.yaml) at tiny size, through the pipeline: with
six patients every fold trains on five, so every fold validates and calibrates on a whole
training patient, and the deployed model on the out-of-fold predictions of all six; every
output says so. (Its full-size coverage: benchmarks/cohort_calibration.py.)"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from workflow_fixtures import REPO, snakemake, write_config

pytestmark = pytest.mark.workflow

PATIENTS = [f"P{p}" for p in range(1, 7)]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """The preset's study at tiny size (grid 8, 50 genes, ridge), tables and final model."""
    preset = yaml.safe_load((REPO / "config" / "cohort.yaml").read_text())
    workdir = tmp_path_factory.mktemp("cohort")
    config = write_config(workdir / "cohort.yaml", dataset=preset["dataset"],
                          simulate={**preset["simulate"], "grid": 8, "genes": 50},
                          splits=preset["splits"], models=["ridge"], seeds=[0],
                          intervals={"level": 0.9, "calibration": "patient"})
    run = snakemake(workdir, config, "--cores", "2", "all", "final_models", timeout=1500)
    assert run.returncode == 0, run.stderr[-3000:]
    return workdir / "results" / "cohort"


def test_every_fold_validates_on_a_whole_training_patient(cohort):
    folds = json.loads((cohort / "splits.json").read_text())["folds"]
    assert len(folds) == 6 and {f["calibration"] for f in folds} == {"patient"}
    for fold in folds:
        val = {s[:2] for s in fold["val"]}
        assert len(val) == 1 and len(fold["val"]) == 2  # both sections of one patient
        assert not val & {s[:2] for s in fold["train"] + fold["test"]}


def test_each_fold_model_is_calibrated_on_five_patients_it_never_trained_on(cohort):
    """The default intervals.calibration_patients (all): the validation patient and the
    four other training patients, each predicted by one more fit without it."""
    folds = json.loads((cohort / "splits.json").read_text())["folds"]
    for fold in folds:
        extra = [sorted({s[:2] for s in group}) for group in fold["calibrating"]]
        assert len(extra) == 4 and all(len(p) == 1 for p in extra)
        assert {p[0] for p in extra} <= {s[:2] for s in fold["train"]}
        record = json.loads((cohort / "models" / "efficientnet_lite0" / "ridge" / "seed0" /
                             fold["name"] / "calibration.json").read_text())
        assert record["calibration"] == "patient"
        for group in fold["calibrating"]:
            assert f"{group} by a fit without them" in record["spots"]
        assert "each patient weighted alike" in record["spots"]


def test_the_coverage_table_says_every_fold_was_calibrated_across_patients(cohort):
    coverage = pd.read_csv(cohort / "tables" / "coverage.tsv", sep="\t")
    assert set(coverage["calibration"]) == {"patient"} and len(set(coverage["fold"])) == 6
    assert "| patient |" in (cohort / "tables" / "coverage.md").read_text()


def test_the_deployed_model_is_calibrated_on_every_patient_out_of_fold(cohort):
    record = json.loads((cohort / "models" / "efficientnet_lite0" / "ridge" / "final" /
                         "calibration.json").read_text())
    assert record["calibration"] == "patient" and str(PATIENTS) in record["spots"]
    assert "new patient" in record["calibrated_for"]

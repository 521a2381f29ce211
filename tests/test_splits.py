"""Patient-stratified folds: test patients never appear in train or validation."""

from __future__ import annotations

import argparse
import json
import logging

import pytest

from stflow.cli.data import register
from stflow.data.splits import (
    make_splits,
    patient_folds,
    section_folds,
    validate_folds,
)
from stflow.errors import StflowError

# her2st-like: patient A has 3 sections, B 2, C and D one each.
PATIENTS = {"A1": "A", "A2": "A", "A3": "A", "B1": "B", "B2": "B", "C1": "C", "D1": "D"}


def write_samples(path, patients=PATIENTS):
    lines = ["sample\tpatient\timage_path\tmpp\tn_spots"]
    lines += [f"{s}\t{p}\t/img/{s}.jpg\t0.5\t300" for s, p in patients.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def assert_stratified(fold, patients=PATIENTS):
    test_patients = {patients[s] for s in fold["test"]}
    assert not test_patients & {patients[s] for s in fold["train"] + fold["val"]}
    assert not set(fold["train"]) & set(fold["val"])


def test_default_is_leave_one_patient_out_with_all_samples_used():
    folds = patient_folds(PATIENTS)
    assert [f["name"] for f in folds] == ["fold0", "fold1", "fold2", "fold3"]
    assert [f["test"] for f in folds] == [["A1", "A2", "A3"], ["B1", "B2"], ["C1"], ["D1"]]
    for fold in folds:
        assert_stratified(fold)
        assert sorted(fold["train"] + fold["val"] + fold["test"]) == sorted(PATIENTS)
        assert len(fold["val"]) == 1


def test_validation_prefers_a_patient_whose_only_sample_it_is():
    folds = patient_folds(PATIENTS, seed=0)
    assert folds[0]["val"][0] in {"C1", "D1"}  # test A: C and D have a single sample
    # Test C: only D1 is a whole patient, so validation is patient-disjoint from train.
    assert folds[2]["val"] == ["D1"]


def test_calibrating_across_patients_validates_on_one_whole_training_patient():
    folds = patient_folds(PATIENTS, seed=0, val_patient=True)
    for fold in folds:
        assert_stratified(fold)
        val_patients = {PATIENTS[s] for s in fold["val"]}
        assert len(val_patients) == 1  # one patient, every section of it
        assert fold["val"] == [s for s in PATIENTS if PATIENTS[s] in val_patients]
        assert not val_patients & {PATIENTS[s] for s in fold["train"]}


@pytest.mark.parametrize(("calibration", "scope"), [("auto", "patient"), ("within", "within")])
def test_each_fold_records_whose_spots_calibrate_it(tmp_path, calibration, scope):
    two_each = {f"{p}{i}": p for p in "ABC" for i in (1, 2)}  # no patient with one section
    splits = make_splits(write_samples(tmp_path / "s.tsv", two_each), calibration=calibration)
    assert [f["calibration"] for f in splits["folds"]] == [scope] * 3


def test_further_training_patients_calibrate_a_fold_each_by_one_more_fit(tmp_path):
    six = {f"{p}{i}": p for p in "ABCDEF" for i in (1, 2)}
    samples = write_samples(tmp_path / "s.tsv", six)
    for fold in make_splits(samples, calibration_patients=3)["folds"]:
        groups = fold["calibrating"]
        assert len(groups) == 2  # the validation patient and two more: two more fits
        for group in groups:
            assert len({six[s] for s in group}) == 1  # one whole patient per fit
            assert group == [s for s in fold["train"] if six[s] == six[group[0]]]
    for everyone in (make_splits(samples)["folds"][0],  # the default: all
                     make_splits(samples, calibration_patients=99)["folds"][0]):
        assert len(everyone["calibrating"]) == 4  # every training patient but the validation
    assert all(not f["calibrating"] for f in make_splits(samples, calibration_patients=1)[
        "folds"])  # the validation patient alone: no extra fit
    within = make_splits(samples, calibration="within", calibration_patients=3)
    assert all(not f["calibrating"] for f in within["folds"])
    for wrong in (0, "some", 2.5):
        with pytest.raises(StflowError, match="calibration_patients.*Fix: give 'all' or a"):
            make_splits(samples, calibration_patients=wrong)


def test_calibrating_across_patients_is_refused_where_a_fold_trains_on_one_patient(tmp_path):
    samples = write_samples(tmp_path / "s.tsv", {"B1": "B", "C2": "C", "C3": "C"})
    assert [f["calibration"] for f in make_splits(samples)["folds"]] == ["within", "within"]
    with pytest.raises(StflowError, match=r"\['B', 'C'\].*Fix: set intervals.calibration "
                       "to auto or within"):
        make_splits(samples, calibration="patient")


def test_single_training_sample_leaves_val_empty():
    folds = patient_folds({"x": "P", "y": "Q"})
    assert [f["val"] for f in folds] == [[], []]
    assert [f["train"] for f in folds] == [["y"], ["x"]]


def test_n_folds_groups_patients_and_is_seeded():
    folds = patient_folds(PATIENTS, n_folds=2, seed=3)
    assert len(folds) == 2
    assert sorted(s for f in folds for s in f["test"]) == sorted(PATIENTS)
    for fold in folds:
        assert_stratified(fold)
    assert folds == patient_folds(PATIENTS, n_folds=2, seed=3)
    with pytest.raises(StflowError, match="between 2 and 4"):
        patient_folds(PATIENTS, n_folds=5)


def test_fewer_than_two_patients_is_refused():
    with pytest.raises(StflowError, match="at least 2"):
        patient_folds({"A1": "A", "A2": "A"})


@pytest.mark.parametrize("fold, message", [
    ({"train": ["A1", "Z9"], "test": ["B1"]}, "unknown sample 'Z9' in train"),
    ({"train": ["A1", "B1"], "test": ["B1"]}, "sample 'B1' is in both test and train"),
    ({"train": ["A1"], "val": ["C1"], "test": ["C1"]}, "sample 'C1' is in both test and val"),
    ({"train": ["A1", "B2"], "test": ["B1"]}, "train sample 'B2' belongs to patient B"),
    ({"train": ["A1"], "val": ["B2"], "test": ["B1"]}, "val sample 'B2' belongs to patient B"),
    ({"train": [], "test": ["B1"]}, "no train samples"),
])
def test_explicit_folds_are_validated(fold, message):
    with pytest.raises(StflowError, match=message) as err:
        validate_folds([{"name": "myfold", **fold}], PATIENTS, "folds.json")
    assert str(err.value).startswith("folds.json: fold myfold")


def test_valid_explicit_folds_pass_through():
    folds = validate_folds([{"train": ["A1", "A2"], "val": ["C1"], "test": ["B1", "B2"]}],
                           PATIENTS, "folds.json")
    assert folds == [{"name": "fold0", "train": ["A1", "A2"], "val": ["C1"],
                      "test": ["B1", "B2"]}]


def test_cli_writes_splits_json(tmp_path):
    samples = write_samples(tmp_path / "samples.tsv")
    parser = argparse.ArgumentParser(prog="stflow")
    register(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "splits.json"
    args = parser.parse_args(["splits", "--samples-tsv", str(samples), "--out", str(out)])
    args.func(args)
    data = json.loads(out.read_text())
    assert data["scheme"] == "patient" and len(data["folds"]) == 4
    assert data == make_splits(samples)

    explicit = tmp_path / "folds.json"
    explicit.write_text(json.dumps({"folds": [{"train": ["A1"], "test": ["D1"]}]}))
    args = parser.parse_args(["splits", "--samples-tsv", str(samples), "--out", str(out),
                              "--folds-json", str(explicit)])
    args.func(args)
    assert json.loads(out.read_text()) == {"scheme": "explicit", "folds": [
        {"name": "fold0", "train": ["A1"], "val": [], "test": ["D1"], "calibration": "within",
        "calibrating": []}]}


def test_samples_table_without_patient_column_is_refused(tmp_path):
    bad = tmp_path / "samples.tsv"
    bad.write_text("sample\timage_path\nA1\t/x.jpg\n")
    with pytest.raises(StflowError, match="lacks the columns"):
        make_splits(bad)


def _bench_splits(root, folds):
    """A HEST-bench splits/ folder: {k: (train, test)}."""
    (root / "splits").mkdir(parents=True)
    for k, (train, test) in folds.items():
        for part, ids in (("train", train), ("test", test)):
            rows = ["sample_id,patches_path,expr_path"] + [f"{s},p/{s}.h5,a/{s}.h5ad" for s in ids]
            (root / "splits" / f"{part}_{k}.csv").write_text("\n".join(rows) + "\n")
    return root


def test_hest_bench_folds_are_used_and_checked_against_samples_and_fold_count(tmp_path):
    samples = write_samples(tmp_path / "samples.tsv", {"A": "p1", "B": "p2", "C": "p3"})
    bench = _bench_splits(tmp_path / "IDC", {0: (["A", "B"], ["C"]), 1: (["B", "C"], ["A"])})
    splits = make_splits(samples, n_folds=2, hest_bench=bench)
    assert splits["scheme"] == "hest-bench"
    assert [(f["name"], f["test"]) for f in splits["folds"]] == [("fold0", ["C"]), ("fold1", ["A"])]
    with pytest.raises(StflowError, match="holds 2 folds, the config expects 3"):
        make_splits(samples, n_folds=3, hest_bench=bench)
    leaky = write_samples(tmp_path / "leaky.tsv", {"A": "p1", "B": "p2", "C": "p1"})
    with pytest.raises(StflowError, match="splits: fold fold0: train sample 'A' belongs to "
                       "patient p1, who is also in test"):
        make_splits(leaky, hest_bench=bench)


def test_section_scheme_leaves_one_section_out_and_keeps_the_patients_other_sections():
    folds = section_folds(PATIENTS, seed=0)
    assert [f["name"] for f in folds] == [f"fold{k}" for k in range(len(PATIENTS))]
    assert [f["test"] for f in folds] == [[s] for s in PATIENTS]
    for fold in folds:
        (test,) = fold["test"]
        assert sorted(fold["train"] + fold["val"]) == sorted(s for s in PATIENTS if s != test)
        assert test not in fold["val"] and len(fold["val"]) == 1
        assert not set(fold["train"]) & set(fold["val"])
    # Not patient-stratified: A1's fold trains on A2/A3, the same patient's other sections.
    assert {"A2", "A3"} <= set(folds[0]["train"] + folds[0]["val"])
    # Validation is chosen as for patient folds: a patient whose only training sample it is.
    for fold in folds:
        val_patient = PATIENTS[fold["val"][0]]
        assert val_patient not in {PATIENTS[s] for s in fold["train"]}
    assert folds == section_folds(PATIENTS, seed=0)


def test_section_scheme_warns_in_the_log_and_records_its_scheme(tmp_path, caplog):
    samples = write_samples(tmp_path / "samples.tsv")
    with caplog.at_level(logging.WARNING, logger="stflow.data.splits"):
        splits = make_splits(samples, scheme="section")
    assert splits["scheme"] == "section" and len(splits["folds"]) == len(PATIENTS)
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1
    assert "NOT patient-stratified" in warning[0].message
    assert "optimistic" in warning[0].message
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="stflow.data.splits"):
        assert make_splits(samples)["scheme"] == "patient"
    assert not caplog.records


def test_section_scheme_refuses_fold_settings_it_would_ignore(tmp_path):
    samples = write_samples(tmp_path / "samples.tsv")
    with pytest.raises(StflowError, match=r"--scheme section: builds its own folds, but "
                       r"\['--n-folds'\] given"):
        make_splits(samples, n_folds=2, scheme="section")
    with pytest.raises(StflowError, match="at least 2"):
        section_folds({"A1": "A"})


def test_cli_writes_section_splits(tmp_path):
    samples = write_samples(tmp_path / "samples.tsv")
    parser = argparse.ArgumentParser(prog="stflow")
    register(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "splits.json"
    args = parser.parse_args(["splits", "--samples-tsv", str(samples), "--out", str(out),
                              "--scheme", "section", "--seed", "2"])
    args.func(args)
    written = json.loads(out.read_text())
    assert written["scheme"] == "section"
    assert [{k: v for k, v in f.items() if k not in ("calibration", "calibrating")}
            for f in written["folds"]] == \
        section_folds(PATIENTS, seed=2)

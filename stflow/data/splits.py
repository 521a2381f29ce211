"""Patient-stratified folds: no patient is ever on both sides of a train/test split.

HEST-bench evaluates with patient-stratified k-fold splits; by default every patient is one
fold's test set (leave-one-patient-out). Validation samples, used for model selection,
come from the training samples only, so the test fold is never looked at before testing.

The ``section`` scheme (leave one section out) exists for comparison with studies that split
by section: the test section's patient has other sections in training, so its scores are
optimistic. It is never the default, and it says so in the log and in every table.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stflow.atomic import read_json, write_json
from stflow.choices import ALL_PATIENTS, CALIBRATIONS, SCHEMES
from stflow.errors import StflowError, input_error

log = logging.getLogger(__name__)

SAMPLE_COLUMNS = ("sample", "patient", "image_path", "mpp", "n_spots")


def read_samples(path: str | Path) -> dict[str, str]:
    """sample → patient from a samples.tsv (ordered as in the file)."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise input_error(path, "samples table does not exist", "run the ingest stage first")
    table = pd.read_csv(path, sep="\t", dtype={"sample": str, "patient": str})
    missing = [c for c in SAMPLE_COLUMNS if c not in table.columns]
    if missing:
        raise input_error(path, f"lacks the columns {missing}",
                          f"write a tab-separated table with columns {list(SAMPLE_COLUMNS)}")
    if table["sample"].duplicated().any():
        dup = table.loc[table["sample"].duplicated(), "sample"].iloc[0]
        raise input_error(path, f"sample '{dup}' is listed twice", "list each sample once")
    if table["patient"].isna().any():
        bad = table.loc[table["patient"].isna(), "sample"].iloc[0]
        raise input_error(path, f"sample '{bad}' has no patient", "fill in the patient column")
    return dict(zip(table["sample"], table["patient"], strict=True))


def choose_val(train: list[str], patients: dict[str, str], rng: np.random.Generator
               ) -> list[str]:
    """One seeded training sample for validation, preferring a patient with no other sample.

    Holding out a patient's only sample makes validation patient-disjoint from training,
    like the test fold. With a single training sample, val is empty (the trainer then holds
    out a contiguous region of it).
    """
    if len(train) < 2:
        return []
    per_patient: dict[str, int] = {}
    for sample in train:
        per_patient[patients[sample]] = per_patient.get(patients[sample], 0) + 1
    whole = [s for s in train if per_patient[patients[s]] == 1]
    pool = whole or train
    return [pool[int(rng.integers(len(pool)))]]


def choose_val_patient(train: list[str], patients: dict[str, str],
                       rng: np.random.Generator) -> list[str]:
    """Every sample of one seeded training patient, when the training samples have at least
    two patients (else :func:`choose_val`): a validation patient the model never trains on
    calibrates its intervals for a new patient (``intervals.calibration: patient``)."""
    order = list(dict.fromkeys(patients[s] for s in train))
    if len(order) < 2:
        return choose_val(train, patients, rng)
    chosen = order[int(rng.integers(len(order)))]
    return [s for s in train if patients[s] == chosen]


def calibrating_patients(fold: dict, patients: dict[str, str], most: int | str, seed: int
                         ) -> list[list[str]]:
    """The samples of further training patients that calibrate a fold validating on a whole
    patient, one list per patient: up to ``most`` − 1 of them (``all``: every training
    patient; else seeded, in the samples' order),
    each predicted for the calibration by one more fit without it (inner leave one patient
    out), so the fold's intervals pool several patients' out-of-patient residuals instead
    of one patient's. None for a fold calibrated within its training patients."""
    order = list(dict.fromkeys(patients[s] for s in fold["train"]))
    if fold["calibration"] != "patient" or len(order) < 2:  # leaving the only one out
        return []                                             # would leave nothing to fit
    more = len(order) if most == ALL_PATIENTS else int(most) - 1
    chosen = set(np.random.default_rng(seed).permutation(order)[:more].tolist())
    return [[s for s in fold["train"] if patients[s] == p] for p in order if p in chosen]


def calibration_scope(fold: dict, patients: dict[str, str]) -> str:
    """'patient' when the fold validates on patients none of its training samples has,
    else 'within' (a training patient's section, or a held-out region)."""
    val = {patients[s] for s in fold["val"]}
    return "patient" if val and not val & {patients[s] for s in fold["train"]} else "within"


def patient_folds(patients: dict[str, str], n_folds: int | None = None, seed: int = 0,
                  val_patient: bool = False) -> list[dict[str, list[str]]]:
    """Leave-one-patient-out folds, or patients grouped into ``n_folds`` folds; validation
    is one whole training patient with ``val_patient`` (where two are there)."""
    order = list(dict.fromkeys(patients.values()))
    if len(order) < 2:
        raise StflowError(f"samples.tsv: only {len(order)} patient(s) ({order}); a patient-"
                          "stratified split needs at least 2. Fix: add samples of another "
                          "patient, or give explicit folds with --folds-json")
    rng = np.random.default_rng(seed)
    if n_folds is None:
        groups = [[p] for p in order]
    else:
        if not 2 <= n_folds <= len(order):
            raise StflowError(f"--n-folds {n_folds} with {len(order)} patients. Fix: use "
                              f"between 2 and {len(order)} folds")
        shuffled = [order[i] for i in rng.permutation(len(order))]
        groups = [sorted(shuffled[k::n_folds], key=order.index) for k in range(n_folds)]
    folds = []
    for k, group in enumerate(groups):
        test = [s for s, p in patients.items() if p in group]
        train = [s for s, p in patients.items() if p not in group]
        val = (choose_val_patient if val_patient else choose_val)(train, patients, rng)
        folds.append({"name": f"fold{k}", "train": [s for s in train if s not in val],
                      "val": val, "test": test})
    return folds


SECTION_WARNING = (
    "splits.scheme section: leave-one-section-out folds are NOT patient-stratified (the test "
    "section's patient has other sections in training). Its scores are optimistic and not "
    "comparable with patient-stratified results (HEST-bench, the STFlow paper); every table "
    "marks them scheme=section")


def section_folds(patients: dict[str, str], seed: int = 0) -> list[dict[str, list[str]]]:
    """Leave-one-section-out: each fold tests one section and trains on all the others.

    Validation is one training section, chosen as for patient folds (``choose_val``), so it
    never holds the test section.
    """
    samples = list(patients)
    if len(samples) < 2:
        raise StflowError(f"samples.tsv: only {len(samples)} sample(s) ({samples}); leave-one-"
                          "section-out needs at least 2. Fix: add sections")
    rng = np.random.default_rng(seed)
    folds = []
    for k, test in enumerate(samples):
        train = [s for s in samples if s != test]
        val = choose_val(train, patients, rng)
        folds.append({"name": f"fold{k}", "train": [s for s in train if s not in val],
                      "val": val, "test": [test]})
    return folds


def validate_folds(folds: Sequence[dict], patients: dict[str, str], where: str | Path
                   ) -> list[dict[str, list[str]]]:
    """Check explicit folds: known samples, no overlap, no patient across test and train."""
    if not isinstance(folds, list) or not folds:
        raise input_error(where, "holds no folds", "give a list of {train, test, val} folds")
    checked = []
    for k, fold in enumerate(folds):
        if not isinstance(fold, dict):
            raise input_error(where, f"fold {k} is not a mapping", "write {train, test, val}")
        name = str(fold.get("name", f"fold{k}"))
        parts = {key: [str(s) for s in fold.get(key) or []] for key in ("train", "val", "test")}
        for key in ("train", "test"):
            if not parts[key]:
                raise input_error(where, f"fold {name} has no {key} samples",
                                  f"list at least one {key} sample")
        for key, samples in parts.items():
            for sample in samples:
                if sample not in patients:
                    raise input_error(where, f"fold {name}: unknown sample '{sample}' in {key}",
                                      "use sample ids from samples.tsv")
            if len(set(samples)) != len(samples):
                raise input_error(where, f"fold {name}: a sample is listed twice in {key}",
                                  "list each sample once")
        for a, b in (("test", "train"), ("test", "val"), ("train", "val")):
            both = [s for s in parts[a] if s in parts[b]]
            if both:
                raise input_error(where, f"fold {name}: sample '{both[0]}' is in both {a} and "
                                  f"{b}", "put each sample in one part of the fold")
        test_patients = {patients[s] for s in parts["test"]}
        for key in ("train", "val"):
            for sample in parts[key]:
                if patients[sample] in test_patients:
                    raise input_error(where, f"fold {name}: {key} sample '{sample}' belongs to "
                                      f"patient {patients[sample]}, who is also in test",
                                      "keep all samples of a patient on one side of the split")
        checked.append({"name": name, **parts})
    names = [f["name"] for f in checked]
    if len(set(names)) != len(names):
        raise input_error(where, "fold names repeat", "give each fold a unique name")
    return checked


def read_splits(path: str | Path) -> dict:
    """A splits.json as written by ``stflow splits``: its ``scheme`` and ``folds``."""
    data = read_json(path, "splits file", "run `stflow splits` first")
    if (not isinstance(data, dict) or not isinstance(data.get("scheme"), str)
            or not isinstance(data.get("folds"), list)):
        raise input_error(path, "is not a splits.json (needs a scheme and a list of folds)",
                          "re-create it with `stflow splits`")
    return data


def fold_of(splits: dict, fold: str, where: str | Path) -> dict:
    """The fold named ``fold`` in a read splits.json."""
    names = [f.get("name") for f in splits["folds"] if isinstance(f, dict)]
    if fold not in names:
        raise input_error(where, f"no fold named '{fold}' (it has {names})",
                          "pass one of the fold names in the file")
    return splits["folds"][names.index(fold)]


def read_folds_json(path: str | Path) -> list[dict]:
    """Folds from a JSON file: a list of folds or ``{"folds": [...]}``."""
    data = read_json(path, "folds file", "pass an existing --folds-json holding valid JSON")
    return data["folds"] if isinstance(data, dict) and "folds" in data else data


def bench_folds(bench_dir: str | Path, patients: dict[str, str], n_folds: int | None
                ) -> dict:
    """HEST-bench's published folds (``splits/train_k.csv``, ``test_k.csv``), checked like
    explicit folds against the ingested samples and the fold count the workflow expects."""
    from stflow.data.sources.hest import read_bench_splits

    where = Path(bench_dir) / "splits"
    folds = validate_folds(read_bench_splits(bench_dir)["folds"], patients, where)
    if n_folds is not None and len(folds) != n_folds:
        raise input_error(where, f"holds {len(folds)} folds, the config expects {n_folds}",
                          f"set the task's n_folds to {len(folds)}")
    return {"scheme": "hest-bench", "folds": folds}


def make_splits(samples_tsv: str | Path, n_folds: int | None = None,
                folds: list[dict] | None = None, seed: int = 0,
                hest_bench: str | Path | None = None, scheme: str = "patient",
                folds_source: str | Path = "splits.folds", calibration: str = "auto",
                calibration_patients: int | str = ALL_PATIENTS) -> dict:
    """The splits.json content for a samples table (``scheme`` records how it was split).

    ``folds`` are explicit folds to validate (``folds_source`` names where they came from in
    the errors); else HEST-bench's published ones, else patient folds, validating on a whole
    training patient unless ``calibration`` (intervals.calibration) is 'within'. Each fold
    records whose spots calibrate its intervals (:func:`calibration_scope`) and, where that
    is a whole patient, further training patients that calibrate it too (``calibrating``:
    up to ``calibration_patients`` − 1, or all; :func:`calibrating_patients`)."""
    if scheme not in SCHEMES:
        raise input_error("--scheme", f"unknown scheme '{scheme}'", f"use one of {SCHEMES}")
    if calibration not in CALIBRATIONS:
        raise input_error("--calibration", f"unknown calibration '{calibration}'",
                          f"use one of {CALIBRATIONS}")
    patients = read_samples(samples_tsv)
    splits = _folds(patients, n_folds, folds, seed, hest_bench, scheme, folds_source,
                    calibration != "within")
    if calibration_patients != ALL_PATIENTS and not (
            isinstance(calibration_patients, int) and calibration_patients >= 1):
        raise input_error("intervals.calibration_patients", f"is {calibration_patients!r}",
                          f"give {ALL_PATIENTS!r} or a number from 1 (the validation patient "
                          "alone) up")
    for fold in splits["folds"]:
        fold["calibration"] = calibration_scope(fold, patients)
        fold["calibrating"] = calibrating_patients(fold, patients, calibration_patients, seed)
    within = [f["name"] for f in splits["folds"] if f["calibration"] == "within"]
    if calibration == "patient" and within:
        raise input_error(samples_tsv, f"folds {within} have fewer than two training patients "
                          f"(patients: {sorted(set(patients.values()))}), so none can "
                          "calibrate their intervals across patients",
                          "set intervals.calibration to auto or within, or add patients")
    return splits


def _folds(patients: dict[str, str], n_folds: int | None, folds: list[dict] | None,
           seed: int, hest_bench: str | Path | None, scheme: str, folds_source: str | Path,
           val_patient: bool) -> dict:
    if scheme == "section":
        given = [name for name, value in (("--n-folds", n_folds), ("--folds-json", folds),
                                          ("--hest-bench", hest_bench)) if value is not None]
        if given:
            raise input_error("--scheme section", f"builds its own folds, but {given} given",
                              "drop them (one fold per section), or use --scheme patient")
        log.warning(SECTION_WARNING)
        return {"scheme": "section", "folds": section_folds(patients, seed)}
    if hest_bench is not None:
        return bench_folds(hest_bench, patients, n_folds)
    if folds is not None:
        return {"scheme": "explicit", "folds": validate_folds(folds, patients, folds_source)}
    folds = patient_folds(patients, n_folds, seed, val_patient)
    return {"scheme": "patient" if n_folds is None else "patient-kfold", "folds": folds}


def write_splits(samples_tsv: str | Path, out: str | Path, *, n_folds: int | None = None,
                 folds: list[dict] | None = None, seed: int = 0,
                 hest_bench: str | Path | None = None, scheme: str = "patient",
                 folds_source: str | Path = "splits.folds", calibration: str = "auto",
                 calibration_patients: int | str = ALL_PATIENTS) -> dict:
    """The splits stage: :func:`make_splits` written to ``out`` (splits.json)."""
    splits = make_splits(samples_tsv, n_folds, folds, seed, hest_bench, scheme, folds_source,
                         calibration, calibration_patients)
    write_json(splits, out)
    log.info("%d folds (%s, seed %d) → %s", len(splits["folds"]), splits["scheme"], seed, out)
    return splits

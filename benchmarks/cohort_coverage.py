"""Do 90 % intervals calibrated on the training patients cover a new patient? (issue 24)

    python benchmarks/cohort_coverage.py [--grid 12] [--level 0.9] [--seed 0]

Simulates the cohort of config/cohort.yaml (its ``simulate`` settings over
config/config.yaml's) three times: patients alike (both shift scales 0), the simulator's
default shift (1) and the preset's. Leave one patient out: a ridge on cheap image features
of each spot's 112 µm patch (colour, optical density and texture statistics, so the stain
shift reaches the features as it reaches an encoder's) predicts log1p counts of every gene
but the rare ones. Split-conformal intervals (stflow.intervals.conformal, difficulty 1) are
calibrated two ways and scored on the held-out patient (coverage averaged over genes):

* within: a random quarter of the training patients' spots, the ridge fitted on the rest
  (spots of the patients the model saw: what calibration on validation spots does);
* across: each training patient's residuals from a ridge fitted on the other training
  patients (inner leave one patient out), as many spots from each patient (each weighted
  equally); the held-out patient is predicted by the ridge fitted on all training patients.

Prints one JSON line per fold and one mean per cohort.
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image

from stflow.choices import PATCH_SIZE_UM
from stflow.data.dataset import Slide
from stflow.data.simulator import simulate
from stflow.intervals.conformal import conformal_quantile, interval, nonconformity
from stflow.models.baselines.ridge import PCARidge

REPO = Path(__file__).resolve().parents[1]
PATCH_UM = float(PATCH_SIZE_UM)
CALIBRATION_SHARE = 0.25
RIDGE_ALPHA = 1.0


def preset(config_file: Path = REPO / "config" / "cohort.yaml") -> dict:
    """The preset's ``simulate`` settings over the default config's."""
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["simulate"]
    return {**base, **yaml.safe_load(config_file.read_text()).get("simulate", {})}


def patch_features(image: np.ndarray, pixel_xy: np.ndarray, mpp: float) -> np.ndarray:
    """(N, 14) per-spot statistics of the patch: RGB mean and spread, optical density,
    dark (nuclear) and white fractions, grey-level percentiles and gradient texture."""
    half = int(PATCH_UM / mpp / 2)
    rows = []
    for x, y in np.rint(pixel_xy).astype(int):
        rgb = image[max(y - half, 0):y + half, max(x - half, 0):x + half].astype(np.float64)
        flat = rgb.reshape(-1, 3)
        grey = rgb.mean(axis=2)
        density = -np.log10((flat + 1.0) / 256.0)
        brightness = flat.sum(axis=1)
        texture = np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean()
        rows.append(np.concatenate([flat.mean(0), flat.std(0), density.mean(0),
                                    [(brightness < 330).mean(), (brightness > 700).mean(),
                                     *np.percentile(grey, [10, 90]), texture]]))
    return np.asarray(rows, dtype=np.float32)


def read_slides(root: Path, sections: list) -> dict[str, Slide]:
    """One Slide per simulated section: patch features and log1p counts of non-rare genes."""
    slides = {}
    for section in sections:
        truth = np.load(section.truth)
        counts = pd.read_csv(gzip.open(section.counts), sep="\t", index_col=0)
        keep = truth["gene_role"] != "rare"
        image = np.asarray(Image.open(section.image).convert("RGB"))
        features = patch_features(image, truth["pixel_xy"], float(truth["mpp"]))
        slides[section.sample] = Slide(
            section.sample, features, truth["pixel_xy"] * float(truth["mpp"]),
            np.asarray(counts.index), np.log1p(counts.to_numpy(dtype=np.float32)[:, keep]))
    return slides


def part(slide: Slide, rows: np.ndarray) -> Slide:
    """The spots ``rows`` of a slide."""
    return Slide(slide.sample, slide.features[rows], slide.coords_um[rows],
                 slide.barcodes[rows], slide.targets[rows])


def ridge(train: list[Slide], seed: int) -> PCARidge:
    """The per-fold predictor: PCA + ridge with a fixed alpha."""
    model = PCARidge(seed=seed, alpha=RIDGE_ALPHA, n_components=16)
    model.fit(train, [])
    return model


def residuals(model: PCARidge, slides: list[Slide]) -> np.ndarray:
    """(n, G) nonconformity scores |truth − prediction| (difficulty 1) of ``slides``."""
    truth = np.concatenate([s.targets for s in slides])
    prediction = np.concatenate(model.predict(slides))
    return nonconformity(truth, prediction, np.ones(len(truth)))


def coverage(model: PCARidge, scores: np.ndarray, test: list[Slide], level: float) -> float:
    """Mean over genes of the share of test spots inside the intervals from ``scores``."""
    truth = np.concatenate([s.targets for s in test])
    prediction = np.concatenate(model.predict(test))
    lower, upper = interval(prediction, np.ones(len(truth)), conformal_quantile(scores, level))
    return float(((truth >= lower) & (truth <= upper)).mean())


def within_coverage(train: list[Slide], test: list[Slide], level: float, seed: int) -> float:
    """Calibrated on a random share of the training patients' spots, fitted on the rest."""
    rng = np.random.default_rng(seed)
    held = [rng.random(len(s.features)) < CALIBRATION_SHARE for s in train]
    model = ridge([part(s, ~h) for s, h in zip(train, held, strict=True)], seed)
    scores = residuals(model, [part(s, h) for s, h in zip(train, held, strict=True)])
    return coverage(model, scores, test, level)


def across_coverage(train: dict[str, list[Slide]], test: list[Slide], level: float,
                    seed: int) -> float:
    """Calibrated on out-of-patient residuals of the training patients, equally weighted."""
    rng = np.random.default_rng(seed)
    per_patient = []
    for patient, slides in train.items():
        others = [s for p, group in train.items() if p != patient for s in group]
        per_patient.append(residuals(ridge(others, seed), slides))
    n = min(len(scores) for scores in per_patient)
    scores = np.concatenate([s[np.sort(rng.choice(len(s), n, replace=False))]
                             for s in per_patient])
    model = ridge([s for group in train.values() for s in group], seed)
    return coverage(model, scores, test, level)


def fold_coverage(slides: dict[str, Slide], patients: dict[str, str], test_patient: str,
                  level: float = 0.9, seed: int = 0) -> dict[str, float]:
    """Coverage of the held-out ``test_patient`` under both calibrations."""
    if len({patients[name] for name in slides} - {test_patient}) < 2:
        raise ValueError("cohort: across-patient calibration needs at least 2 training "
                         "patients. Fix: simulate 3 patients or more")
    test = [s for name, s in slides.items() if patients[name] == test_patient]
    train: dict[str, list[Slide]] = {}
    for name, slide in slides.items():
        if patients[name] != test_patient:
            train.setdefault(patients[name], []).append(slide)
    flat = [s for group in train.values() for s in group]
    return {"within": within_coverage(flat, test, level, seed),
            "across": across_coverage(train, test, level, seed)}


def cohort_coverage(settings: dict, shifts: tuple[float, float], grid: int, level: float,
                    seed: int) -> list[dict]:
    """Per fold coverage of a simulated cohort with (expression, stain) shift ``shifts``."""
    with tempfile.TemporaryDirectory() as tmp:
        sections = simulate(Path(tmp) / "raw", n_patients=settings["patients"],
                            sections_per_patient=settings["sections"], grid=grid,
                            n_genes=settings["genes"], seed=settings["seed"],
                            expression_shift=shifts[0], stain_shift=shifts[1])
        slides = read_slides(Path(tmp) / "raw", sections)
    patients = {s.sample: s.patient for s in sections}
    return [{"test": p, **fold_coverage(slides, patients, p, level, seed)}
            for p in sorted(set(patients.values()), key=lambda p: int(p[1:]))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "config" / "cohort.yaml")
    parser.add_argument("--grid", type=int, default=None, help="default: the preset's grid")
    parser.add_argument("--level", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    settings = preset(args.config)
    grid = args.grid or settings["grid"]
    cohorts = {"alike": (0.0, 0.0), "default": (1.0, 1.0),
               "preset": (settings["expression_shift"], settings["stain_shift"])}
    for name, shifts in cohorts.items():
        folds = cohort_coverage(settings, shifts, grid, args.level, args.seed)
        for fold in folds:
            print(json.dumps({"cohort": name, **{k: (round(v, 4) if isinstance(v, float)
                                                     else v) for k, v in fold.items()}}))
        print(json.dumps({"cohort": name, "expression_shift": shifts[0],
                          "stain_shift": shifts[1], "grid": grid, "level": args.level,
                          "within": round(float(np.mean([f["within"] for f in folds])), 4),
                          "across": round(float(np.mean([f["across"] for f in folds])), 4)}),
              flush=True)


if __name__ == "__main__":
    main()

"""A fold model's intervals, calibrated on several training patients it never trained on:
the validation patient (predicted by the kept model) and further training patients, each
predicted by one more fit without it, each patient weighing alike (issue 24)."""

from __future__ import annotations

import numpy as np

from stflow.data.dataset import Slide
from stflow.intervals.calibration import apply_calibration
from stflow.training.fit import train_validated

WEIGHTS = np.random.default_rng(0).normal(size=(6, 3))


def patient_slide(name: str, noise: float, rng: np.random.Generator, n: int = 400) -> Slide:
    """A section whose expression is linear in its features plus noise of the patient's
    own spread: patients differ in how predictable they are."""
    features = rng.normal(size=(n, 6)).astype(np.float32)
    targets = 12 + features @ WEIGHTS + rng.normal(scale=noise, size=(n, 3))
    xy = rng.uniform(0, 5000, size=(n, 2))
    return Slide(name, features, xy, np.array([f"{name}_{i}" for i in range(n)]),
                 targets.astype(np.float32))


def coverage(trained, slide: Slide) -> float:
    prediction = trained.estimator.predict([slide])[0]
    found = apply_calibration(trained.calibration, slide.features, prediction, 0.9)
    return float(np.mean((slide.targets >= found.lower) & (slide.targets <= found.upper)))


def test_a_fold_calibrated_on_several_training_patients_covers_a_new_one():
    rng = np.random.default_rng(2)
    # the validation patient V happens to be easy; the other training patients are not
    train = [patient_slide(name, noise, rng) for name, noise in
             (("A1", 1.0), ("B1", 1.4), ("C1", 1.2))]
    val = [patient_slide("V1", 0.2, rng)]
    new = patient_slide("N1", 1.2, rng)
    stages = []
    one = train_validated("ridge", train, val, seed=0, scope="patient")
    pooled = train_validated("ridge", train, val, seed=0, scope="patient",
                             calibrating=[["A1"], ["B1"]],
                             stages=lambda name: stages.append(name) or (lambda row: None))
    # one easy patient's residuals under-cover a new patient; pooling three patients
    # (V, A, B, each weighing alike) brings the level back within a stated band
    assert coverage(one, new) < 0.4
    assert 0.8 <= coverage(pooled, new) <= 0.95
    calibration = pooled.calibration
    assert "['A1'] by a fit without them" in calibration.spots
    assert "['B1'] by a fit without them" in calibration.spots
    assert [s for s in stages if s.startswith("calibration fit")] == [
        "calibration fit 1", "calibration fit 2"]
    # the kept half of each patient's spots weighs 1 in all: patients alike, not spots
    assert calibration.n_spots == 600 and np.isclose(calibration.weights.sum(), 3.0)
    # the kept model and its shift flag are those of the fold, whatever calibrates it
    np.testing.assert_array_equal(one.estimator.predict([new])[0],
                                  pooled.estimator.predict([new])[0])
    assert calibration.shift.threshold == one.calibration.shift.threshold


def test_without_further_patients_the_calibration_is_the_validation_patients_alone():
    rng = np.random.default_rng(2)
    train = [patient_slide(name, 1.0, rng, n=120) for name in ("A1", "B1")]
    val = [patient_slide("V1", 1.0, rng, n=120)]
    trained = train_validated("ridge", train, val, seed=0, scope="patient", calibrating=[])
    assert trained.calibration.weights is None and trained.calibration.n_spots == 60
    assert "by a fit without" not in trained.calibration.spots

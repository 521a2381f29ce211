"""The deployed model's intervals, calibrated for a new patient on the study's own
out-of-fold predictions.

A model trained on every patient has no patient left to calibrate on, but the study has
already predicted every patient with a fold model that excluded it. Those out-of-patient
residuals, each patient weighted alike, calibrate the final model's intervals: the
"cross-validation" interval of Barber, Candès, Ramdas & Tibshirani (2021) with patients as
the exchangeable unit — centred on the final model's prediction, scaled by how far the fold
models missed patients they never saw. It costs no extra fit. (CV+ would centre each fold's
interval on that fold's model and needs every fold model at prediction time; one model to
ship was chosen instead, and the study's own coverage table measures the same residuals.)

Each fold's residual is normalised by the final model's kind of difficulty computed with
that fold model's own level curve and shift median, so the scores are in the units the
final model's difficulty multiplies.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stflow.errors import input_error
from stflow.intervals.calibration import (
    RECALIBRATE,
    Calibration,
    difficulty,
    load_calibration,
)
from stflow.intervals.conformal import nonconformity
from stflow.provenance import dense

log = logging.getLogger(__name__)


def fold_scores(calibration: Calibration, prediction_file: Path, fold: Calibration | None,
                genes: Sequence[str]) -> tuple[str, np.ndarray]:
    """(sample, (n, G) scores) of one out-of-fold prediction file, predicted by the fold model
    calibrated as ``fold``, in the order of ``genes``; NaN for a gene that fold did not
    predict (genes chosen per fold)."""
    import anndata as ad

    adata = ad.read_h5ad(prediction_file)
    if fold is None or "truth" not in adata.layers or "shift_score" not in adata.obs:
        raise input_error(prediction_file, "has no truth or shift score, or its fold model "
                          "no calibration", RECALIBRATE)
    prediction, truth = dense(adata.X), dense(adata.layers["truth"])
    scale = difficulty(calibration.difficulty,
                       adata.obs["shift_score"].to_numpy(np.float64)
                       / max(fold.shift_median, 1e-12), fold.level_curve, prediction)
    scores = nonconformity(truth, prediction, scale)
    column = {str(g): i for i, g in enumerate(adata.var_names)}
    out = np.full((len(scores), len(genes)), np.nan)
    for j, gene in enumerate(genes):
        if gene in column:
            out[:, j] = scores[:, column[gene]]
    return str(adata.uns.get("sample", prediction_file.stem)), out


def calibrate_across_patients(calibration: Calibration, runs: Sequence[tuple[str | Path,
                              str | Path]], patients: dict[str, str], genes: Sequence[str]
                              ) -> Calibration:
    """``calibration`` (the final model's, kept for its difficulty, level curve and shift
    reference) with its scores replaced by the out-of-fold scores of ``runs`` (pairs of a
    fold's prediction folder and model folder), each patient weighted alike. Kept as it is,
    and said so, where fewer than two patients were predicted out of fold."""
    rows, owners = [], []
    for prediction_dir, model_dir in runs:
        fold = load_calibration(model_dir)  # once per fold, for all its test samples
        for path in sorted(Path(prediction_dir).glob("*.h5ad")):
            sample, scores = fold_scores(calibration, path, fold, genes)
            rows.append(scores)
            owners += [patients.get(sample, sample)] * len(scores)
    named = sorted(set(owners))
    if len(named) < 2:
        log.warning("out-of-fold predictions of %d patient(s): the final model keeps its "
                    "calibration within the training patients", len(named))
        return calibration
    owners_array = np.array(owners)
    spots_per_patient = {p: int((owners_array == p).sum()) for p in named}
    weights = np.array([1.0 / spots_per_patient[p] for p in owners])
    log.info("final model calibrated across patients on %d out-of-fold spots of %d patients "
             "%s", len(owners), len(named), named)
    return dataclasses.replace(
        calibration, scores=np.concatenate(rows).astype(np.float32), weights=weights,
        scope="patient",
        spots=f"out-of-fold predictions of the patients {named} ({len(owners)} spots), each "
              "by the fold model that never trained on it, each patient weighted alike",
        predictor="the study's fold models (residuals); the intervals are centred on the "
                  "final model's prediction")

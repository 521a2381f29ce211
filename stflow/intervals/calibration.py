"""Calibrating a trained model's intervals and shift flag on spots it never trained on.

The calibration spots are the fold's validation spots: its validation samples, or, when it
has none, the contiguous held-out region of each training sample that STFlow's trainer and
the baselines hold out alike (:func:`stflow.data.holdout.holdout_masks`). They are the same
spots that chose the checkpoint and the searched settings, so the scores are slightly
optimistic; the coverage on the test folds (``tables/coverage.tsv``) measures that bias.
A model that fitted on those spots too (``ridge_hest``, ``rf``, any refit) is calibrated by
the model it would be without them: the fit before its refit, or a twin with the same
settings fitted on the training spots alone.

The difficulty that scales each spot's interval is chosen on the calibration spots
themselves: each candidate is calibrated on one random half and its interval width at
90 % measured on the other (both ways round); the narrowest wins, since every candidate
covers exchangeable spots at the nominal rate. Candidates: ``constant`` (plain split
conformal) and ``shift`` (the spot's distance from the training features,
:mod:`stflow.intervals.shift`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stflow.atomic import atomic_output, read_json, write_json
from stflow.data.dataset import Slide
from stflow.data.holdout import holdout_masks
from stflow.errors import StflowError, input_error
from stflow.intervals.conformal import (
    DEFAULT_LEVEL,
    STANDARD_LEVELS,
    check_level,
    conformal_quantile,
    interval,
    nonconformity,
)
from stflow.intervals.shift import THRESHOLD_PERCENTILE, ShiftReference

log = logging.getLogger(__name__)

CALIBRATION_NPZ = "calibration.npz"
CALIBRATION_JSON = "calibration.json"
METHOD = "normalised split-conformal, per gene"
DIFFICULTIES = ("constant", "shift")
VAL_FRACTION = 0.2  # the held-out share when a fold has no validation samples (as trained)
RECALIBRATE = ("re-run the train stage (or train_final) with this version of stflow, which "
               "calibrates the model on its validation spots")


@dataclass
class Calibration:
    """Calibration scores, the chosen difficulty and the shift reference of one model."""

    scores: np.ndarray  # (n, G) |error| / difficulty on the calibration spots
    difficulty: str
    shift: ShiftReference
    shift_median: float  # median shift score of the calibration spots: the difficulty's unit
    spots: str  # where the calibration spots came from
    predictor: str  # which fit predicted them
    candidates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n_spots(self) -> int:
        return int(self.scores.shape[0])

    def difficulty_of(self, shift_scores: np.ndarray) -> np.ndarray:
        """(N,) each spot's interval scale under the chosen difficulty."""
        return spot_difficulty(self.difficulty, shift_scores, self.shift_median)

    def quantiles(self, levels: tuple[float, ...]) -> np.ndarray:
        """(G, L) the score quantile of each gene at each level."""
        return np.stack([conformal_quantile(self.scores, lv) for lv in levels], axis=1)

    def describe(self, level: float, levels: tuple[float, ...]) -> dict[str, Any]:
        """What a prediction file says about its intervals (``uns["stflow"]["intervals"]``)."""
        return {"method": METHOD, "level": level, "levels": list(levels),
                "difficulty": self.difficulty, "n_calibration_spots": self.n_spots,
                "calibration_spots": self.spots, "calibration_predictor": self.predictor,
                "shift_threshold": self.shift.threshold,
                "shift_threshold_percentile": THRESHOLD_PERCENTILE,
                "shift_k": self.shift.k, "shift_components": int(len(self.shift.scales))}


@dataclass
class SpotIntervals:
    """One slide's intervals at ``level``, the quantiles at every level and the shift flag."""

    lower: np.ndarray  # (N, G)
    upper: np.ndarray  # (N, G)
    scale: np.ndarray  # (N,) the difficulty each interval was scaled by
    quantiles: np.ndarray  # (G, L)
    levels: tuple[float, ...]
    shift_score: np.ndarray  # (N,)
    shifted: np.ndarray  # (N,) bool
    info: dict[str, Any]

    def attach(self, adata: Any) -> None:
        """Write into an AnnData: layers lower/upper, obs scale and shift, varm quantiles."""
        adata.layers["lower"] = self.lower
        adata.layers["upper"] = self.upper
        adata.obs["interval_scale"] = self.scale.astype(np.float32)
        adata.obs["shift_score"] = self.shift_score.astype(np.float32)
        adata.obs["shifted"] = self.shifted
        adata.varm["conformal_quantile"] = self.quantiles.astype(np.float64)
        stflow = dict(adata.uns.get("stflow", {}))
        stflow["intervals"] = {**self.info, "share_shifted": float(np.mean(self.shifted))
                               if len(self.shifted) else 0.0}
        adata.uns["stflow"] = stflow


def spot_difficulty(name: str, shift_scores: np.ndarray, shift_median: float) -> np.ndarray:
    """A candidate difficulty per spot: 1, or the shift score in units of its median."""
    shift_scores = np.asarray(shift_scores, dtype=np.float64)
    if name == "constant":
        return np.ones(len(shift_scores))
    if name == "shift":
        return shift_scores / max(shift_median, 1e-12)
    raise StflowError(f"unknown interval difficulty '{name}'. Fix: use one of {DIFFICULTIES}")


def interval_levels(level: float) -> tuple[float, ...]:
    """The standard levels plus ``level``, sorted."""
    return tuple(sorted({*STANDARD_LEVELS, check_level(level)}))


def apply_calibration(calibration: Calibration, features: np.ndarray, prediction: np.ndarray,
                      level: float = DEFAULT_LEVEL) -> SpotIntervals:
    """Intervals at ``level`` and the shift flag for one slide's (N, G) prediction."""
    level = check_level(level)
    levels = interval_levels(level)
    shift_scores = calibration.shift.score(features)
    scale = calibration.difficulty_of(shift_scores)
    quantiles = calibration.quantiles(levels)
    lower, upper = interval(prediction, scale, quantiles[:, levels.index(level)])
    return SpotIntervals(lower, upper, scale.astype(np.float32), quantiles, levels,
                         shift_scores, shift_scores > calibration.shift.threshold,
                         calibration.describe(level, levels))


def choose_difficulty(truth: np.ndarray, prediction: np.ndarray, shift_scores: np.ndarray,
                      shift_median: float, seed: int) -> tuple[str, list[dict[str, Any]]]:
    """The candidate whose 90 % intervals are narrowest on held-back calibration spots.

    Width is in units of each gene's standard deviation on the calibration spots, averaged
    over genes; each candidate is calibrated on one random half and measured on the other,
    both ways round. Ties go to ``constant``, the simplest.
    """
    n = len(truth)
    order = np.random.default_rng(seed).permutation(n)
    halves = (order[: n // 2], order[n // 2:])
    spread = np.maximum(np.asarray(truth, np.float64).std(0), 1e-6)
    rows = []
    for name in DIFFICULTIES:
        scale = spot_difficulty(name, shift_scores, shift_median)
        scores = nonconformity(truth, prediction, scale)
        widths, covered = [], []
        for fit, held in (halves, halves[::-1]):
            q = conformal_quantile(scores[fit], DEFAULT_LEVEL)
            half = q[None, :] * scale[held, None]
            widths.append(np.mean(2 * half / spread))
            covered.append(np.mean(scores[held] <= q[None, :]))
        rows.append({"difficulty": name, "width_sd": float(np.mean(widths)),
                     "coverage": float(np.mean(covered))})
    best = min(rows, key=lambda r: (r["width_sd"], DIFFICULTIES.index(r["difficulty"])))
    return best["difficulty"], rows


def calibration_spots(train: list[Slide], val: list[Slide], val_fraction: float, seed: int
                      ) -> tuple[list[np.ndarray] | None, str]:
    """Held-out masks of the training slides (None when validation samples are given), and
    a description of the calibration spots."""
    if val:
        return None, f"the validation samples {[s.sample for s in val]}"
    masks = holdout_masks([s.coords_um for s in train], [s.sample for s in train],
                          val_fraction, seed)
    return masks, (f"the held-out region ({val_fraction:.0%}, seed {seed}) of each training "
                   f"sample {[s.sample for s in train]}")


def calibrate(predictor: Any, train: list[Slide], val: list[Slide], seed: int,
              val_fraction: float = VAL_FRACTION, predictor_name: str = "the kept model"
              ) -> Calibration | None:
    """Calibrate on the validation spots with ``predictor``, a fit that never saw them.

    None (with a warning) when there are no validation spots to calibrate on.
    """
    if not val and val_fraction <= 0:
        log.warning("no validation spots (no validation samples, nothing held out): the "
                    "model is saved without intervals")
        return None
    masks, spots = calibration_spots(train, val, val_fraction, seed)
    if masks is None:
        fitted_on = np.concatenate([s.features for s in train])
        held = val
        predicted = predictor.predict(val)
        truth = np.concatenate([s.targets for s in val])
    else:
        fitted_on = np.concatenate([s.features[~m] for s, m in zip(train, masks, strict=True)])
        held = [s.subset(m) for s, m in zip(train, masks, strict=True)]
        predicted = [p[m] for p, m in zip(predictor.predict(train), masks, strict=True)]
        truth = np.concatenate([s.targets for s in held])
    prediction = np.concatenate(predicted)
    features = np.concatenate([s.features for s in held])
    shift = ShiftReference.fit(fitted_on, seed=seed)
    shift_scores = shift.score(features)
    shift.set_threshold(shift_scores)
    shift_median = float(np.median(shift_scores))
    difficulty, candidates = choose_difficulty(truth, prediction, shift_scores, shift_median,
                                               seed)
    scores = nonconformity(truth, prediction,
                           spot_difficulty(difficulty, shift_scores, shift_median))
    log.info("calibrated on %d spots (%s) with %s: difficulty '%s' (%s)", len(truth), spots,
             predictor_name, difficulty,
             ", ".join(f"{r['difficulty']} {r['width_sd']:.3f} sd" for r in candidates))
    return Calibration(scores.astype(np.float32), difficulty, shift, shift_median, spots,
                       predictor_name, candidates)


def save_calibration(calibration: Calibration | None, directory: str | Path) -> None:
    """``calibration.npz`` (scores, shift reference) and ``calibration.json`` (the rest);
    nothing when the model could not be calibrated."""
    if calibration is None:
        return
    directory = Path(directory)
    with atomic_output(directory / CALIBRATION_NPZ) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, scores=calibration.scores, **calibration.shift.arrays())
    write_json({"method": METHOD, "difficulty": calibration.difficulty,
                "shift_median": calibration.shift_median, "n_spots": calibration.n_spots,
                "spots": calibration.spots, "predictor": calibration.predictor,
                "candidates": calibration.candidates}, directory / CALIBRATION_JSON)


def load_calibration(directory: str | Path) -> Calibration | None:
    """The calibration saved in a model folder; None for a folder saved before calibration
    existed (or one that could not be calibrated); damaged files are refused."""
    directory = Path(directory)
    npz, meta = directory / CALIBRATION_NPZ, directory / CALIBRATION_JSON
    if not npz.is_file() and not meta.is_file():
        return None
    record = read_json(meta, "interval calibration", RECALIBRATE)
    try:
        with np.load(npz, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        calibration = Calibration(arrays["scores"], str(record["difficulty"]),
                                  ShiftReference.from_arrays(arrays),
                                  float(record["shift_median"]), str(record["spots"]),
                                  str(record["predictor"]), list(record.get("candidates", [])))
        spot_difficulty(calibration.difficulty, np.ones(1), 1.0)
    except (OSError, KeyError, TypeError, ValueError) as err:
        raise input_error(directory, f"its interval calibration is incomplete or damaged "
                          f"({err})", RECALIBRATE) from err
    return calibration

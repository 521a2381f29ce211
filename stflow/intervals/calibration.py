"""Calibrating a trained model's intervals and shift flag on spots it never trained on.

The calibration spots are the fold's validation spots: its validation samples, or, when it
has none, the contiguous held-out region of each training sample that STFlow's trainer and
the baselines hold out alike (:func:`stflow.data.holdout.holdout_masks`). Whose spots they
are decides what the intervals promise (``Calibration.scope``, :data:`SCOPES`): a whole
training patient the model never trains on (``patient``: the splits stage chooses one under
``intervals.calibration`` patient or auto) calibrates for a new patient; a section or region
of a training patient (``within``) only for spots of the training patients. The deployed
model is recalibrated across patients on the study's out-of-fold predictions
(:mod:`stflow.intervals.across_patients`). The validation spots also chose the checkpoint
and the searched settings, so the scores are slightly optimistic; the coverage on the test
folds (``tables/coverage.tsv``) measures that. A model that fitted on those spots too
(``ridge_hest``, ``rf``, any refit) is calibrated by the model it would be without them: the
fit before its refit, or a twin with the same settings fitted on the training spots alone.

The difficulty that scales each spot's interval is chosen on one random half of the
calibration spots and the quantiles are set on the other, so the choice cannot shrink the
intervals it scales: within the first half, each candidate is calibrated on one part and
its interval width at 90 % measured on the other (both ways round); the narrowest wins.
Candidates: ``constant`` (plain split conformal), ``shift`` (the spot's distance from the
training features, :mod:`stflow.intervals.shift`) and ``level`` (per gene, the mean
absolute training error at the predicted expression level: log1p counts are noisier at
some levels than at others). Both non-constant difficulties are fitted on training spots
only, so the calibration scores stay exchangeable with new spots' scores.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stflow.atomic import atomic_output, read_json, write_json
from stflow.data.dataset import Slide
from stflow.data.holdout import VAL_FRACTION, holdout_masks
from stflow.errors import StflowError, input_error
from stflow.intervals.conformal import (
    DEFAULT_LEVEL,
    STANDARD_LEVELS,
    check_level,
    conformal_quantile,
    interval,
    nonconformity,
    weighted_conformal_quantile,
)
from stflow.intervals.shift import THRESHOLD_PERCENTILE, ShiftReference

log = logging.getLogger(__name__)

CALIBRATION_NPZ = "calibration.npz"
CALIBRATION_JSON = "calibration.json"
METHOD = "normalised split-conformal, per gene"
DIFFICULTIES = ("constant", "shift", "level")
LEVEL_BINS = 10
MIN_CHOICE_SPOTS = 4  # below this, no two halves to choose the difficulty on: constant
SHIFT_ROWS = 16384  # spots whitened at a time for their shift scores
# whose spots calibrated the intervals -> what that promises
SCOPES = {
    "patient": "calibrated across patients: on spots of patients the predictor never trained "
               "on, each patient weighted alike; covers its level for a new patient from the "
               "same population, on average over patients",
    "within": "calibrated within the training patients: on their held-out spots; covers its "
              "level for spots of those patients, not promised for a new patient",
}
RECALIBRATE = ("re-run the train stage (or train_final) with this version of stflow, which "
               "calibrates the model on its validation spots")


@dataclass
class Calibration:
    """Calibration scores, the chosen difficulty and the shift reference of one model."""

    scores: np.ndarray  # (n, G) |error| / difficulty on the calibration spots
    difficulty: str
    shift: ShiftReference
    shift_median: float  # median shift score of the calibration spots: the difficulty's unit
    level_curve: LevelCurve
    spots: str  # where the calibration spots came from
    predictor: str  # which fit predicted them
    candidates: list[dict[str, Any]] = field(default_factory=list)
    scope: str = "within"  # SCOPES: whose spots: patients never trained on, or the training's
    weights: np.ndarray | None = None  # (n,) per spot, each patient weighing alike; None: equal

    @property
    def n_spots(self) -> int:
        return int(self.scores.shape[0])

    def difficulty_of(self, shift_scores: np.ndarray, prediction: np.ndarray) -> np.ndarray:
        """Each spot's (N,) or spot and gene's (N, G) interval scale."""
        return difficulty(self.difficulty, shift_scores / max(self.shift_median, 1e-12),
                          self.level_curve, prediction)

    def quantiles(self, levels: tuple[float, ...]) -> np.ndarray:
        """(G, L) the score quantile of each gene at each level."""
        return np.stack([weighted_conformal_quantile(self.scores, self.weights, lv)
                         for lv in levels], axis=1)

    @property
    def promise(self) -> str:
        """Whom the intervals were calibrated for, in words (maps' titles, tables)."""
        return SCOPES[self.scope]

    def describe(self, level: float, levels: tuple[float, ...]) -> dict[str, Any]:
        """What a prediction file says about its intervals (``uns["stflow"]["intervals"]``)."""
        return {"method": METHOD, "level": level, "levels": list(levels),
                "calibration": self.scope, "calibrated_for": self.promise,
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
    scale: np.ndarray  # (N,) or (N, G): the difficulty each interval was scaled by
    quantiles: np.ndarray  # (G, L)
    levels: tuple[float, ...]
    shift_score: np.ndarray  # (N,)
    shifted: np.ndarray  # (N,) bool
    info: dict[str, Any]

    def layers(self) -> dict[str, np.ndarray]:
        """The (N, G) arrays: lower, upper and the scale when it is per spot and gene."""
        out = {"lower": self.lower, "upper": self.upper}
        if self.scale.ndim == 2:
            out["interval_scale"] = self.scale.astype(np.float32)
        return out

    def obs_columns(self) -> dict[str, np.ndarray]:
        """The (N,) columns: the scale when it is per spot, the shift score and flag."""
        out = {"interval_scale": self.scale.astype(np.float32)} if self.scale.ndim == 1 else {}
        return {**out, "shift_score": self.shift_score.astype(np.float32),
                "shifted": self.shifted}

    def uns_info(self) -> dict[str, Any]:
        """``uns["stflow"]["intervals"]``: how they were made and the share of spots flagged
        as unlike the training data (``share_shifted``): the slide-level reading of the flag,
        which tells another tissue, stain or scanner from a new slide like the training ones
        (benchmarks/shift_detection.py); it does not mark wrong predictions."""
        return {**self.info, "share_shifted": float(np.mean(self.shifted))
                if len(self.shifted) else 0.0}

    def attach(self, adata: Any) -> None:
        """Write into an AnnData: layers lower/upper, the scale (obs when per spot, a layer
        when per spot and gene), the shift score and flag in obs, varm quantiles."""
        adata.layers.update(self.layers())
        for name, column in self.obs_columns().items():
            adata.obs[name] = column
        adata.varm["conformal_quantile"] = self.quantiles.astype(np.float64)
        adata.uns["stflow"] = {**adata.uns.get("stflow", {}), "intervals": self.uns_info()}


@dataclass
class LevelCurve:
    """Per gene, the mean absolute training error as a function of the predicted level.

    Fitted on the training spots (whose errors are smaller than new spots', which does not
    matter: only the curve's shape scales the intervals, the conformal quantile sets their
    size), read between bin centres by linear interpolation.
    """

    centres: np.ndarray  # (G, B) mean prediction of each quantile bin
    values: np.ndarray  # (G, B) mean |error| in it, floored above 0

    @classmethod
    def fit(cls, prediction: np.ndarray, truth: np.ndarray, bins: int = LEVEL_BINS
            ) -> LevelCurve:
        prediction = np.asarray(prediction, np.float64)
        error = np.abs(np.asarray(truth, np.float64) - prediction)
        centres = np.empty((prediction.shape[1], bins))
        values = np.empty_like(centres)
        for g in range(prediction.shape[1]):
            order = np.argsort(prediction[:, g], kind="stable")
            groups = [part for part in np.array_split(order, bins) if len(part)]
            c = [prediction[part, g].mean() for part in groups]
            v = [error[part, g].mean() for part in groups]
            c += [c[-1]] * (bins - len(c))
            v += [v[-1]] * (bins - len(v))
            floor = 0.05 * error[:, g].mean() + 1e-6
            centres[g], values[g] = c, np.maximum(v, floor)
        return cls(centres, values)

    def __call__(self, prediction: np.ndarray) -> np.ndarray:
        """(N, G) expected |error| at each predicted value."""
        prediction = np.asarray(prediction, np.float64)
        return np.stack([np.interp(prediction[:, g], self.centres[g], self.values[g])
                         for g in range(prediction.shape[1])], axis=1)


def difficulty(name: str, relative_shift: np.ndarray, curve: LevelCurve,
               prediction: np.ndarray) -> np.ndarray:
    """A candidate difficulty: 1 per spot, the shift score in units of its calibration
    median per spot, or the level curve per spot and gene."""
    if name == "constant":
        return np.ones(len(relative_shift))
    if name == "shift":
        return np.asarray(relative_shift, dtype=np.float64)
    if name == "level":
        return curve(prediction)
    raise StflowError(f"unknown interval difficulty '{name}'. Fix: use one of {DIFFICULTIES}")


def interval_levels(level: float) -> tuple[float, ...]:
    """The standard levels plus ``level``, sorted."""
    return tuple(sorted({*STANDARD_LEVELS, check_level(level)}))


def shift_scores(calibration: Calibration, features: np.ndarray,
                 chunk_spots: int | None = None) -> np.ndarray:
    """(N,) shift scores, ``chunk_spots`` rows at a time (None: all at once; at most
    :data:`SHIFT_ROWS`): whitening makes float64 copies of the rows it scores, 10 GB each
    for a million spots at once. Each spot's score is its own, whatever the chunks."""
    step = max(min(chunk_spots or len(features), SHIFT_ROWS), 1)
    return np.concatenate([calibration.shift.score(features[start:start + step])
                           for start in range(0, len(features), step)] or
                          [np.zeros(0, np.float32)])


def apply_calibration(calibration: Calibration, features: np.ndarray, prediction: np.ndarray,
                      level: float = DEFAULT_LEVEL, chunk_spots: int | None = None
                      ) -> SpotIntervals:
    """Intervals at ``level`` and the shift flag for one slide's (N, G) prediction."""
    return spot_intervals(calibration, shift_scores(calibration, features, chunk_spots),
                          prediction, level)


def spot_intervals(calibration: Calibration, scores: np.ndarray, prediction: np.ndarray,
                   level: float = DEFAULT_LEVEL) -> SpotIntervals:
    """Intervals and shift flag of spots whose shift ``scores`` are known: each row depends
    on its own spot only, so a slide can be done a row chunk at a time."""
    level = check_level(level)
    levels = interval_levels(level)
    shift_scores = scores
    scale = calibration.difficulty_of(shift_scores, prediction)
    quantiles = calibration.quantiles(levels)
    lower, upper = interval(prediction, scale, quantiles[:, levels.index(level)])
    return SpotIntervals(lower, upper, scale.astype(np.float32), quantiles, levels,
                         shift_scores, shift_scores > calibration.shift.threshold,
                         calibration.describe(level, levels))


def candidate_scales(relative_shift: np.ndarray, curve: LevelCurve, prediction: np.ndarray
                     ) -> dict[str, np.ndarray]:
    """Every candidate difficulty of the same spots, by name."""
    return {name: difficulty(name, relative_shift, curve, prediction) for name in DIFFICULTIES}


def choose_difficulty(truth: np.ndarray, prediction: np.ndarray,
                      scales: dict[str, np.ndarray], seed: int
                      ) -> tuple[str, list[dict[str, Any]]]:
    """The candidate (``scales``: :func:`candidate_scales`) whose 90 % intervals are
    narrowest on held-back calibration spots.

    Width is in units of each gene's standard deviation on the calibration spots, averaged
    over the genes that vary there (a gene constant on a small held-out region would
    otherwise weigh without bound); each candidate is calibrated on one random half and
    measured on the other, both ways round. Ties go to ``constant``, the simplest; so does
    a calibration too small to split (fewer than :data:`MIN_CHOICE_SPOTS` spots).
    """
    n = len(truth)
    if n < MIN_CHOICE_SPOTS:
        return "constant", []
    order = np.random.default_rng(seed).permutation(n)
    halves = (order[: n // 2], order[n // 2:])
    spread = np.asarray(truth, np.float64).std(0)
    varies = spread > 1e-6
    rows = []
    for name in DIFFICULTIES:
        scale = scales[name]
        scores = nonconformity(truth, prediction, scale)
        scale = scale if scale.ndim == 2 else scale[:, None]
        widths, covered = [], []
        for fit, held in (halves, halves[::-1]):
            q = conformal_quantile(scores[fit], DEFAULT_LEVEL)
            half = q[None, :] * scale[held]
            widths.append(np.mean(2 * half[:, varies] / spread[varies]) if varies.any()
                          else 0.0)
            covered.append(np.mean(scores[held] <= q[None, :]))
        rows.append({"difficulty": name, "width_sd": float(np.mean(widths)),
                     "coverage": float(np.mean(covered))})
    best = min(rows, key=lambda r: (r["width_sd"], DIFFICULTIES.index(r["difficulty"])))
    return best["difficulty"], rows


@dataclass
class HeldOut:
    """Calibration spots one predictor never trained on, with what their difficulty needs:
    the shift scores in units of their median and the level curve, both of that predictor
    (its own training spots), so every group's scores are in the units its difficulty
    multiplies."""

    truth: np.ndarray  # (n, G)
    prediction: np.ndarray  # (n, G)
    relative_shift: np.ndarray  # (n,)
    curve: LevelCurve
    described: str  # whose spots, for calibration.json

    @property
    def n_spots(self) -> int:
        return len(self.truth)

    def halves(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Sorted indices of a seeded random half (to choose the difficulty on) and the
        rest (to set the quantiles on)."""
        order = np.random.default_rng(seed).permutation(self.n_spots)
        return np.sort(order[: self.n_spots // 2]), np.sort(order[self.n_spots // 2:])

    def scale(self, name: str, rows: np.ndarray) -> np.ndarray:
        """The candidate difficulty ``name`` of the spots ``rows``."""
        return difficulty(name, self.relative_shift[rows], self.curve, self.prediction[rows])


def held_out(fit: tuple[np.ndarray, np.ndarray, np.ndarray],
             held: tuple[np.ndarray, np.ndarray, np.ndarray], seed: int, described: str
             ) -> tuple[HeldOut, ShiftReference, np.ndarray]:
    """The held-out spots of one predictor from (features, truth, prediction) of the spots
    it trained on (``fit``) and of the spots it did not (``held``); also the shift reference
    fitted on its training features and the held spots' raw shift scores."""
    shift = ShiftReference.fit(fit[0], seed=seed)
    curve = LevelCurve.fit(fit[2], fit[1])
    scores = shift.score(held[0])
    relative = scores / max(float(np.median(scores)), 1e-12)
    return HeldOut(held[1], held[2], relative, curve, described), shift, scores


def inner_held_out(predictor: Any, fitted_on: list[Slide], held: list[Slide], seed: int
                   ) -> HeldOut:
    """A training patient's spots (``held``) predicted by ``predictor``, a fit on the other
    training patients (``fitted_on``): out-of-patient residuals inside a fold."""
    def stacked(slides: list[Slide]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.concatenate([s.features for s in slides]),
                np.concatenate([s.targets for s in slides]),
                np.concatenate(predictor.predict(slides)))
    return held_out(stacked(fitted_on), stacked(held), seed,
                    f"{[s.sample for s in held]} by a fit without them")[0]


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
              val_fraction: float = VAL_FRACTION, predictor_name: str = "the kept model",
              scope: str = "within", others: Sequence[HeldOut] = ()) -> Calibration | None:
    """Calibrate on the validation spots with ``predictor``, a fit that never saw them, and
    on ``others``: further training patients, each predicted by a fit without it
    (:func:`inner_held_out`), pooled with each patient weighted alike.

    ``scope``: 'patient' when the validation samples are patients none of the training
    samples has (the splits stage records it), else 'within'. The difficulty is chosen on
    one random half of each group's spots and the quantiles are set on the other, so the
    choice does not shrink the intervals it then scales. The shift flag's reference and
    threshold are the kept predictor's (its validation spots). None (with a warning) when
    there are no validation spots to calibrate on.
    """
    if not val and val_fraction <= 0:
        log.warning("no validation spots (no validation samples, nothing held out): the "
                    "model is saved without intervals")
        return None
    masks, spots = calibration_spots(train, val, val_fraction, seed)
    on_train = predictor.predict(train)
    if masks is None:
        masks = [np.zeros(s.n_spots, bool) for s in train]
        held, predicted = val, predictor.predict(val)
    else:
        held = [s.subset(m) for s, m in zip(train, masks, strict=True)]
        predicted = [p[m] for p, m in zip(on_train, masks, strict=True)]
    fit = tuple(np.concatenate(parts) for parts in zip(*[
        (s.features[~m], s.targets[~m], p[~m]) for s, m, p in
        zip(train, masks, on_train, strict=True)], strict=True))
    validation, shift, shift_scores = held_out(
        fit, (np.concatenate([s.features for s in held]),
              np.concatenate([s.targets for s in held]), np.concatenate(predicted)), seed, spots)
    shift.set_threshold(shift_scores)
    groups = [validation, *others]
    halves = [group.halves(seed + i) for i, group in enumerate(groups)]
    choose = [rows for rows, _ in halves]
    chosen, candidates = choose_difficulty(
        np.concatenate([g.truth[r] for g, r in zip(groups, choose, strict=True)]),
        np.concatenate([g.prediction[r] for g, r in zip(groups, choose, strict=True)]),
        {name: np.concatenate([g.scale(name, r) for g, r in zip(groups, choose, strict=True)])
         for name in DIFFICULTIES}, seed)
    scores = np.concatenate([
        nonconformity(g.truth[keep], g.prediction[keep], g.scale(chosen, keep))
        for g, (_, keep) in zip(groups, halves, strict=True)])
    kept = [len(keep) for _, keep in halves]
    weights = (np.concatenate([np.full(n, 1.0 / max(n, 1)) for n in kept])
               if len(groups) > 1 else None)
    described = spots if not others else (
        f"{spots} with the kept model, and the training patients' samples "
        f"{'; '.join(g.described for g in others)}, each patient weighted alike")
    log.info("calibrated on %d spots (%s) with %s: difficulty '%s' (%s) chosen on %d of them, "
             "quantiles set on the other %d; %s", sum(g.n_spots for g in groups), described,
             predictor_name, chosen,
             ", ".join(f"{r['difficulty']} {r['width_sd']:.3f} sd" for r in candidates),
             sum(len(r) for r in choose), sum(kept), SCOPES[scope])
    return Calibration(scores.astype(np.float32), chosen, shift,
                       float(np.median(shift_scores)), validation.curve,
                       f"{described}: difficulty chosen on {sum(len(r) for r in choose)} "
                       f"spots, quantiles set on the other {sum(kept)}", predictor_name,
                       candidates, scope, weights)


def save_calibration(calibration: Calibration | None, directory: str | Path) -> None:
    """``calibration.npz`` (scores, shift reference) and ``calibration.json`` (the rest);
    nothing when the model could not be calibrated."""
    if calibration is None:
        return
    directory = Path(directory)
    with atomic_output(directory / CALIBRATION_NPZ) as tmp, open(tmp, "wb") as handle:
        weights = {} if calibration.weights is None else {"weights": calibration.weights}
        np.savez(handle, scores=calibration.scores, level_centres=calibration.level_curve.centres,
                 level_values=calibration.level_curve.values, **weights,
                 **calibration.shift.arrays())
    write_json({"method": METHOD, "calibration": calibration.scope,
                "calibrated_for": calibration.promise, "difficulty": calibration.difficulty,
                "shift_median": calibration.shift_median, "n_spots": calibration.n_spots,
                "spots": calibration.spots, "predictor": calibration.predictor,
                "candidates": calibration.candidates}, directory / CALIBRATION_JSON)


def load_calibration(directory: str | Path) -> Calibration | None:
    """The calibration saved in a model folder; None for a model that could not be
    calibrated (no file written); incomplete or damaged files are refused."""
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
                                  float(record["shift_median"]),
                                  LevelCurve(arrays["level_centres"], arrays["level_values"]),
                                  str(record["spots"]), str(record["predictor"]),
                                  list(record["candidates"]), str(record["calibration"]),
                                  arrays.get("weights"))
        if calibration.difficulty not in DIFFICULTIES:
            raise ValueError(f"unknown difficulty '{calibration.difficulty}'")
        if calibration.scope not in SCOPES:
            raise ValueError(f"unknown calibration '{calibration.scope}'")
        if not 0 <= calibration.shift_median < math.inf:  # NaN too: it scales every interval
            raise ValueError(f"shift_median {calibration.shift_median} is not a finite "
                             "non-negative number")
    except (OSError, KeyError, TypeError, ValueError) as err:
        raise input_error(directory, f"its interval calibration is incomplete or damaged "
                          f"({err})", RECALIBRATE) from err
    return calibration

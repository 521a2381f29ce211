"""Fit a registry model the validated way: search, refit, calibrate.

Every choice is made on validation spots drawn from the training patients (a fold's
validation samples, or a held-out region of its training samples): the search's values,
the refit's epoch count or alpha, and the interval calibration.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stflow.data.dataset import Slide
from stflow.data.holdout import VAL_FRACTION
from stflow.errors import StflowError
from stflow.intervals.calibration import (
    Calibration,
    HeldOut,
    calibrate,
    calibration_spots,
    inner_held_out,
)
from stflow.models.progress import Stages, fit_following, stage_callback
from stflow.models.registry import Estimator, build_estimator
from stflow.models.search import SearchResult, check_space, search_fit

log = logging.getLogger(__name__)

DEFAULT_TRIALS = 8


@dataclass
class TrainedModel:
    """A kept estimator and everything its folder records about how it was chosen."""

    model: str
    estimator: Estimator
    history: list[dict[str, float]]
    params: dict[str, Any]  # the user's settings
    chosen: dict[str, Any]  # the searched values validation chose
    refit: dict[str, Any] | None  # the settings fixed for the refit (None: no refit)
    search: SearchResult | None
    space: dict[str, Any] | None
    calibration: Calibration | None

    @property
    def effective_params(self) -> dict[str, Any]:
        """The settings the kept estimator was trained with."""
        return {**self.params, **self.chosen, **(self.refit or {})}


def fit_or_search(model: str, params: dict[str, Any] | None, search: dict[str, Any] | None,
                  train: list[Slide], val: list[Slide], seed: int, device: str,
                  stages: Stages | None = None
                  ) -> tuple[Any, list[dict[str, float]], SearchResult | None]:
    """Fit ``model`` on ``train`` (selecting on ``val``), or first search ``search["space"]``
    on ``val`` and keep the best trial's fit. Returns (estimator, log rows, search result).
    ``stages(name)`` follows each fit's epochs as they end (a progress file)."""
    if search:
        result = search_fit(model, params or {}, search["space"],
                            int(search.get("trials", DEFAULT_TRIALS)), train, val, seed, device,
                            stages)
        return result.estimator, result.history, result
    estimator = build_estimator(model, params, seed, device=device)
    return estimator, fit_following(estimator, train, val, stage_callback(stages, "fit")), None


def refit_estimator(model: str, estimator: Estimator, rows: list[dict[str, float]],
                    params: dict[str, Any], slides: list[Slide], seed: int, device: str,
                    stages: Stages | None = None
                    ) -> tuple[Any, list[dict[str, float]], dict[str, Any] | None]:
    """Retrain on ``slides`` (train + validation) with the validated choice fixed.

    Returns the estimator to keep, its log rows and the fixed settings (None when the model
    selected nothing, or cannot refit, and is kept as it is).
    """
    fixed = estimator.refit_params(rows) if estimator.refits else None
    if not fixed:
        log.info("refit: %s selects nothing on validation (or cannot refit); kept as fitted",
                 model)
        return estimator, rows, None
    log.info("refit: %s on train + validation with %s", model, fixed)
    refitted = build_estimator(model, {**params, **fixed}, seed, device=device)
    return refitted, fit_following(refitted, slides, [], stage_callback(stages, "refit")), fixed


def check_request(model: str, params: dict[str, Any] | None, search: dict[str, Any] | None,
                  seed: int, device: str) -> None:
    """Refuse bad settings or a bad search space before any data is loaded."""
    build_estimator(model, params, seed, device=device)
    if search:
        check_space(model, search.get("space") or {})


def train_validated(model: str, train: list[Slide], val: list[Slide], *,
                    params: dict[str, Any] | None = None, search: dict[str, Any] | None = None,
                    refit: bool = False, seed: int = 0, device: str = "auto",
                    stages: Stages | None = None, scope: str = "within",
                    calibrating: Sequence[Sequence[str]] = ()) -> TrainedModel:
    """Search (when asked) and fit on ``train`` selecting on ``val``, refit on both (when
    asked), and calibrate the intervals with a fit that never saw the validation spots
    (``scope``: 'patient' when ``val`` is patients ``train`` lacks, else 'within').
    ``calibrating``: the samples of further training patients, each predicted for the
    calibration by one more fit without it (:func:`inner_fits`).
    ``stages(name)`` follows every fit's epochs as they end ("trial N", "fit", "refit")."""
    params = dict(params or {})
    estimator, rows, result = fit_or_search(model, params, search, train, val, seed, device,
                                            stages)
    chosen = {k: v for k, v in result.chosen.items() if k != "val_pearson"} if result else {}
    selected = {**params, **chosen}
    val_fraction = float(selected.get("val_fraction", VAL_FRACTION))
    predictor, predictor_name = estimator, "the kept model"
    if estimator.fits_on_validation:
        predictor, predictor_name = calibration_twin(model, selected, train, val,
                                                     val_fraction, seed, device, stages)
    others = inner_fits(model, selected, train, val, calibrating, seed, device, stages,
                        twin=predictor is not estimator)
    refit_with = None
    if refit:
        kept, rows, refit_with = refit_estimator(model, estimator, rows, selected,
                                                 train + val, seed, device, stages)
        if refit_with is not None:
            predictor_name = "the model before its refit on train + validation"
        estimator = kept
    calibration = calibrate(predictor, train, val, seed, val_fraction, predictor_name, scope,
                            others)
    return TrainedModel(model, estimator, rows, params, chosen, refit_with, result,
                        dict(search["space"]) if search else None, calibration)


def calibration_twin(model: str, params: dict[str, Any], train: list[Slide], val: list[Slide],
                     val_fraction: float, seed: int, device: str,
                     stages: Stages | None = None) -> tuple[Estimator, str]:
    """The model with the same settings fitted without the validation spots, for a model
    that fits on them (nothing to select): it predicts the calibration spots unseen."""
    masks, _ = calibration_spots(train, val, val_fraction, seed)
    spots = train if masks is None else [s.subset(~m) for s, m in
                                         zip(train, masks, strict=True)]
    twin = build_estimator(model, params, seed, device=device)
    fit_following(twin, spots, [], stage_callback(stages, "calibration twin"))
    return twin, "a twin with the same settings fitted on the training spots alone"


def inner_fits(model: str, params: dict[str, Any], train: list[Slide], val: list[Slide],
               calibrating: Sequence[Sequence[str]], seed: int, device: str,
               stages: Stages | None = None, twin: bool = False) -> list[HeldOut]:
    """Out-of-patient residuals inside a fold: for each group of ``calibrating`` (one
    training patient's samples), the model with the calibrating predictor's settings fitted
    on the other training samples (selecting on ``val`` as the kept model did; a ``twin``
    on the training samples alone) predicts that patient."""
    groups = []
    for i, samples in enumerate(calibrating, start=1):
        left_out = set(samples)
        held = [s for s in train if s.sample in left_out]
        rest = [s for s in train if s.sample not in left_out]
        if not held or not rest:
            raise StflowError(f"calibrating samples {list(samples)}: not a part of the training "
                              f"samples {[s.sample for s in train]}. Fix: re-run the splits "
                              "stage")
        log.info("calibration fit %d/%d: %s without %s", i, len(calibrating), model,
                 list(samples))
        fit = build_estimator(model, params, seed, device=device)
        fit_following(fit, rest, [] if twin else val,
                      stage_callback(stages, f"calibration fit {i}"))
        groups.append(inner_held_out(fit, rest, held, seed))
    return groups

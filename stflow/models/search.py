"""Hyper-parameter search on the validation split of one fold (optuna).

A search space is declared per model in the config (``search: {model: {trials, space}}``);
each fold searches on its own validation samples (or the trainer's held-out region), which
come from the training patients only: the test samples are not even loaded before the chosen
model predicts. Trials are drawn by optuna's TPE sampler (seeded), and then trials of models
that report a validation score per epoch (STFlow) are stopped early by successive halving,
so a search costs a few full trainings rather than ``trials`` of them. A space of choices
whose combinations ``trials`` covers is searched exhaustively instead: every combination
once, each trained to its own early stop (halving would judge a slow starter, a strong
regulariser say, at epoch 5 and could stop the combination validation would choose). The best
trial's fitted model is kept: its checkpoint was already selected on the same validation
split.

A space entry is a list (categorical choices) or ``{low, high, log}`` (a float range, or an
integer range when both bounds are integers).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from stflow.data.dataset import Slide
from stflow.errors import StflowError
from stflow.models.param_checks import space_problems
from stflow.models.progress import Stages, fit_following, stage_callback
from stflow.models.registry import Estimator, build_estimator

log = logging.getLogger(__name__)


@dataclass
class SearchResult:
    """The fitted best estimator, its history, the chosen values and every trial's row."""

    estimator: Estimator
    history: list[dict[str, float]]
    chosen: dict[str, Any]
    trials: list[dict[str, Any]]


def check_space(model: str, space: Mapping[str, Any]) -> dict[str, Any]:
    """Refuse parameters the model does not take and malformed ranges, naming each key
    (the same check the workflow runs on the config before any job)."""
    problems = space_problems(model, space)
    if problems:
        raise StflowError("\n".join(str(p) for p in problems))
    return dict(space)


def suggest(trial: Any, name: str, spec: Any) -> Any:
    """One value of ``name`` for an optuna trial."""
    if isinstance(spec, list):
        return trial.suggest_categorical(name, spec)
    low, high, log_scale = spec["low"], spec["high"], bool(spec.get("log", False))
    if isinstance(low, int) and isinstance(high, int):
        return trial.suggest_int(name, low, high, log=log_scale)
    return trial.suggest_float(name, float(low), float(high), log=log_scale)


def make_sampler_and_pruner(space: Mapping[str, Any], trials: int, seed: int
                            ) -> tuple[Any, Any]:
    """An exhaustive search (``trials`` covers every combination of a space made only of
    choices) tries each combination once and trains it to its own early stop: random draws
    would repeat some and miss others, and halving would judge each at epoch 5. Otherwise TPE,
    seeded, with successive halving."""
    import optuna

    if all(isinstance(spec, list) for spec in space.values()) \
            and trials >= math.prod(len(spec) for spec in space.values()):
        return (optuna.samplers.GridSampler({name: list(spec) for name, spec in space.items()},
                                            seed=seed),
                optuna.pruners.NopPruner())
    return (optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(trials, 4)),
            optuna.pruners.SuccessiveHalvingPruner(min_resource=5, reduction_factor=3))


def validation_score(history: list[dict[str, float]]) -> float:
    """The best validation Pearson a fit reported (the checkpoint it kept).

    An ensemble is scored by its first network, as a single fit with its settings would be:
    the best of several networks' scores would favour ensembles for luck, not for settings.
    """
    scores = [row.get("val_pearson", float("nan")) for row in history
              if row.get("member", 0) == 0]
    finite = [s for s in scores if s is not None and math.isfinite(s)]
    return max(finite) if finite else float("-inf")


def search_fit(model: str, params: dict[str, Any], space: Mapping[str, Any], trials: int,
               train: list[Slide], val: list[Slide], seed: int = 0,
               device: str | None = None, stages: Stages | None = None) -> SearchResult:
    """Search ``space`` around ``params`` on the validation split; return the best fit.

    ``stages(name)`` gives the callback that follows each trial's epochs (a progress file).
    """
    import optuna

    space = check_space(model, space)
    if trials < 1:
        raise StflowError(f"search.{model}.trials = {trials}. Fix: at least 1 trial")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler, pruner = make_sampler_and_pruner(space, trials, seed)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    best: dict[str, Any] = {}

    def objective(trial: optuna.Trial) -> float:
        values = {name: suggest(trial, name, spec) for name, spec in space.items()}
        estimator = build_estimator(model, {**params, **values}, seed, device=device)
        follow = stage_callback(stages, f"trial {trial.number}")
        live = estimator.reports_epochs

        def on_epoch(row: dict[str, float]) -> None:
            if follow is not None:
                follow(row)
            if not live or row.get("member", 0):
                return  # the pruner follows the first member's epochs as they end
            score = row.get("val_pearson", float("nan"))
            trial.report(score if math.isfinite(score) else -1.0, int(row["epoch"]))
            if trial.should_prune():
                raise optuna.TrialPruned()

        history = fit_following(estimator, train, val, on_epoch)
        score = validation_score(history)
        if not best or score > best["score"]:
            best.update(score=score, estimator=estimator, history=history, values=values)
        return score

    study.optimize(objective, n_trials=trials, catch=())
    if not best:
        raise StflowError(f"search for '{model}': every trial was pruned or failed. "
                          "Fix: raise search.trials or widen the space")
    rows = []
    for trial in study.trials:
        rows.append({"trial": trial.number, "state": trial.state.name,
                     "val_pearson": trial.value if trial.value is not None else
                     (max(trial.intermediate_values.values())
                      if trial.intermediate_values else np.nan),
                     "epochs_run": len(trial.intermediate_values), **trial.params})
    log.info("search %s: %d trials, best validation Pearson %.4f with %s", model, trials,
             best["score"], best["values"])
    return SearchResult(best["estimator"], best["history"],
                        {**best["values"], "val_pearson": best["score"]}, rows)

"""The train stage: one model fitted on one fold (with its search and refit), written with its
history, parameters and deployment record.

It joins the upstream artifacts (splits, genes, ingested counts, features, graph) into
:class:`stflow.data.dataset.Slide` objects and hands them to a registry estimator, so every
model — STFlow, its ablations, the baselines — is trained and written the same way.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stflow.atomic import atomic_output
from stflow.crossval.inputs import features_identity, load_slides, read_fold, read_genes
from stflow.data.dataset import Slide
from stflow.deploy.deployment import describe_training, write_deployment
from stflow.models.registry import build_estimator, save_estimator
from stflow.models.search import SearchResult, check_space, search_fit

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_pearson"]
DEFAULT_TRIALS = 8


def fit_or_search(model: str, params: dict[str, Any] | None, search: dict[str, Any] | None,
                  train: list[Slide], val: list[Slide], seed: int, device: str
                  ) -> tuple[Any, list[dict[str, float]], SearchResult | None]:
    """Fit ``model`` on ``train`` (selecting on ``val``), or first search ``search["space"]``
    on ``val`` and keep the best trial's fit. Returns (estimator, log rows, search result)."""
    if search:
        result = search_fit(model, params or {}, search["space"],
                            int(search.get("trials", DEFAULT_TRIALS)), train, val, seed, device)
        return result.estimator, result.history, result
    estimator = build_estimator(model, params, seed, device=device)
    return estimator, estimator.fit(train, val), None


def history_frame(rows: list[dict[str, float]]) -> pd.DataFrame:
    """The estimator's log rows as history.tsv: the contract columns first, extras after."""
    frame = pd.DataFrame(rows if rows else [{}])
    if "epoch" not in frame or frame["epoch"].isna().all():
        frame["epoch"] = np.arange(1, len(frame) + 1)
    for column in HISTORY_COLUMNS:
        if column not in frame:
            frame[column] = np.nan
    extras = [c for c in frame.columns if c not in HISTORY_COLUMNS]
    return frame[HISTORY_COLUMNS + extras]


def train_fold(splits: str | Path, fold: str, genes: str | Path, st_dir: str | Path,
               features_dir: str | Path, graph_dir: str | Path | None, model: str,
               out: str | Path, params: dict[str, Any] | None = None, seed: int = 0,
               device: str = "auto", search: dict[str, Any] | None = None,
               refit: bool = False) -> Path:
    """Fit ``model`` on the fold's train (+val) slides and write its folder atomically.

    ``device`` is where to run, not a model parameter: it goes to the estimators that take
    one and is not recorded in params.json. ``search`` (``{trials, space}``) first searches
    the space on the fold's validation split (:mod:`stflow.models.search`); the chosen values and
    every trial are written next to the model (``search.json``, ``search.tsv``).
    ``refit`` then retrains the selected model on train + validation with what validation
    chose fixed (STFlow: the epoch count; ridge: alpha), for every model that selects
    something; models that select nothing already fit on train + validation.
    """
    parts = read_fold(splits, fold)
    gene_list = read_genes(genes)
    build_estimator(model, params, seed, device=device)  # refuses bad params early
    if search:
        check_space(model, search.get("space") or {})
    features = features_identity(features_dir, parts["train"] + parts["val"])
    train = load_slides(parts["train"], gene_list, st_dir, features_dir, graph_dir)
    val = load_slides(parts["val"], gene_list, st_dir, features_dir, graph_dir)
    log.info("training %s on %s: %d train, %d val slides", model, fold, len(train), len(val))
    estimator, rows, result = fit_or_search(model, params, search, train, val, seed, device)
    chosen = {k: v for k, v in result.chosen.items() if k != "val_pearson"} if result else {}
    refit_with = None
    if refit:
        estimator, rows, refit_with = refit_estimator(model, estimator, rows,
                                                      {**(params or {}), **chosen},
                                                      train + val, seed, device)
    out = Path(out)
    with atomic_output(out) as tmp:
        save_estimator(model, estimator, tmp)
        (tmp / "params.json").write_text(json.dumps(
            {"model": model, "params": params or {}, "chosen": chosen, "refit": refit_with,
             "seed": seed,
             "fold": fold, "train": parts["train"], "val": parts["val"], "genes": gene_list,
             "features": features}, indent=2))
        history_frame(rows).to_csv(tmp / "history.tsv", sep="\t", index=False)
        if result is not None:
            (tmp / "search.json").write_text(json.dumps(
                {"space": search["space"], "trials": len(result.trials),
                 "chosen": result.chosen, "selected_on": parts["val"] or "held-out region "
                 "of the training samples"}, indent=2))
            pd.DataFrame(result.trials).to_csv(tmp / "search.tsv", sep="\t", index=False)
        # deployment records the settings the kept model was trained with (searched, refit)
        effective = {**(params or {}), **chosen, **(refit_with or {})}
        write_deployment(tmp, describe_training(model, gene_list, features, train + val,
                                                features_dir, graph_dir, effective, fold))
    return out


def refit_estimator(model: str, estimator: Any, rows: list[dict[str, float]],
                    params: dict[str, Any], slides: list[Slide], seed: int, device: str
                    ) -> tuple[Any, list[dict[str, float]], dict[str, Any] | None]:
    """Retrain on ``slides`` (train + validation) with the validated choice fixed.

    Returns the estimator to keep, its log rows and the fixed settings (None when the model
    selected nothing, or cannot refit, and is kept as it is).
    """
    refit_params = getattr(estimator, "refit_params", None)
    fixed = refit_params(rows) if refit_params is not None else None
    if not fixed:
        log.info("refit: %s selects nothing on validation (or cannot refit); kept as fitted",
                 model)
        return estimator, rows, None
    log.info("refit: %s on train + validation with %s", model, fixed)
    refitted = build_estimator(model, {**params, **fixed}, seed, device=device)
    return refitted, refitted.fit(slides, []), fixed

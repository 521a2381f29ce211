"""A trained model's folder: the estimator, what chose it, its calibration and its
deployment record, written atomically so a half-written folder never looks finished."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stflow.atomic import atomic_output
from stflow.intervals.calibration import save_calibration
from stflow.models.progress import HISTORY_COLUMNS
from stflow.models.registry import save_estimator
from stflow.training.fit import TrainedModel


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


def write_model_folder(out: str | Path, trained: TrainedModel, record: dict[str, Any],
                       add_files: Callable[[Path], None] | None = None) -> Path:
    """Write ``out`` with model files, ``params.json`` (``record`` adds fold, samples, genes,
    features), ``history.tsv``, ``search.json``/``search.tsv`` after a search, the interval
    calibration, and what ``add_files(folder)`` adds (the deployment record)."""
    out = Path(out)
    with atomic_output(out) as tmp:
        save_estimator(trained.model, trained.estimator, tmp)
        (tmp / "params.json").write_text(json.dumps(
            {"model": trained.model, "params": trained.params, "chosen": trained.chosen,
             "refit": trained.refit, **record}, indent=2))
        history_frame(trained.history).to_csv(tmp / "history.tsv", sep="\t", index=False)
        if trained.search is not None:
            (tmp / "search.json").write_text(json.dumps(
                {"space": trained.space, "trials": len(trained.search.trials),
                 "chosen": trained.search.chosen,
                 "selected_on": record.get("val") or "held-out region of the training "
                 "samples"}, indent=2))
            pd.DataFrame(trained.search.trials).to_csv(tmp / "search.tsv", sep="\t",
                                                       index=False)
        save_calibration(trained.calibration, tmp)
        if add_files is not None:
            add_files(tmp)
    return out

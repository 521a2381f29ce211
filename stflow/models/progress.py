"""Live training progress: each epoch's row, logged and appended to a TSV as the epoch ends.

A model folder (with its history.tsv) appears only when training is done, written
atomically; a long run is followed instead in a progress file beside it
(``tail -f {model_dir}.progress.tsv``). Standard library only: the trainer, the search and
the fitting path all report through it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_pearson"]  # history.tsv's contract
PROGRESS_COLUMNS = ["stage", "member", *HISTORY_COLUMNS, "seconds"]

EpochCallback = Callable[[dict[str, float]], None]  # on_epoch(row), row as history.tsv has it
Stages = Callable[[str], EpochCallback]  # the callback of one named fit ("fit", "trial 2", ...)


def _cell(value: Any) -> str:
    """A TSV cell as pandas writes history.tsv: missing and NaN empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


class ProgressFile:
    """Appends one row per epoch to ``path`` (created afresh), flushed as it is written, so
    another process reads each epoch when it ends."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("\t".join(PROGRESS_COLUMNS) + "\n")

    def stage(self, name: str) -> EpochCallback:
        """The callback of one fit (a search trial, the fit, the refit): its rows carry
        ``name`` and the seconds since the previous row of that fit."""
        last = time.monotonic()

        def on_epoch(row: Mapping[str, Any]) -> None:
            nonlocal last
            now = time.monotonic()
            cells = [name, _cell(row.get("member", 0)),
                     *(_cell(row.get(c)) for c in HISTORY_COLUMNS), f"{now - last:.2f}"]
            last = now
            with self.path.open("a") as handle:
                handle.write("\t".join(cells) + "\n")
                handle.flush()

        return on_epoch


def stage_callback(stages: Stages | None, name: str) -> EpochCallback | None:
    """``stages(name)``, or None when nobody follows the training."""
    return None if stages is None else stages(name)


def fit_following(estimator: Any, train: list, val: list,
                  on_epoch: EpochCallback | None = None) -> list[dict[str, float]]:
    """``estimator.fit(train, val)``, reporting each epoch to ``on_epoch`` as it ends where the
    estimator declares ``reports_epochs`` (STFlow); otherwise one log line when the fit is
    done, and its rows reported then, so the progress file always ends with the model's
    history."""
    if estimator.reports_epochs:
        return estimator.fit(train, val, on_epoch=on_epoch)
    start = time.monotonic()
    rows = estimator.fit(train, val)
    scores = [r.get("val_pearson") for r in rows if isinstance(r.get("val_pearson"), float)]
    finite = [s for s in scores if math.isfinite(s)]
    log.info("fitted %s in %.1f s (%s)", type(estimator).__name__, time.monotonic() - start,
             f"val_pearson {max(finite):.4f}" if finite else "nothing validated")
    if on_epoch is not None:
        for row in rows:
            on_epoch(row)
    return rows


def member_callback(on_epoch: EpochCallback | None, member: int) -> EpochCallback | None:
    """``on_epoch`` for one member of an ensemble: rows of members after the first carry
    ``member``, as the model's history does."""
    if on_epoch is None or member == 0:
        return on_epoch
    return lambda row: on_epoch({**row, "member": member})

"""The samples of one fold: its train, validation and test lists in splits.json."""

from __future__ import annotations

from pathlib import Path

from stflow.data.splits import fold_of, read_splits
from stflow.errors import input_error


def calibration_scope_of(splits_path: str | Path, fold: str) -> str:
    """Whose spots calibrate the fold's intervals, as the splits stage recorded it: 'patient'
    (validation patients the fold never trains on) or 'within'."""
    entry = fold_of(read_splits(splits_path), fold, splits_path)
    scope = entry.get("calibration", "within")
    if scope not in ("patient", "within"):
        raise input_error(splits_path, f"fold '{fold}' has calibration '{scope}'",
                          "re-run the splits stage")
    return scope


def calibrating_of(splits_path: str | Path, fold: str) -> list[list[str]]:
    """The fold's further calibrating patients (each a list of its training samples), as
    the splits stage recorded them; none in a splits.json written before they existed."""
    entry = fold_of(read_splits(splits_path), fold, splits_path)
    groups = entry.get("calibrating", [])
    train = set(entry.get("train") or [])
    if (not isinstance(groups, list)
            or not all(isinstance(g, list) and g and set(map(str, g)) <= train for g in groups)):
        raise input_error(splits_path, f"fold '{fold}' has calibrating patients {groups!r} "
                          "that are not lists of its training samples", "re-run the splits stage")
    return [[str(s) for s in group] for group in groups]


def read_fold(splits_path: str | Path, fold: str) -> dict[str, list[str]]:
    """The ``train``/``val``/``test`` sample lists of ``fold`` in a splits.json."""
    entry = fold_of(read_splits(splits_path), fold, splits_path)
    parts = {key: [str(s) for s in entry.get(key) or []] for key in ("train", "val", "test")}
    if not parts["train"] or not parts["test"]:
        raise input_error(splits_path, f"fold '{fold}' has an empty train or test list",
                          "re-create the splits with at least two patients")
    return parts

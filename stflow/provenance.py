"""One ``uns["stflow"]`` layout for every h5ad the project writes.

A person who finds an h5ad on disk reads what it is (``kind``), what ``X`` holds, which
stflow made it and, for predictions, which model, encoder weights, seed and fold, without
knowing which stage wrote it.
"""

from __future__ import annotations

from typing import Any

from stflow import __version__

KINDS = ("st", "prediction", "slide_prediction", "cohort")
X_COUNTS = "raw counts"
X_PREDICTED = "log1p of raw counts (predicted mean)"
# identity of a prediction: always present (None when unknown), so readers need no fallbacks
PREDICTION_KEYS = ("model", "encoder", "weights_sha256", "seed", "fold")


def stflow_uns(kind: str, sample: str, x: str, **fields: Any) -> dict[str, Any]:
    """The ``uns["stflow"]`` dict: kind, version, sample, what X holds, then ``fields``."""
    if kind not in KINDS:
        raise ValueError(f"unknown h5ad kind {kind!r}; one of {KINDS}")
    uns: dict[str, Any] = {"kind": kind, "version": __version__, "sample": str(sample), "X": x}
    if kind != "st":
        uns.update(dict.fromkeys(PREDICTION_KEYS))
    uns.update({key: value for key, value in fields.items()})
    return uns


def log1p_uns() -> dict[str, Any]:
    """``uns["log1p"]`` as scanpy sets it: X is natural-log log1p, so scanpy will not log it
    again."""
    return {"base": None}


def dense(matrix: Any) -> Any:
    """An h5ad matrix (``X`` or a layer, sparse or dense) as a float64 numpy array: how every
    reader of prediction files takes its values."""
    import numpy as np
    import scipy.sparse as sp

    return np.asarray(matrix.toarray() if sp.issparse(matrix) else matrix, dtype=np.float64)

"""scikit-learn trees as node arrays, checked and evaluated by numpy: a saved random forest
loads without pickle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from stflow.errors import input_error

FOREST_KEYS = ("tree_offsets", "children_left", "children_right", "feature", "threshold",
               "value")


def forest_arrays(forest: Any) -> dict[str, np.ndarray]:
    """Concatenate the fitted trees' node arrays; child indices stay tree-local."""
    trees = [est.tree_ for est in forest.estimators_]
    counts = np.array([t.node_count for t in trees], dtype=np.int64)
    return {
        "tree_offsets": np.concatenate([[0], np.cumsum(counts)]),
        "children_left": np.concatenate([t.children_left for t in trees]).astype(np.int64),
        "children_right": np.concatenate([t.children_right for t in trees]).astype(np.int64),
        "feature": np.concatenate([t.feature for t in trees]).astype(np.int64),
        "threshold": np.concatenate([t.threshold for t in trees]).astype(np.float64),
        "value": np.concatenate([t.value[:, :, 0] for t in trees]).astype(np.float64),
    }


def check_forest(trees: dict[str, np.ndarray], n_features: int, where: Path) -> None:
    """Refuse node arrays that would index out of bounds (a corrupted or crafted file)."""
    offsets = trees["tree_offsets"]
    n_nodes = len(trees["children_left"])
    ok = (offsets.ndim == 1 and len(offsets) >= 2 and offsets[0] == 0
          and offsets[-1] == n_nodes and bool(np.all(np.diff(offsets) > 0))
          and all(len(trees[k]) == n_nodes for k in FOREST_KEYS[1:]))
    if ok:
        sizes = np.repeat(np.diff(offsets), np.diff(offsets))
        left, right, feature = trees["children_left"], trees["children_right"], trees["feature"]
        leaf = left == -1
        local = np.arange(n_nodes) - np.repeat(offsets[:-1], np.diff(offsets))
        ok = (bool(np.all((right == -1) == leaf))
              and bool(np.all((left[~leaf] > local[~leaf]) & (left[~leaf] < sizes[~leaf])))
              and bool(np.all((right[~leaf] > local[~leaf]) & (right[~leaf] < sizes[~leaf])))
              and bool(np.all((feature[~leaf] >= 0) & (feature[~leaf] < n_features))))
    if not ok:
        raise input_error(where, "forest node arrays are inconsistent or out of bounds",
                          "re-run the train stage")


def predict_forest(trees: dict[str, np.ndarray], z: np.ndarray) -> np.ndarray:
    """Mean of the trees' leaf values, descending like scikit-learn (float32 ``<=``)."""
    z = np.asarray(z, dtype=np.float32)
    offsets = trees["tree_offsets"]
    left, right = trees["children_left"], trees["children_right"]
    feature, threshold, value = trees["feature"], trees["threshold"], trees["value"]
    rows = np.arange(len(z))
    total = np.zeros((len(z), value.shape[1]))
    for t in tqdm(range(len(offsets) - 1), desc="forest", leave=False, disable=len(z) < 10000):
        base = offsets[t]
        node = np.zeros(len(z), dtype=np.int64)
        while True:
            idx = base + node
            inner = left[idx] != -1
            if not inner.any():
                break
            go_left = z[rows, np.where(inner, feature[idx], 0)] <= threshold[idx]
            node = np.where(inner, np.where(go_left, left[idx], right[idx]), node)
        total += value[base + node]
    return total / (len(offsets) - 1)

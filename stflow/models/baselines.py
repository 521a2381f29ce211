"""Spot-based regression heads on the frozen features: the baselines STFlow is compared with.

All of them follow HEST-bench's preprocessing (``StandardScaler`` → ``PCA(256)`` on the
training spots, mahmoodlab/HEST ``src/hest/bench/benchmark.py``, ``predict_single_split``)
and then regress the log1p targets of every spot independently — except
:class:`SpatialRidge`, which also sees the mean features of each spot's neighbours.
Models that select nothing on validation (``ridge_hest``, the random forest) fit on train +
val, as HEST-bench fits on all non-test samples; the tuned ones (``ridge``, ``spatial_ridge``,
``mlp``) select on val, or without val slides on the hold-out STFlow uses
(:mod:`stflow.data.holdout`).

Everything is saved as plain arrays (``.npz`` read with ``allow_pickle=False``) plus a JSON
config; the random forest's trees are stored as node arrays and evaluated by numpy, so no
pickle is ever loaded. The forest file's sha256 is recorded and checked before use.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from stflow.atomic import atomic_output, read_json, sha256_file, write_json
from stflow.data.dataset import Slide
from stflow.data.holdout import holdout_masks
from stflow.errors import StflowError, input_error
from stflow.evaluation.metrics import mean_pearson

log = logging.getLogger(__name__)

VAL_FRACTION = 0.2
ALPHA_GRID = np.logspace(-3, 6, 19)


# ---------------------------------------------------------------- data handling


def _targets(slide: Slide) -> np.ndarray:
    if slide.targets is None:
        raise input_error(f"sample {slide.sample}", "has no targets (log1p expression)",
                          "train only on samples with measured expression")
    return np.asarray(slide.targets, dtype=np.float64)


def train_val_arrays(train_x: list[np.ndarray], train_y: list[np.ndarray],
                     train_coords: list[np.ndarray], train_names: list[str],
                     val_x: list[np.ndarray], val_y: list[np.ndarray], seed: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stack training and validation spots; without val slides, hold out what STFlow does.

    The hold-out is :func:`stflow.data.holdout.holdout_masks` (a contiguous ``VAL_FRACTION`` of
    every training slide, seeded alike), so on folds with a single training sample the
    baselines and STFlow select on the same validation spots.
    """
    if val_x:
        return (np.concatenate(train_x), np.concatenate(train_y),
                np.concatenate(val_x), np.concatenate(val_y))
    masks = holdout_masks(train_coords, train_names, VAL_FRACTION, seed)
    x_tr = np.concatenate([x[~m] for x, m in zip(train_x, masks, strict=True)])
    y_tr = np.concatenate([y[~m] for y, m in zip(train_y, masks, strict=True)])
    x_va = np.concatenate([x[m] for x, m in zip(train_x, masks, strict=True)])
    y_va = np.concatenate([y[m] for y, m in zip(train_y, masks, strict=True)])
    return x_tr, y_tr, x_va, y_va


def _check_slides(slides: list[Slide], what: str) -> None:
    if not slides:
        raise input_error(what, "no slides given", f"pass at least one {what} slide")


# ---------------------------------------------------------------- preprocessing


class Projection:
    """StandardScaler followed by PCA, kept as arrays so it saves without pickle."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, components: np.ndarray,
                 pca_mean: np.ndarray) -> None:
        self.mean, self.scale = mean, scale
        self.components, self.pca_mean = components, pca_mean

    @classmethod
    def fit(cls, x: np.ndarray, n_components: int, seed: int) -> Projection:
        """Fit HEST's scaler + PCA; components capped at min(n_samples, n_features)."""
        from sklearn.decomposition import PCA
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(x)
        k = max(1, min(n_components, x.shape[0], x.shape[1]))
        pca = PCA(n_components=k, random_state=seed).fit(scaler.transform(x))
        return cls(scaler.mean_, scaler.scale_, pca.components_, pca.mean_)

    def transform(self, x: np.ndarray) -> np.ndarray:
        if x.shape[1] != len(self.mean):
            raise input_error("features", f"{x.shape[1]} feature columns, the model was "
                              f"trained on {len(self.mean)}",
                              "predict with features of the encoder the model was trained on")
        return ((x - self.mean) / self.scale - self.pca_mean) @ self.components.T

    def arrays(self) -> dict[str, np.ndarray]:
        return {"scaler_mean": self.mean, "scaler_scale": self.scale,
                "pca_components": self.components, "pca_mean": self.pca_mean}

    @classmethod
    def from_arrays(cls, data: Any) -> Projection:
        return cls(data["scaler_mean"], data["scaler_scale"], data["pca_components"],
                   data["pca_mean"])


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        raise input_error(path, "model file does not exist", "re-run the train stage")
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def _read_json(path: Path) -> dict:
    return read_json(path, "model config", "re-run the train stage")


def _mse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((y - p) ** 2))


# ---------------------------------------------------------------- ridge


def ridge_path(z: np.ndarray, y: np.ndarray, alphas: np.ndarray
               ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Exact ridge solutions (with intercept) for many alphas from one SVD."""
    z_mean, y_mean = z.mean(axis=0), y.mean(axis=0)
    u, s, vt = np.linalg.svd(z - z_mean, full_matrices=False)
    uty = u.T @ (y - y_mean)
    out = []
    for alpha in alphas:
        coef = vt.T @ ((s / (s**2 + alpha))[:, None] * uty)
        out.append((coef, y_mean - z_mean @ coef))
    return out


class PCARidge:
    """HEST-bench's linear probe: StandardScaler → PCA(256) → Ridge.

    ``alpha="hest"`` reproduces HEST exactly (mahmoodlab/HEST ``src/hest/bench/trainer.py``,
    ``train_test_reg``): ``Ridge(solver='lsqr', alpha=100 / (n_components * n_genes),
    fit_intercept=False, max_iter=1000)``. That alpha is tiny, so with few training spots
    the probe nearly interpolates; ``alpha="validation"`` picks alpha from a log grid by
    mean Pearson on the validation spots (then refits on the training spots), a float fixes
    it; both use an intercept. A fixed alpha (``"hest"`` or a float) selects nothing, so it
    fits on train + val, as HEST-bench fits on every non-test sample.
    """

    name = "pca_ridge"

    def __init__(self, seed: int = 0, alpha: str | float = "hest", n_components: int = 256
                 ) -> None:
        if not (alpha in ("hest", "validation") or isinstance(alpha, int | float)):
            raise StflowError(f"PCARidge: alpha={alpha!r}. Fix: use 'hest', 'validation' "
                              "or a positive number")
        if isinstance(alpha, int | float) and alpha <= 0:
            raise StflowError(f"PCARidge: alpha={alpha}. Fix: use a positive number")
        self.seed, self.alpha, self.n_components = seed, alpha, int(n_components)
        self.projection: Projection | None = None
        self.coef: np.ndarray | None = None
        self.intercept: np.ndarray | None = None
        self.chosen_alpha: float | None = None

    def _features(self, slide: Slide) -> np.ndarray:
        return np.asarray(slide.features, dtype=np.float64)

    def fit(self, train: list[Slide], val: list[Slide]) -> list[dict[str, float]]:
        """``alpha="validation"``: fit on train, choose alpha on val (or the hold-out).

        A fixed alpha (``"hest"`` or a number) selects nothing, so like HEST-bench it fits on
        every non-test spot, train and val together, and reports no validation score.
        """
        _check_slides(train, "training")
        needs_val = self.alpha == "validation"
        x_va = y_va = None
        if needs_val:
            x_tr, y_tr, x_va, y_va = train_val_arrays(
                [self._features(s) for s in train], [_targets(s) for s in train],
                [s.coords_um for s in train], [s.sample for s in train],
                [self._features(s) for s in val], [_targets(s) for s in val], self.seed)
        else:
            x_tr = np.concatenate([self._features(s) for s in [*train, *val]])
            y_tr = np.concatenate([_targets(s) for s in [*train, *val]])
        self.projection = Projection.fit(x_tr, self.n_components, self.seed)
        z_tr = self.projection.transform(x_tr)
        if self.alpha == "hest":
            from sklearn.linear_model import Ridge

            self.chosen_alpha = 100.0 / (z_tr.shape[1] * y_tr.shape[1])
            reg = Ridge(solver="lsqr", alpha=self.chosen_alpha, fit_intercept=False,
                        max_iter=1000, random_state=self.seed).fit(z_tr, y_tr)
            self.coef, self.intercept = reg.coef_.T.copy(), np.zeros(y_tr.shape[1])
        elif needs_val:
            z_va = self.projection.transform(x_va)
            scores = [mean_pearson(y_va, z_va @ c + b)
                      for c, b in ridge_path(z_tr, y_tr, ALPHA_GRID)]
            scores = np.nan_to_num(np.asarray(scores), nan=-np.inf)
            self.chosen_alpha = float(ALPHA_GRID[int(np.argmax(scores))])
            (self.coef, self.intercept), = ridge_path(z_tr, y_tr, [self.chosen_alpha])
        else:
            self.chosen_alpha = float(self.alpha)
            (self.coef, self.intercept), = ridge_path(z_tr, y_tr, [self.chosen_alpha])
        row: dict[str, float] = {"epoch": 0, "alpha": self.chosen_alpha,
                                 "train_loss": _mse(y_tr, self._predict_array(x_tr)),
                                 "val_loss": float("nan"), "val_pearson": float("nan")}
        if x_va is not None:
            pred_va = self._predict_array(x_va)
            row.update(val_loss=_mse(y_va, pred_va), val_pearson=mean_pearson(y_va, pred_va))
        if needs_val:
            log.info("%s: alpha %.3g chosen, validation Pearson %.4f", self.name,
                     self.chosen_alpha, row["val_pearson"])
        return [row]

    def refit_params(self, history: list[dict[str, float]]) -> dict[str, Any] | None:
        """The alpha chosen on validation, fixed, so a refit uses train + validation."""
        return {"alpha": self.chosen_alpha} if self.alpha == "validation" else None

    def _predict_array(self, x: np.ndarray) -> np.ndarray:
        if self.coef is None or self.projection is None:
            raise StflowError(f"{self.name}: predict called before fit. Fix: fit or load first")
        return self.projection.transform(x) @ self.coef + self.intercept

    def predict(self, slides: list[Slide]) -> list[np.ndarray]:
        """One (N, G) float32 log1p prediction per slide."""
        return [self._predict_array(self._features(s)).astype(np.float32) for s in slides]

    def _config(self) -> dict:
        return {"class": type(self).__name__, "seed": self.seed, "alpha": self.alpha,
                "n_components": self.n_components, "chosen_alpha": self.chosen_alpha}

    def save(self, directory: Path) -> None:
        """``linear.npz`` (scaler, PCA, coefficients) and ``config.json``."""
        if self.coef is None or self.projection is None:
            raise StflowError(f"{self.name}: save called before fit. Fix: fit first")
        directory = Path(directory)
        _write_npz(directory / "linear.npz", {**self.projection.arrays(), "coef": self.coef,
                                               "intercept": self.intercept})
        write_json(self._config(), directory / "config.json")

    @classmethod
    def load(cls, directory: Path) -> PCARidge:
        directory = Path(directory)
        config = _read_json(directory / "config.json")
        data = _read_npz(directory / "linear.npz")
        params = {k: v for k, v in config.items()
                  if k not in ("class", "seed", "chosen_alpha")}
        model = cls(seed=config["seed"], **params)
        model.projection = Projection.from_arrays(data)
        model.coef, model.intercept = data["coef"], data["intercept"]
        model.chosen_alpha = config["chosen_alpha"]
        return model


# ---------------------------------------------------------------- spatial ridge


def neighbour_indices(slide: Slide, k: int) -> np.ndarray:
    """(N, k') indices of each spot's nearest other spots: the graph stage's, else a kNN."""
    if slide.neighbors is not None and slide.neighbors.shape[1] > 0:
        return np.asarray(slide.neighbors[:, :k], dtype=np.int64)
    k_eff = min(k, slide.n_spots - 1)
    if k_eff < 1:
        return np.arange(slide.n_spots)[:, None]
    from stflow.data.graph import knn_graph

    neighbors, _ = knn_graph(np.asarray(slide.coords_um, dtype=np.float64), k_eff,
                             where=f"sample {slide.sample}")
    return np.asarray(neighbors, dtype=np.int64)


class SpatialRidge(PCARidge):
    """Ridge on ``[own features ‖ mean features of the k nearest spots]``.

    The simplest model that uses spatial context: it shows how much of STFlow's gain a
    linear neighbourhood average already captures.
    """

    name = "spatial_ridge"

    def __init__(self, seed: int = 0, k: int = 8, alpha: str | float = "validation",
                 n_components: int = 256) -> None:
        super().__init__(seed=seed, alpha=alpha, n_components=n_components)
        if int(k) < 1:
            raise StflowError(f"SpatialRidge: k={k}. Fix: use k >= 1 neighbours")
        self.k = int(k)

    def _features(self, slide: Slide) -> np.ndarray:
        x = np.asarray(slide.features, dtype=np.float64)
        neighbors = neighbour_indices(slide, self.k)
        if neighbors.size and (neighbors.min() < 0 or neighbors.max() >= len(x)):
            raise input_error(f"sample {slide.sample}", "neighbour indices out of range",
                              "re-run the graph stage for this sample")
        return np.hstack([x, x[neighbors].mean(axis=1)])

    def _config(self) -> dict:
        return {**super()._config(), "k": self.k}


# ---------------------------------------------------------------- random forest


class RandomForest:
    """HEST's random-forest head: StandardScaler → PCA(256) → 70 trees (paper, App. A).

    HEST fits one cuML forest per gene (``RandomForestRegressor(n_estimators=70)``, cuML's
    defaults ``max_depth=16``, ``max_features='sqrt'``); here one multi-output scikit-learn
    forest with the same tree count, depth and feature sampling predicts all genes, which is
    ~50× cheaper on CPU. Trees are stored as node arrays and evaluated by numpy on load.
    Like HEST-bench it selects nothing, so it fits on train + val.
    """

    def __init__(self, seed: int = 0, n_estimators: int = 70, max_depth: int = 16,
                 max_features: str | float = "sqrt", min_samples_leaf: int = 1,
                 n_components: int = 256, n_jobs: int = 2) -> None:
        self.seed, self.n_estimators, self.max_depth = seed, int(n_estimators), int(max_depth)
        self.max_features, self.min_samples_leaf = max_features, int(min_samples_leaf)
        self.n_components, self.n_jobs = int(n_components), int(n_jobs)
        self.projection: Projection | None = None
        self.trees: dict[str, np.ndarray] | None = None

    def fit(self, train: list[Slide], val: list[Slide]) -> list[dict[str, float]]:
        """Fit the forest on every non-test spot, train and val together (as HEST-bench).

        Nothing is selected on validation, so holding val out would only waste spots; the
        log row therefore has no validation score.
        """
        from sklearn.ensemble import RandomForestRegressor

        _check_slides(train, "training")
        slides = [*train, *val]
        x_tr = np.concatenate([np.asarray(s.features, dtype=np.float64) for s in slides])
        y_tr = np.concatenate([_targets(s) for s in slides])
        self.projection = Projection.fit(x_tr, self.n_components, self.seed)
        forest = RandomForestRegressor(
            n_estimators=self.n_estimators, max_depth=self.max_depth,
            max_features=self.max_features, min_samples_leaf=self.min_samples_leaf,
            n_jobs=self.n_jobs, random_state=self.seed,
        ).fit(self.projection.transform(x_tr), y_tr)
        self.trees = forest_arrays(forest)
        return [{"epoch": 0, "train_loss": _mse(y_tr, self._predict_array(x_tr)),
                 "val_loss": float("nan"), "val_pearson": float("nan")}]

    def _predict_array(self, x: np.ndarray) -> np.ndarray:
        if self.trees is None or self.projection is None:
            raise StflowError("random forest: predict called before fit. Fix: fit or load first")
        return predict_forest(self.trees, self.projection.transform(x))

    def predict(self, slides: list[Slide]) -> list[np.ndarray]:
        """One (N, G) float32 log1p prediction per slide."""
        return [self._predict_array(np.asarray(s.features, dtype=np.float64)).astype(np.float32)
                for s in slides]

    def save(self, directory: Path) -> None:
        """``forest.npz`` (projection + node arrays), its sha256 in ``config.json``."""
        if self.trees is None or self.projection is None:
            raise StflowError("random forest: save called before fit. Fix: fit first")
        directory = Path(directory)
        _write_npz(directory / "forest.npz", {**self.projection.arrays(), **self.trees})
        config = {"class": "RandomForest", "seed": self.seed,
                  "n_estimators": self.n_estimators, "max_depth": self.max_depth,
                  "max_features": self.max_features, "min_samples_leaf": self.min_samples_leaf,
                  "n_components": self.n_components, "n_jobs": self.n_jobs,
                  "forest_sha256": sha256_file(directory / "forest.npz")}
        write_json(config, directory / "config.json")

    @classmethod
    def load(cls, directory: Path) -> RandomForest:
        """Load after checking the forest file against the recorded sha256 and its bounds."""
        directory = Path(directory)
        config = _read_json(directory / "config.json")
        path = directory / "forest.npz"
        if not path.exists():
            raise input_error(path, "model file does not exist", "re-run the train stage")
        if sha256_file(path) != config.get("forest_sha256"):
            raise input_error(path, "sha256 differs from the one recorded in config.json "
                              "(the file was modified or truncated)", "re-run the train stage")
        data = _read_npz(path)
        params = {k: v for k, v in config.items() if k not in ("class", "seed", "forest_sha256")}
        model = cls(seed=config["seed"], **params)
        model.projection = Projection.from_arrays(data)
        model.trees = {k: data[k] for k in FOREST_KEYS}
        check_forest(model.trees, data["pca_components"].shape[0], path)
        return model


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


# ---------------------------------------------------------------- MLP


class MLPRegressor:
    """A two-layer MLP on the standardised features, early-stopped on validation Pearson.

    A non-linear spot-based head between ridge and STFlow: same inputs, no spatial context.
    """

    def __init__(self, seed: int = 0, hidden: int = 256, dropout: float = 0.1,
                 lr: float = 1e-3, weight_decay: float = 1e-4, batch_size: int = 256,
                 max_epochs: int = 100, patience: int = 10) -> None:
        self.seed, self.hidden, self.dropout = seed, int(hidden), float(dropout)
        self.lr, self.weight_decay, self.batch_size = float(lr), float(weight_decay), int(batch_size)
        self.max_epochs, self.patience = int(max_epochs), int(patience)
        self.mean: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.weights: dict[str, np.ndarray] | None = None

    def _network(self, n_in: int, n_out: int) -> Any:
        import torch

        return torch.nn.Sequential(torch.nn.Linear(n_in, self.hidden), torch.nn.GELU(),
                                   torch.nn.Dropout(self.dropout),
                                   torch.nn.Linear(self.hidden, n_out))

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        if x.shape[1] != len(self.mean):
            raise input_error("features", f"{x.shape[1]} feature columns, the model was "
                              f"trained on {len(self.mean)}",
                              "predict with features of the encoder the model was trained on")
        return ((x - self.mean) / self.scale).astype(np.float32)

    def fit(self, train: list[Slide], val: list[Slide]) -> list[dict[str, float]]:
        """Adam on MSE; keep the epoch with the best validation Pearson."""
        import torch

        _check_slides(train, "training")
        x_tr, y_tr, x_va, y_va = train_val_arrays(
            [np.asarray(s.features, dtype=np.float64) for s in train],
            [_targets(s) for s in train], [s.coords_um for s in train],
            [s.sample for s in train], [np.asarray(s.features, dtype=np.float64) for s in val],
            [_targets(s) for s in val], self.seed)
        self.mean = x_tr.mean(axis=0)
        self.scale = np.where(x_tr.std(axis=0) > 0, x_tr.std(axis=0), 1.0)
        torch.manual_seed(self.seed)
        net = self._network(x_tr.shape[1], y_tr.shape[1])
        opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        xt = torch.from_numpy(self._standardise(x_tr))
        yt = torch.from_numpy(y_tr.astype(np.float32))
        xv = torch.from_numpy(self._standardise(x_va))
        generator = torch.Generator().manual_seed(self.seed)
        history: list[dict[str, float]] = []
        best, best_state, stale = -np.inf, None, 0
        for epoch in tqdm(range(self.max_epochs), desc="mlp", leave=False):
            net.train()
            losses = []
            for batch in torch.randperm(len(xt), generator=generator).split(self.batch_size):
                loss = torch.nn.functional.mse_loss(net(xt[batch]), yt[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item() * len(batch))
            net.eval()
            with torch.no_grad():
                pred = net(xv).numpy().astype(np.float64)
            score = mean_pearson(y_va, pred)
            history.append({"epoch": epoch, "train_loss": sum(losses) / len(xt),
                            "val_loss": _mse(y_va, pred), "val_pearson": score})
            if np.isfinite(score) and score > best:
                best, stale = score, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                stale += 1
                if stale >= self.patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        self.weights = {k: v.numpy().copy() for k, v in net.state_dict().items()}
        return history

    def predict(self, slides: list[Slide]) -> list[np.ndarray]:
        """One (N, G) float32 log1p prediction per slide."""
        import torch

        if self.weights is None:
            raise StflowError("mlp: predict called before fit. Fix: fit or load first")
        net = self._network(len(self.mean), self.weights["3.bias"].shape[0])
        net.load_state_dict({k: torch.from_numpy(v) for k, v in self.weights.items()})
        net.eval()
        out = []
        with torch.no_grad():
            for slide in slides:
                x = self._standardise(np.asarray(slide.features, dtype=np.float64))
                out.append(net(torch.from_numpy(x)).numpy().astype(np.float32))
        return out

    def save(self, directory: Path) -> None:
        """``mlp.npz`` (scaler and weights as arrays) and ``config.json``."""
        if self.weights is None:
            raise StflowError("mlp: save called before fit. Fix: fit first")
        directory = Path(directory)
        _write_npz(directory / "mlp.npz", {"scaler_mean": self.mean, "scaler_scale": self.scale,
                                            **{f"w.{k}": v for k, v in self.weights.items()}})
        write_json({
            "class": "MLPRegressor", "seed": self.seed, "hidden": self.hidden,
            "dropout": self.dropout, "lr": self.lr, "weight_decay": self.weight_decay,
            "batch_size": self.batch_size, "max_epochs": self.max_epochs,
            "patience": self.patience}, directory / "config.json")

    @classmethod
    def load(cls, directory: Path) -> MLPRegressor:
        directory = Path(directory)
        config = _read_json(directory / "config.json")
        data = _read_npz(directory / "mlp.npz")
        model = cls(**{k: v for k, v in config.items() if k != "class"})
        model.mean, model.scale = data["scaler_mean"], data["scaler_scale"]
        model.weights = {k[2:]: v for k, v in data.items() if k.startswith("w.")}
        return model

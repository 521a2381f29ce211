"""The random forest baseline (70 trees, as the paper), saved as node arrays."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from stflow.atomic import sha256_file, write_json
from stflow.data.dataset import Slide
from stflow.errors import StflowError, input_error
from stflow.models.baselines.arrays import (
    check_slides,
    mse,
    read_config,
    read_npz,
    spot_targets,
    write_npz,
)
from stflow.models.baselines.baseline_settings import RandomForestSettings
from stflow.models.baselines.projection import Projection
from stflow.models.baselines.tree_arrays import (
    FOREST_KEYS,
    check_forest,
    forest_arrays,
    predict_forest,
)
from stflow.models.capabilities import Capabilities


class RandomForest(Capabilities):
    """HEST's random-forest head: StandardScaler → PCA(256) → 70 trees (paper, App. A).

    HEST fits one cuML forest per gene (``RandomForestRegressor(n_estimators=70)``, cuML's
    defaults ``max_depth=16``, ``max_features='sqrt'``); here one multi-output scikit-learn
    forest with the same tree count, depth and feature sampling predicts all genes, which is
    ~50× cheaper on CPU. Trees are stored as node arrays and evaluated by numpy on load.
    Like HEST-bench it selects nothing, so it fits on train + val.
    """

    reports_epochs = False
    fits_on_validation = True  # calibration then needs a twin fitted without them
    refits = False  # nothing selected, nothing to refit
    draws = False

    settings_class: ClassVar[type[RandomForestSettings]] = RandomForestSettings

    def __init__(self, seed: int = 0, **params: Any) -> None:
        """``params``: fields of :class:`RandomForestSettings`, which checks them."""
        self.settings = self.settings_class(seed=seed, **params)
        self.projection: Projection | None = None
        self.trees: dict[str, np.ndarray] | None = None

    def fit(self, train: list[Slide], val: list[Slide]) -> list[dict[str, float]]:
        """Fit the forest on every non-test spot, train and val together (as HEST-bench).

        Nothing is selected on validation, so holding val out would only waste spots; the
        log row therefore has no validation score.
        """
        from sklearn.ensemble import RandomForestRegressor

        check_slides(train, "training")
        slides = [*train, *val]
        x_tr = np.concatenate([np.asarray(s.features, dtype=np.float64) for s in slides])
        y_tr = np.concatenate([spot_targets(s) for s in slides])
        self.projection = Projection.fit(x_tr, self.settings.n_components, self.settings.seed)
        forest = RandomForestRegressor(
            n_estimators=self.settings.n_estimators, max_depth=self.settings.max_depth,
            max_features=self.settings.max_features,
            min_samples_leaf=self.settings.min_samples_leaf,
            n_jobs=self.settings.n_jobs, random_state=self.settings.seed,
        ).fit(self.projection.transform(x_tr), y_tr)
        self.trees = forest_arrays(forest)
        return [{"epoch": 0, "train_loss": mse(y_tr, self._predict_array(x_tr)),
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
        write_npz(directory / "forest.npz", {**self.projection.arrays(), **self.trees})
        config = {"class": "RandomForest", **self.settings.as_dict(),
                  "forest_sha256": sha256_file(directory / "forest.npz")}
        write_json(config, directory / "config.json")

    @classmethod
    def load(cls, directory: Path) -> RandomForest:
        """Load after checking the forest file against the recorded sha256 and its bounds."""
        directory = Path(directory)
        config = read_config(directory / "config.json")
        path = directory / "forest.npz"
        if not path.exists():
            raise input_error(path, "model file does not exist", "re-run the train stage")
        if sha256_file(path) != config.get("forest_sha256"):
            raise input_error(path, "sha256 differs from the one recorded in config.json "
                              "(the file was modified or truncated)", "re-run the train stage")
        data = read_npz(path)
        params = {k: v for k, v in config.items() if k not in ("class", "seed", "forest_sha256")}
        model = cls(seed=config["seed"], **params)
        model.projection = Projection.from_arrays(data)
        model.trees = {k: data[k] for k in FOREST_KEYS}
        check_forest(model.trees, data["pca_components"].shape[0], path)
        return model

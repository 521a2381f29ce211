"""PCA + Ridge on the spot features: HEST-bench's fixed alpha, or alpha chosen on validation."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from stflow.atomic import write_json
from stflow.data.dataset import Slide
from stflow.errors import StflowError
from stflow.metrics import mean_pearson
from stflow.models.baselines.arrays import (
    check_slides,
    mse,
    read_config,
    read_npz,
    spot_targets,
    train_val_arrays,
    write_npz,
)
from stflow.models.baselines.baseline_settings import PCARidgeSettings, SpatialRidgeSettings
from stflow.models.baselines.projection import Projection
from stflow.models.capabilities import Capabilities

log = logging.getLogger(__name__)

ALPHA_GRID = np.logspace(-3, 6, 19)


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


class PCARidge(Capabilities):
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
    reports_epochs = False  # one closed-form fit
    refits = True  # refit_params: the alpha chosen on validation (None for a fixed alpha)
    draws = False

    @property
    def fits_on_validation(self) -> bool:
        """A fixed alpha selects nothing and fits on the validation spots too."""
        return self.settings.alpha != "validation"

    settings_class: ClassVar[type[PCARidgeSettings | SpatialRidgeSettings]] = PCARidgeSettings

    def __init__(self, seed: int = 0, **params: Any) -> None:
        """``params``: fields of :attr:`settings_class`, which checks them."""
        self.settings = self.settings_class(seed=seed, **params)
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
        check_slides(train, "training")
        needs_val = self.settings.alpha == "validation"
        x_va = y_va = None
        if needs_val:
            x_tr, y_tr, x_va, y_va = train_val_arrays(
                [self._features(s) for s in train], [spot_targets(s) for s in train],
                [s.coords_um for s in train], [s.sample for s in train],
                [self._features(s) for s in val], [spot_targets(s) for s in val],
                self.settings.seed)
        else:
            x_tr = np.concatenate([self._features(s) for s in [*train, *val]])
            y_tr = np.concatenate([spot_targets(s) for s in [*train, *val]])
        self.projection = Projection.fit(x_tr, self.settings.n_components, self.settings.seed)
        z_tr = self.projection.transform(x_tr)
        if self.settings.alpha == "hest":
            from sklearn.linear_model import Ridge

            self.chosen_alpha = 100.0 / (z_tr.shape[1] * y_tr.shape[1])
            reg = Ridge(solver="lsqr", alpha=self.chosen_alpha, fit_intercept=False,
                        max_iter=1000, random_state=self.settings.seed).fit(z_tr, y_tr)
            self.coef, self.intercept = reg.coef_.T.copy(), np.zeros(y_tr.shape[1])
        elif needs_val:
            z_va = self.projection.transform(x_va)
            scores = [mean_pearson(y_va, z_va @ c + b)
                      for c, b in ridge_path(z_tr, y_tr, ALPHA_GRID)]
            scores = np.nan_to_num(np.asarray(scores), nan=-np.inf)
            self.chosen_alpha = float(ALPHA_GRID[int(np.argmax(scores))])
            (self.coef, self.intercept), = ridge_path(z_tr, y_tr, [self.chosen_alpha])
        else:
            self.chosen_alpha = float(self.settings.alpha)
            (self.coef, self.intercept), = ridge_path(z_tr, y_tr, [self.chosen_alpha])
        row: dict[str, float] = {"epoch": 0, "alpha": self.chosen_alpha,
                                 "train_loss": mse(y_tr, self._predict_array(x_tr)),
                                 "val_loss": float("nan"), "val_pearson": float("nan")}
        if x_va is not None:
            pred_va = self._predict_array(x_va)
            row.update(val_loss=mse(y_va, pred_va), val_pearson=mean_pearson(y_va, pred_va))
        if needs_val:
            log.info("%s: alpha %.3g chosen, validation Pearson %.4f", self.name,
                     self.chosen_alpha, row["val_pearson"])
        return [row]

    def refit_params(self, history: list[dict[str, float]]) -> dict[str, Any] | None:
        """The alpha chosen on validation, fixed, so a refit uses train + validation."""
        return {"alpha": self.chosen_alpha} if self.settings.alpha == "validation" else None

    def _predict_array(self, x: np.ndarray) -> np.ndarray:
        if self.coef is None or self.projection is None:
            raise StflowError(f"{self.name}: predict called before fit. Fix: fit or load first")
        return self.projection.transform(x) @ self.coef + self.intercept

    def predict(self, slides: list[Slide]) -> list[np.ndarray]:
        """One (N, G) float32 log1p prediction per slide."""
        return [self._predict_array(self._features(s)).astype(np.float32) for s in slides]

    def _config(self) -> dict:
        return {"class": type(self).__name__, **self.settings.as_dict(),
                "chosen_alpha": self.chosen_alpha}

    def save(self, directory: Path) -> None:
        """``linear.npz`` (scaler, PCA, coefficients) and ``config.json``."""
        if self.coef is None or self.projection is None:
            raise StflowError(f"{self.name}: save called before fit. Fix: fit first")
        directory = Path(directory)
        write_npz(directory / "linear.npz", {**self.projection.arrays(), "coef": self.coef,
                                               "intercept": self.intercept})
        write_json(self._config(), directory / "config.json")

    @classmethod
    def load(cls, directory: Path) -> PCARidge:
        directory = Path(directory)
        config = read_config(directory / "config.json")
        data = read_npz(directory / "linear.npz")
        params = {k: v for k, v in config.items()
                  if k not in ("class", "seed", "chosen_alpha")}
        model = cls(seed=config["seed"], **params)
        model.projection = Projection.from_arrays(data)
        model.coef, model.intercept = data["coef"], data["intercept"]
        model.chosen_alpha = config["chosen_alpha"]
        return model



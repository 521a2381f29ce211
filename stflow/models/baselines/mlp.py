"""A two-layer MLP on the standardised features, early-stopped on validation Pearson."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from tqdm import tqdm

from stflow.atomic import write_json
from stflow.data.dataset import Slide
from stflow.errors import StflowError, input_error
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
from stflow.models.baselines.baseline_settings import MLPSettings
from stflow.models.capabilities import Capabilities


class MLPRegressor(Capabilities):
    """A two-layer MLP on the standardised features, early-stopped on validation Pearson.

    A non-linear spot-based head between ridge and STFlow: same inputs, no spatial context.
    """

    reports_epochs = False  # its epochs are reported when the fit is done
    fits_on_validation = False  # early-stopped there
    refits = False
    draws = False

    settings_class: ClassVar[type[MLPSettings]] = MLPSettings

    def __init__(self, seed: int = 0, **params: Any) -> None:
        """``params``: fields of :class:`MLPSettings`, which checks them."""
        self.settings = self.settings_class(seed=seed, **params)
        self.mean: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.weights: dict[str, np.ndarray] | None = None

    def _network(self, n_in: int, n_out: int) -> Any:
        import torch

        return torch.nn.Sequential(torch.nn.Linear(n_in, self.settings.hidden), torch.nn.GELU(),
                                   torch.nn.Dropout(self.settings.dropout),
                                   torch.nn.Linear(self.settings.hidden, n_out))

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        if x.shape[1] != len(self.mean):
            raise input_error("features", f"{x.shape[1]} feature columns, the model was "
                              f"trained on {len(self.mean)}",
                              "predict with features of the encoder the model was trained on")
        return ((x - self.mean) / self.scale).astype(np.float32)

    def fit(self, train: list[Slide], val: list[Slide]) -> list[dict[str, float]]:
        """Adam on MSE; keep the epoch with the best validation Pearson."""
        import torch

        check_slides(train, "training")
        x_tr, y_tr, x_va, y_va = train_val_arrays(
            [np.asarray(s.features, dtype=np.float64) for s in train],
            [spot_targets(s) for s in train], [s.coords_um for s in train],
            [s.sample for s in train], [np.asarray(s.features, dtype=np.float64) for s in val],
            [spot_targets(s) for s in val], self.settings.seed)
        self.mean = x_tr.mean(axis=0)
        self.scale = np.where(x_tr.std(axis=0) > 0, x_tr.std(axis=0), 1.0)
        torch.manual_seed(self.settings.seed)
        net = self._network(x_tr.shape[1], y_tr.shape[1])
        opt = torch.optim.Adam(net.parameters(), lr=self.settings.lr,
                               weight_decay=self.settings.weight_decay)
        xt = torch.from_numpy(self._standardise(x_tr))
        yt = torch.from_numpy(y_tr.astype(np.float32))
        xv = torch.from_numpy(self._standardise(x_va))
        generator = torch.Generator().manual_seed(self.settings.seed)
        history: list[dict[str, float]] = []
        best, best_state, stale = -np.inf, None, 0
        for epoch in tqdm(range(self.settings.max_epochs), desc="mlp", leave=False):
            net.train()
            losses = []
            order = torch.randperm(len(xt), generator=generator)
            for batch in order.split(self.settings.batch_size):
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
                            "val_loss": mse(y_va, pred), "val_pearson": score})
            if np.isfinite(score) and score > best:
                best, stale = score, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                stale += 1
                if stale >= self.settings.patience:
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
        write_npz(directory / "mlp.npz", {"scaler_mean": self.mean, "scaler_scale": self.scale,
                                            **{f"w.{k}": v for k, v in self.weights.items()}})
        write_json({"class": "MLPRegressor", **self.settings.as_dict()},
                   directory / "config.json")

    @classmethod
    def load(cls, directory: Path) -> MLPRegressor:
        directory = Path(directory)
        config = read_config(directory / "config.json")
        data = read_npz(directory / "mlp.npz")
        model = cls(**{k: v for k, v in config.items() if k != "class"})
        model.mean, model.scale = data["scaler_mean"], data["scaler_scale"]
        model.weights = {k[2:]: v for k, v in data.items() if k.startswith("w.")}
        return model

"""STFlow behind the registry's Estimator protocol (stflow.models): fit / predict / save / load.

Features are standardised with the training mean and std, which are saved with the weights;
``model.pt`` holds only tensors and plain types so it loads with ``weights_only=True``.
The device is where the model runs, not part of what it is: it is not saved, and
:meth:`STFlowEstimator.load` takes it at load time (a GPU-trained model predicts on a CPU node).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stflow.atomic import atomic_output
from stflow.dataset import Slide
from stflow.device import resolve_device
from stflow.errors import StflowError, input_error
from stflow.graph import check_coords
from stflow.model import DENOISERS, build_denoiser
from stflow.priors import PRIOR_NAMES, Prior, make_prior
from stflow.train import SlideArrays, TrainConfig, predict_slide, train_denoiser


class STFlowEstimator:
    """Flow matching with a ZINB (or other) prior and a frame-averaging (or EGNN) denoiser."""

    def __init__(self, seed: int = 0, prior: str = "zinb", mu: float = 0.2, phi: float = 1.0,
                 pi: float = 0.5, flow_matching: bool = True, frame_averaging: bool = True,
                 denoiser: str = "fa", k: int = 8, hidden: int = 128, layers: int = 4,
                 heads: int = 4, dropout: float = 0.2, lr: float = 5e-4, epochs: int = 100,
                 patience: int = 20, steps: int = 5, n_samples: int = 1,
                 regions_per_slide: int = 8, regions_per_step: int = 4,
                 val_fraction: float = 0.2, length_scale_um: float = 100.0,
                 chunk_size: int | None = 8192, device: str = "auto") -> None:
        if prior not in PRIOR_NAMES:
            raise StflowError(f"prior '{prior}': unknown. Fix: use one of {list(PRIOR_NAMES)}")
        if denoiser not in DENOISERS:
            raise StflowError(f"denoiser '{denoiser}': unknown. Fix: use one of "
                              f"{list(DENOISERS)}")
        self.params: dict[str, Any] = dict(
            seed=seed, prior=prior, mu=mu, phi=phi, pi=pi, flow_matching=flow_matching,
            frame_averaging=frame_averaging, denoiser=denoiser, k=k, hidden=hidden,
            layers=layers, heads=heads, dropout=dropout, lr=lr, epochs=epochs,
            patience=patience, steps=steps, n_samples=n_samples,
            regions_per_slide=regions_per_slide, regions_per_step=regions_per_step,
            val_fraction=val_fraction, length_scale_um=length_scale_um, chunk_size=chunk_size)
        self.config = TrainConfig(
            epochs=epochs, patience=patience, lr=lr, k=k, regions_per_slide=regions_per_slide,
            regions_per_step=regions_per_step, steps=steps, n_samples=n_samples,
            flow_matching=flow_matching, val_fraction=val_fraction,
            length_scale_um=length_scale_um, chunk_size=chunk_size, seed=seed)
        self.device = resolve_device(device)
        self.model: torch.nn.Module | None = None
        self.prior: Prior | None = None
        self.feature_mean: np.ndarray | None = None
        self.feature_std: np.ndarray | None = None
        self.in_dim: int | None = None
        self.n_genes: int | None = None

    def _build(self) -> torch.nn.Module:
        p = self.params
        return build_denoiser(p["denoiser"], self.in_dim, self.n_genes, p["hidden"], p["layers"],
                              p["heads"], p["dropout"], p["frame_averaging"])

    def _check_slides(self, slides: list[Slide], need_targets: bool) -> None:
        dim = self.in_dim if self.in_dim is not None else slides[0].features.shape[1]
        genes = self.n_genes
        for slide in slides:
            where = f"sample {slide.sample}"
            if slide.features.shape[1] != dim:
                raise input_error(where, f"features have {slide.features.shape[1]} dimensions, "
                                  f"expected {dim}", "embed every sample with the same encoder")
            check_coords(slide.coords_um, self.config.k, where)
            if need_targets:
                if slide.targets is None:
                    raise input_error(where, "has no expression targets",
                                      "load training/validation slides with their counts")
                genes = genes or slide.targets.shape[1]
                if slide.targets.shape[1] != genes:
                    raise input_error(where, f"{slide.targets.shape[1]} target genes, expected "
                                      f"{genes}", "use the same genes.json for every sample")

    def _arrays(self, slide: Slide) -> SlideArrays:
        features = ((slide.features - self.feature_mean) / self.feature_std).astype(np.float32)
        neighbors = slide.neighbors
        if neighbors is not None and ((neighbors < 0) | (neighbors >= slide.n_spots)).any():
            raise input_error(f"sample {slide.sample}", "graph neighbours index outside the "
                              "slide", "re-run the graph stage for this sample")
        return SlideArrays(slide.sample, features, np.asarray(slide.coords_um, np.float64),
                           slide.targets, neighbors)

    def fit(self, train: list[Slide], val: list[Slide]) -> list[dict[str, float]]:
        """Train on ``train``; select the checkpoint on ``val`` (or a held-out region)."""
        if not train:
            raise StflowError("STFlow fit: no training slides. Fix: check the fold's splits")
        self.in_dim = self.n_genes = None
        self._check_slides(list(train) + list(val), need_targets=True)
        self.in_dim = train[0].features.shape[1]
        self.n_genes = train[0].targets.shape[1]
        pooled = np.concatenate([s.features for s in train]).astype(np.float64)
        self.feature_mean = pooled.mean(0).astype(np.float32)
        self.feature_std = np.maximum(pooled.std(0), 1e-6).astype(np.float32)
        counts = None
        if self.params["prior"] == "zinb-fitted":
            if any(s.counts is None for s in train):
                raise input_error("prior zinb-fitted", "a training slide has no raw counts",
                                  "load the training slides with their counts")
            counts = np.concatenate([s.counts for s in train])
        self.prior = make_prior(self.params["prior"], self.params["mu"], self.params["phi"],
                                self.params["pi"], counts)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.params["seed"])
            self.model = self._build()
            return train_denoiser(self.model, self.prior, [self._arrays(s) for s in train],
                                  [self._arrays(s) for s in val], self.config, self.device)

    def predict(self, slides: list[Slide]) -> list[np.ndarray]:
        """One (N, G) log1p prediction per slide, by full-slide S-step sampling."""
        if self.model is None:
            raise StflowError("STFlow predict: the model is not trained. Fix: call fit or load")
        self._check_slides(slides, need_targets=False)
        self.model.to(self.device)
        generator = torch.Generator().manual_seed(self.params["seed"])
        return [self._to_output(predict_slide(self.model, self.prior, self._arrays(s),
                                              self.n_genes, self.config, self.device, generator))
                for s in slides]

    def _to_output(self, pred: np.ndarray) -> np.ndarray:
        """A sampled (N, G) prediction as :meth:`predict` returns it (log1p, float32).

        The one place for output transforms, so :meth:`sample_predictions` stays in step.
        """
        return pred.astype(np.float32)

    def sample_predictions(self, slides: list[Slide], n_samples: int,
                           seed: int | None = None) -> list[np.ndarray]:
        """``n_samples`` independent flow samples per slide, each (S, N, G) as predict gives.

        Their mean is the prediction and their standard deviation a per-spot, per-gene
        uncertainty. One generator (``seed``, default the model's) draws all of them.
        """
        if self.model is None:
            raise StflowError("STFlow sample: the model is not trained. Fix: call fit or load")
        if n_samples < 1:
            raise StflowError(f"n_samples={n_samples}. Fix: draw at least one sample")
        self._check_slides(slides, need_targets=False)
        self.model.to(self.device)
        single = dataclasses.replace(self.config, n_samples=1)
        generator = torch.Generator().manual_seed(self.params["seed"] if seed is None else seed)
        return [np.stack([self._to_output(predict_slide(self.model, self.prior, arrays,
                                                        self.n_genes, single, self.device,
                                                        generator))
                          for _ in range(n_samples)])
                for arrays in (self._arrays(s) for s in slides)]

    def save(self, directory: Path) -> None:
        """``model.pt`` (weights, normalisation, prior) and ``config.json``."""
        if self.model is None:
            raise StflowError("STFlow save: the model is not trained. Fix: call fit first")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {"state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                 "feature_mean": torch.from_numpy(self.feature_mean),
                 "feature_std": torch.from_numpy(self.feature_std),
                 "prior": self.prior.state(), "in_dim": self.in_dim, "n_genes": self.n_genes}
        with atomic_output(directory / "model.pt") as tmp:
            torch.save(state, tmp)
        config = {"params": self.params, "in_dim": self.in_dim, "n_genes": self.n_genes}
        with atomic_output(directory / "config.json") as tmp:
            tmp.write_text(json.dumps(config, indent=2))

    @classmethod
    def load(cls, directory: Path, device: str = "auto") -> STFlowEstimator:
        """Rebuild what :meth:`save` wrote (``torch.load`` with ``weights_only=True``).

        Tensors are loaded onto the CPU and moved to ``device`` when predicting, so a model
        trained on a GPU loads anywhere.
        """
        directory = Path(directory)
        for name in ("model.pt", "config.json"):
            if not (directory / name).exists():
                raise input_error(directory, f"lacks {name}", "re-run the train stage")
        config = json.loads((directory / "config.json").read_text())
        params = {k: v for k, v in config["params"].items() if k != "device"}  # older saves
        estimator = cls(**params, device=device)
        state = torch.load(directory / "model.pt", map_location="cpu", weights_only=True)
        estimator.in_dim, estimator.n_genes = int(state["in_dim"]), int(state["n_genes"])
        estimator.feature_mean = state["feature_mean"].numpy()
        estimator.feature_std = state["feature_std"].numpy()
        estimator.prior = Prior.from_state(state["prior"])
        estimator.model = estimator._build()
        try:
            estimator.model.load_state_dict(state["state_dict"])
        except RuntimeError as err:  # saved by a version with other layers
            detail = " ".join(str(err).split())[:200]
            raise input_error(directory / "model.pt", "its weights do not fit this version's "
                              f"{params['denoiser']} denoiser ({detail})",
                              "re-run the train stage with this version of stflow") from err
        return estimator

"""STFlow behind the registry's Estimator protocol (stflow.models.registry): fit / predict / save / load.

Features are standardised with the training mean and std, which are saved with the weights;
``model.pt`` holds only tensors and plain types so it loads with ``weights_only=True``.
The device is where the model runs, not part of what it is: it is not saved, and
:meth:`STFlowEstimator.load` takes it at load time (a GPU-trained model predicts on a CPU node).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from stflow.atomic import atomic_output
from stflow.data.dataset import Slide
from stflow.data.graph import check_coords
from stflow.device import resolve_device
from stflow.errors import StflowError, input_error
from stflow.models.baselines.spatial_ridge import SpatialRidge
from stflow.models.capabilities import Capabilities
from stflow.models.progress import EpochCallback, member_callback
from stflow.models.stflow.moments import RunningMoments
from stflow.models.stflow.networks import build_denoiser
from stflow.models.stflow.priors import Prior, make_prior
from stflow.models.stflow.settings import STFlowSettings
from stflow.models.stflow.trainer import (
    SlideArrays,
    correction_gate,
    predict_arrays,
    train_denoiser,
    validation_split,
)

STANDARDISE_ROWS = 65536  # spots standardised at a time when no chunk size is given


class STFlowEstimator(Capabilities):
    """Flow matching with a ZINB (or other) prior and a frame-averaging (or EGNN) denoiser."""

    settings_class: ClassVar[type[STFlowSettings]] = STFlowSettings
    reports_epochs = True  # fit(..., on_epoch=) as each epoch ends
    fits_on_validation = False  # selects its checkpoint there
    refits = True  # refit_params: the best epoch as a fixed budget
    draws = True  # flow samples: distinct_draws, draw_moments

    def __init__(self, seed: int = 0, device: str = "auto", **params: Any) -> None:
        """``params``: fields of :class:`STFlowSettings`, which checks them; ``device`` is
        where to run, not a setting."""
        self.settings = self.settings_class(seed=seed, **params)
        self.device = resolve_device(device)
        self.model: torch.nn.Module | None = None  # the first network of the ensemble
        self.members: list[torch.nn.Module] = []  # all of them (``ensemble`` seeds)
        self.prior: Prior | None = None
        self.feature_mean: np.ndarray | None = None
        self.feature_std: np.ndarray | None = None
        self.feature_basis: np.ndarray | None = None  # (D, p) whitened PCA, when feature_pca
        self.target_mean: np.ndarray | None = None  # per-gene, when target_scaling=standard
        self.target_std: np.ndarray | None = None
        self.in_dim: int | None = None
        self.n_genes: int | None = None
        self.base: SpatialRidge | None = None  # the fixed map the networks correct
        self.gates: list[np.ndarray | None] = []  # per member, (G,) share of its correction

    def _build(self) -> torch.nn.Module:
        c = self.settings
        width = self.in_dim if self.feature_basis is None else self.feature_basis.shape[1]
        network = build_denoiser(c.denoiser, width, self.n_genes, c.hidden, c.layers, c.heads,
                                 c.dropout, c.frame_averaging, c.spatial_skip)
        if c.residual_base != "none":
            network.zero_gene_outputs()
        return network

    def _check_slides(self, slides: list[Slide], need_targets: bool) -> None:
        dim = self.in_dim if self.in_dim is not None else slides[0].features.shape[1]
        genes = self.n_genes
        for slide in slides:
            where = f"sample {slide.sample}"
            if slide.features.shape[1] != dim:
                raise input_error(where, f"features have {slide.features.shape[1]} dimensions, "
                                  f"expected {dim}", "embed every sample with the same encoder")
            check_coords(slide.coords_um, self.settings.k, where)
            if need_targets:
                if slide.targets is None:
                    raise input_error(where, "has no expression targets",
                                      "load training/validation slides with their counts")
                genes = genes or slide.targets.shape[1]
                if slide.targets.shape[1] != genes:
                    raise input_error(where, f"{slide.targets.shape[1]} target genes, expected "
                                      f"{genes}", "use the same genes.json for every sample")

    def _fit_preprocessing(self, train: list[Slide]) -> None:
        """Feature standardisation (+ whitened PCA) and target scaling from training spots."""
        pooled = np.concatenate([s.features for s in train]).astype(np.float64)
        self.feature_mean = pooled.mean(0).astype(np.float32)
        self.feature_std = np.maximum(pooled.std(0), 1e-6).astype(np.float32)
        self.feature_basis = None
        n_components = min(self.settings.feature_pca, *pooled.shape)
        if n_components:
            scaled = (pooled - self.feature_mean) / self.feature_std
            _, singular, vt = np.linalg.svd(scaled, full_matrices=False)
            spread = np.maximum(singular[:n_components] / np.sqrt(len(scaled)), 1e-6)
            self.feature_basis = (vt[:n_components].T / spread).astype(np.float32)
        self.target_mean = self.target_std = None
        if self.settings.target_scaling == "standard":
            targets = np.concatenate([s.targets for s in train]).astype(np.float64)
            self.target_mean = targets.mean(0).astype(np.float32)
            self.target_std = np.maximum(targets.std(0), 1e-3).astype(np.float32)

    def _fit_base(self, train: list[Slide], val: list[Slide]) -> None:
        """The spatial ridge whose residual the networks learn (``residual_base``).

        Its alpha is chosen on the same validation spots as the networks' epoch (or fixed by
        ``base_alpha`` in a refit), so the base never sees the test fold.
        """
        self.base = None
        if self.settings.residual_base == "spatial_ridge":
            alpha = self.settings.base_alpha
            self.base = SpatialRidge(seed=self.settings.seed, k=self.settings.k,
                                     alpha="validation" if alpha is None else alpha)
            self.base.fit(train, val)

    def _to_output(self, prediction: np.ndarray) -> np.ndarray:
        """Model space → log1p expression (undoes the target scaling)."""
        if self.target_mean is not None:
            prediction = prediction * self.target_std + self.target_mean
        return prediction.astype(np.float32)

    def _model_features(self, features: np.ndarray, chunk_spots: int | None,
                        in_place: bool = False) -> np.ndarray:
        """Standardised (and projected) features, written into one float32 array a row chunk
        at a time: a million spots of 1280 features would otherwise need two more 5 GB
        temporaries besides the result. ``in_place`` writes them over ``features`` (float32,
        given up by the caller), so the slide holds one copy, not two."""
        width = len(self.feature_mean) if self.feature_basis is None else \
            self.feature_basis.shape[1]
        reuse = (in_place and self.feature_basis is None and features.dtype == np.float32
                 and features.flags.c_contiguous and features.flags.writeable)
        out = features if reuse else np.empty((len(features), width), np.float32)
        step = max(chunk_spots or STANDARDISE_ROWS, 1)
        for start in range(0, len(features), step):
            block = ((features[start:start + step] - self.feature_mean) / self.feature_std
                     ).astype(np.float32)
            out[start:start + step] = block if self.feature_basis is None else \
                block @ self.feature_basis
        return out

    def _arrays(self, slide: Slide, chunk_spots: int | None = None,
                in_place: bool = False) -> SlideArrays:
        offset = None
        if self.base is not None:  # from the raw features, before they may be overwritten
            offset = self.base.predict([slide])[0]
            if self.target_mean is not None:
                offset = (offset - self.target_mean) / self.target_std
            offset = offset.astype(np.float32)
        features = self._model_features(slide.features, chunk_spots, in_place)
        targets = slide.targets
        if targets is not None and self.target_mean is not None:
            targets = ((targets - self.target_mean) / self.target_std).astype(np.float32)
        neighbors = slide.neighbors
        if neighbors is not None and ((neighbors < 0) | (neighbors >= slide.n_spots)).any():
            raise input_error(f"sample {slide.sample}", "graph neighbours index outside the "
                              "slide", "re-run the graph stage for this sample")
        return SlideArrays(slide.sample, features, np.asarray(slide.coords_um, np.float64),
                           targets, neighbors, offset)

    def fit(self, train: list[Slide], val: list[Slide],
            on_epoch: EpochCallback | None = None) -> list[dict[str, float]]:
        """Train on ``train``; select the checkpoint on ``val`` (or a held-out region).

        ``on_epoch(row)`` receives each epoch's history row as it ends (a progress file
        follows the training, a search prunes through it); an ensemble's later members'
        rows carry ``member``, as the returned history does.
        """
        if not train:
            raise StflowError("STFlow fit: no training slides. Fix: check the fold's splits")
        self.in_dim = self.n_genes = None
        self._check_slides(list(train) + list(val), need_targets=True)
        self.in_dim = train[0].features.shape[1]
        self.n_genes = train[0].targets.shape[1]
        self._fit_preprocessing(train)
        self._fit_base(train, val)
        counts = None
        if self.settings.prior == "zinb-fitted":
            if any(s.counts is None for s in train):
                raise input_error("prior zinb-fitted", "a training slide has no raw counts",
                                  "load the training slides with their counts")
            counts = np.concatenate([s.counts for s in train])
        self.prior = make_prior(self.settings.prior, self.settings.mu, self.settings.phi,
                                self.settings.pi, counts)
        if self.target_mean is not None:
            self.prior = self.prior.standardised(self.target_mean, self.target_std)
        train_arrays = [self._arrays(s) for s in train]
        val_arrays = [self._arrays(s) for s in val]
        self.members, self.gates, history = [], [], []
        for member in range(self.settings.ensemble):
            seed = self.settings.seed + member
            config = dataclasses.replace(self.settings, seed=seed)
            # one hold-out for every member, the base seed's, as calibration draws it: a
            # member holding out its own region would train on the calibration spots
            member_train, member_val = validation_split(train_arrays, val_arrays, self.settings)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                network = self._build()
                rows = train_denoiser(network, self.prior, member_train, member_val, config,
                                      self.device, member_callback(on_epoch, member))
            self.members.append(network)
            self.gates.append(None if self.base is None else correction_gate(
                network, self.prior, member_val, self.n_genes, config, self.device))
            history += [{**row, "member": member} for row in rows] if member else rows
        self.model = self.members[0]
        return history

    @property
    def params(self) -> dict[str, Any]:
        """The settings as a plain dict (what ``config.json`` saves as ``params``)."""
        return self.settings.as_dict()

    def refit_params(self, history: list[dict[str, float]]) -> dict[str, Any] | None:
        """Settings that retrain the selected model on train + validation without selecting:
        the best validation epoch as a fixed budget, nothing held out."""
        first = [row for row in history if row.get("member", 0) == 0]
        scores = [row["val_pearson"] for row in first]
        if not scores or not np.isfinite(scores).any():
            return None
        fixed = {"epochs": int(first[int(np.nanargmax(scores))]["epoch"]), "val_fraction": 0.0}
        if self.base is not None:
            fixed["base_alpha"] = self.base.chosen_alpha
        return fixed

    def predict(self, slides: list[Slide]) -> list[np.ndarray]:
        """One (N, G) log1p prediction per slide, by full-slide S-step sampling."""
        if self.model is None:
            raise StflowError("STFlow predict: the model is not trained. Fix: call fit or load")
        self._check_slides(slides, need_targets=False)
        generator = torch.Generator().manual_seed(self.settings.seed)
        predictions = []
        for slide in slides:
            arrays = self._arrays(slide)
            total = sum(predict_arrays(network.to(self.device), self.prior, arrays,
                                      self.n_genes, self.settings, self.device, generator, gate)
                        for network, gate in zip(self.members, self.gates, strict=True))
            predictions.append(self._to_output(total / len(self.members)))
        return predictions

    def distinct_draws(self, n_samples: int) -> tuple[int, str | None]:
        """How many of ``n_samples`` draws can differ, and what they are (None: nothing, the
        prediction is deterministic): all of them with flow matching; one per network for
        the one-step model, which draws no noise."""
        if self.settings.flow_matching:
            return n_samples, f"{n_samples} independent flow samples"
        networks = min(n_samples, len(self.members))
        if networks == 1:
            return 1, None
        return networks, f"the predictions of {networks} one-step networks of the ensemble"

    def sample_predictions(self, slides: list[Slide], n_samples: int,
                           seed: int | None = None) -> list[np.ndarray]:
        """``n_samples`` independent flow samples per slide, each (S, N, G) as predict gives.

        Their mean is the prediction and their standard deviation a per-spot, per-gene
        uncertainty. One generator (``seed``, default the model's) draws all of them; with an
        ensemble, sample i comes from network i mod ``ensemble``, so the spread also holds
        the networks' disagreement.
        """
        generator = self._sampling_generator(slides, n_samples, seed)
        return [np.stack(list(self._flow_samples(self._arrays(s), n_samples, generator)))
                for s in slides]

    def draw_moments(self, slide: Slide, n_samples: int, seed: int | None = None,
                       chunk_spots: int | None = None, reuse_features: bool = False
                       ) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std with ddof=1) over ``n_samples`` flow samples of one slide, as
        :meth:`sample_predictions` would give them stacked, but holding one sample at a time
        (:class:`RunningMoments`); ``chunk_spots`` bounds the per-row temporaries.
        ``reuse_features``: standardise ``slide.features`` in place (the caller no longer
        needs them raw), the largest array of a big slide then held once."""
        generator = self._sampling_generator([slide], n_samples, seed)
        arrays = self._arrays(slide, chunk_spots, reuse_features)
        moments = RunningMoments()
        for sample in self._flow_samples(arrays, n_samples, generator):
            moments.add(sample, chunk_spots)
        return moments.result()

    def _sampling_generator(self, slides: list[Slide], n_samples: int, seed: int | None
                            ) -> torch.Generator:
        """Refuse what cannot be sampled; the one generator (``seed``, default the model's)
        that draws every sample of these slides."""
        if self.model is None:
            raise StflowError("STFlow sample: the model is not trained. Fix: call fit or load")
        if n_samples < 1:
            raise StflowError(f"n_samples={n_samples}. Fix: draw at least one sample")
        self._check_slides(slides, need_targets=False)
        return torch.Generator().manual_seed(self.settings.seed if seed is None else seed)

    def _flow_samples(self, arrays: SlideArrays, n_samples: int, generator: torch.Generator
                      ) -> Iterator[np.ndarray]:
        """One slide's flow samples, one at a time; sample i from network i mod ensemble."""
        single = dataclasses.replace(self.settings, n_samples=1)
        members = [network.to(self.device) for network in self.members]
        for i in range(n_samples):
            yield self._to_output(predict_arrays(members[i % len(members)], self.prior, arrays,
                                                self.n_genes, single, self.device, generator,
                                                self.gates[i % len(members)]))

    def save(self, directory: Path) -> None:
        """``model.pt`` (weights, normalisation, prior) and ``config.json``."""
        if self.model is None:
            raise StflowError("STFlow save: the model is not trained. Fix: call fit first")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        weights = [{k: v.detach().cpu() for k, v in network.state_dict().items()}
                   for network in self.members]
        state = {"state_dict": weights[0], "ensemble_state_dicts": weights[1:],
                 "feature_mean": torch.from_numpy(self.feature_mean),
                 "feature_std": torch.from_numpy(self.feature_std),
                 "prior": self.prior.state(), "in_dim": self.in_dim, "n_genes": self.n_genes}
        for name in ("feature_basis", "target_mean", "target_std"):
            if getattr(self, name) is not None:
                state[name] = torch.from_numpy(getattr(self, name))
        if self.base is not None:  # the base before model.pt, whose presence means "saved"
            state["correction_gates"] = [torch.from_numpy(gate) for gate in self.gates]
            self.base.save(directory / "base")
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
        params = config["params"]
        try:
            estimator = cls(**params, device=device)
        except TypeError as err:  # a setting this version does not have
            raise input_error(directory / "config.json", f"its params do not fit this "
                              f"version's STFlow settings ({err})",
                              "re-run the train stage with this version of stflow") from err
        state = torch.load(directory / "model.pt", map_location="cpu", weights_only=True)
        estimator.in_dim, estimator.n_genes = int(state["in_dim"]), int(state["n_genes"])
        estimator.feature_mean = state["feature_mean"].numpy()
        estimator.feature_std = state["feature_std"].numpy()
        for name in ("feature_basis", "target_mean", "target_std"):
            if name in state:
                setattr(estimator, name, state[name].numpy())
        estimator.prior = Prior.from_state(state["prior"])
        if estimator.settings.residual_base != "none":
            estimator.base = SpatialRidge.load(directory / "base")
        estimator.members = []
        try:
            for weights in [state["state_dict"], *state.get("ensemble_state_dicts", [])]:
                network = estimator._build()
                network.load_state_dict(weights)
                estimator.members.append(network)
            estimator.model = estimator.members[0]
            gates = [g.numpy() for g in state.get("correction_gates", [])]
            estimator.gates = gates or [None] * len(estimator.members)  # no base, no gates
        except RuntimeError as err:  # saved by a version with other layers
            detail = " ".join(str(err).split())[:200]
            raise input_error(directory / "model.pt", "its weights do not fit this version's "
                              f"{params['denoiser']} denoiser ({detail})",
                              "re-run the train stage with this version of stflow") from err
        return estimator

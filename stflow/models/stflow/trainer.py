"""The STFlow trainer: random contiguous regions, Adam, clipping, early stopping on validation.

Each step trains on several random regions (a random centre spot and its nearest
U(0, 1)-fraction of the slide, at least k + 1 spots) padded into one batch with a mask; the kNN
graph and the geometry are computed once per region. Checkpoints are selected on validation
slides of the training patients, or on a held-out contiguous region of the training slides
when there are none: never on the test fold (the published code did that).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

from stflow.data.graph import knn_graph
from stflow.data.holdout import holdout_index, nearest_spots
from stflow.metrics import mean_pearson
from stflow.models.progress import EpochCallback
from stflow.models.stflow.flow import draw, flow_matching_loss
from stflow.models.stflow.networks.geometry import Geometry, prepare_geometry
from stflow.models.stflow.priors import Prior
from stflow.models.stflow.settings import STFlowSettings

log = logging.getLogger(__name__)


GRAD_CLIP = 1.0  # gradient-norm clip of every Adam step (paper)


@dataclass
class SlideArrays:
    """One (part of a) slide ready for training: standardised features, microns, log1p targets."""

    name: str
    features: np.ndarray  # (N, D) float32
    coords_um: np.ndarray  # (N, 2) float64
    targets: np.ndarray | None = None  # (N, G) float32
    neighbors: np.ndarray | None = None  # (N, k) int64 over the whole slide
    # (N, G) a fixed base prediction the network corrects (its residual is what it learns)
    offset: np.ndarray | None = None

    def subset(self, index: np.ndarray, name: str) -> SlideArrays:
        """The spots ``index`` as their own slide (its graph is rebuilt when needed)."""
        targets = None if self.targets is None else self.targets[index]
        offset = None if self.offset is None else self.offset[index]
        return SlideArrays(name, self.features[index], self.coords_um[index], targets,
                           offset=offset)

    def residual_targets(self) -> np.ndarray:
        """What the network learns: the targets less the base prediction, if any."""
        return self.targets if self.offset is None else self.targets - self.offset


def random_region(coords: np.ndarray, rng: np.random.Generator, k: int,
                  min_fraction: float = 0.0) -> np.ndarray:
    """A random centre and its nearest U(min_fraction, 1)-fraction of spots, at least k + 1."""
    n_spots = len(coords)
    size = max(k + 1, int(np.ceil(rng.uniform(min_fraction, 1.0) * n_spots)))
    return nearest_spots(coords, int(rng.integers(n_spots)), min(size, n_spots))


def holdout_split(slide: SlideArrays, fraction: float, rng: np.random.Generator, k: int
                  ) -> tuple[SlideArrays, SlideArrays]:
    """Split a slide into (train, validation); both keep the k + 1 spots a kNN graph needs."""
    val_index = holdout_index(slide.coords_um, fraction, rng, k + 1, slide.name)
    train_index = np.setdiff1d(np.arange(len(slide.coords_um)), val_index)
    return (slide.subset(train_index, slide.name),
            slide.subset(val_index, f"{slide.name}:holdout"))


def collate(regions: list[SlideArrays], k: int, length_scale_um: float
            ) -> tuple[torch.Tensor, torch.Tensor, Geometry]:
    """Pad regions into (B, N_max, ·) features and targets plus their geometry and mask."""
    n_max = max(len(r.features) for r in regions)
    batch = len(regions)
    dim, n_genes = regions[0].features.shape[1], regions[0].targets.shape[1]
    features = np.zeros((batch, n_max, dim), np.float32)
    targets = np.zeros((batch, n_max, n_genes), np.float32)
    coords = np.zeros((batch, n_max, 2))
    neighbors = np.zeros((batch, n_max, k), np.int64)
    mask = np.zeros((batch, n_max), bool)
    for b, region in enumerate(regions):
        n = len(region.features)
        features[b, :n], targets[b, :n], coords[b, :n] = (region.features,
                                                          region.residual_targets(),
                                                          region.coords_um)
        neighbors[b, :n] = knn_graph(region.coords_um, k, where=f"sample {region.name}")[0]
        mask[b, :n] = True
    geometry = prepare_geometry(coords, neighbors, mask, length_scale_um)
    return torch.from_numpy(features), torch.from_numpy(targets), geometry


def slide_neighbors(slide: SlideArrays, k: int) -> np.ndarray:
    """The slide's graph when it has one with this k, else a fresh KD-tree kNN."""
    if slide.neighbors is not None and slide.neighbors.shape[1] == k:
        return slide.neighbors
    return knn_graph(slide.coords_um, k, where=f"sample {slide.name}")[0]


def autocast_for(device: torch.device) -> tuple[contextlib.AbstractContextManager,
                                                  torch.dtype | None]:
    """Mixed precision on CUDA (bf16 where supported, else fp16); full precision on CPU."""
    if device.type != "cuda":
        return contextlib.nullcontext(), None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype), dtype


def predict_arrays(model: torch.nn.Module, prior: Prior, slide: SlideArrays, n_genes: int,
                  config: STFlowSettings, device: torch.device,
                  generator: torch.Generator | None = None,
                  gate: np.ndarray | None = None) -> np.ndarray:
    """Full-slide sampling (neighbours from the whole slide, geometry once, chunked edges),
    plus the slide's base prediction when the network learns a residual; ``gate`` (G,)
    scales the network's correction of that base per gene."""
    neighbors = slide_neighbors(slide, config.k)
    geometry = prepare_geometry(slide.coords_um, neighbors, None,
                                config.length_scale_um).to(device)
    geometry.cache = {}  # weights and features are fixed for this run: reuse per-step work
    features = torch.from_numpy(np.ascontiguousarray(slide.features))[None].to(device)
    was_training = model.training
    model.eval()
    autocast, _ = autocast_for(device)
    with torch.inference_mode(), autocast:
        pred = draw(model, features, geometry, prior, n_genes, config.steps, config.n_samples,
                      generator, config.flow_matching, config.chunk_size)
    model.train(was_training)
    pred = pred[0].float().cpu().numpy()
    if slide.offset is None:
        return pred
    return (pred if gate is None else pred * gate) + slide.offset


def validation_predictions(model: torch.nn.Module, prior: Prior, val: list[SlideArrays],
                           n_genes: int, config: STFlowSettings, device: torch.device
                           ) -> list[np.ndarray]:
    """Each validation slide's prediction, sampled with the one seed every check uses."""
    generator = torch.Generator().manual_seed(config.seed + 1)
    return [predict_arrays(model, prior, s, n_genes, config, device, generator) for s in val]


def correction_gate(model: torch.nn.Module, prior: Prior, val: list[SlideArrays],
                    n_genes: int, config: STFlowSettings, device: torch.device) -> np.ndarray:
    """(G,) how much of the network's correction of its base to keep, per gene, in [0, 1].

    Early stopping keeps the epoch best for the mean over genes, so the correction can still
    hurt single genes (the simulator's receivers, whose base already holds the neighbour
    signal). The least-squares scale of the correction against the base's residual on the
    validation spots, clipped to [0, 1], keeps it where it helps and drops it where it does
    not. Without validation spots (a refit) the correction is kept whole.
    """
    if not val:
        return np.ones(n_genes, np.float32)
    predicted = validation_predictions(model, prior, val, n_genes, config, device)
    correction = np.concatenate([p - s.offset for p, s in zip(predicted, val, strict=True)])
    residual = np.concatenate([s.targets - s.offset for s in val])
    scale = (correction * residual).sum(0) / np.maximum((correction**2).sum(0), 1e-12)
    return np.clip(scale, 0.0, 1.0).astype(np.float32)


def validation_split(train: list[SlideArrays], val: list[SlideArrays], config: STFlowSettings
                     ) -> tuple[list[SlideArrays], list[SlideArrays]]:
    """(train, validation): ``val`` when given, else a contiguous ``val_fraction`` held out of
    each training slide (drawn as :func:`stflow.data.holdout.holdout_masks` draws it), else
    nothing to validate on (``val_fraction == 0``: a refit)."""
    if val or config.val_fraction <= 0:
        return train, val
    holdout_rng = np.random.default_rng(config.seed)
    pairs = [holdout_split(s, config.val_fraction, holdout_rng, config.k) for s in train]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def validate(model: torch.nn.Module, prior: Prior, val: list[SlideArrays], n_genes: int,
             config: STFlowSettings, device: torch.device) -> tuple[float, float]:
    """(MSE, mean per-gene Pearson) of sampled predictions pooled over the validation spots."""
    preds = validation_predictions(model, prior, val, n_genes, config, device)
    truth, pred = np.concatenate([s.targets for s in val]), np.concatenate(preds)
    return float(((truth - pred) ** 2).mean()), float(mean_pearson(truth, pred))


def weight_average(model: torch.nn.Module, decay: float
                   ) -> torch.optim.swa_utils.AveragedModel | None:
    """An EMA copy of ``model`` (validated and kept instead of the raw weights), or None.

    Averaging the iterates is the usual companion of flow matching: the raw weights of a
    few hundred noisy steps on small folds wander, their average does not.
    """
    if not decay:
        return None
    if not 0.0 < decay < 1.0:
        raise ValueError(f"ema decay {decay} must be in (0, 1); 0 switches it off")
    return torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay), use_buffers=True)


class AdamSteps:
    """The optimiser side of training: one AdamW step on a batch of regions at a time, in
    mixed precision where the device has it, the gradient norm clipped, the EMA copy (the
    weights validated and kept, when ``ema``) updated after each step."""

    def __init__(self, model: torch.nn.Module, prior: Prior, config: STFlowSettings,
                 device: torch.device) -> None:
        self.model, self.prior, self.config, self.device = model, prior, config, device
        self.generator = torch.Generator().manual_seed(config.seed)
        model.to(device).train()
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                           weight_decay=config.weight_decay)
        self.averaged = weight_average(model, config.ema)
        self.autocast, amp_dtype = autocast_for(device)
        self.scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None

    @property
    def evaluated(self) -> torch.nn.Module:
        """The weights validation judges: the EMA copy's, else the model's own."""
        return self.averaged.module if self.averaged is not None else self.model

    def step(self, regions: list[SlideArrays]) -> float:
        """One step on ``regions`` (padded into one batch); its loss."""
        config, device = self.config, self.device
        features, targets, geometry = collate(regions, config.k, config.length_scale_um)
        features, targets, geometry = (features.to(device), targets.to(device),
                                       geometry.to(device))
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast:
            loss = flow_matching_loss(self.model, features, targets, geometry, self.prior,
                                      self.generator, config.flow_matching)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), GRAD_CLIP)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.averaged is not None:
            self.averaged.update_parameters(self.model)
        return float(loss.detach())

    def epoch(self, train: list[SlideArrays], rng: np.random.Generator) -> float:
        """One epoch: every slide's random regions (at least ``regions_per_slide`` each,
        enough for ``min_steps_per_epoch`` steps), shuffled into steps; the mean loss."""
        config = self.config
        per_slide = max(config.regions_per_slide, -(-config.min_steps_per_epoch
                                                    * config.regions_per_step // len(train)))
        order = [i for i in range(len(train)) for _ in range(per_slide)]
        rng.shuffle(order)
        losses = []
        for start in range(0, len(order), config.regions_per_step):
            regions = [train[i].subset(random_region(train[i].coords_um, rng, config.k,
                                                     config.min_region_fraction),
                                       train[i].name)
                       for i in order[start:start + config.regions_per_step]]
            losses.append(self.step(regions))
        return float(np.mean(losses))

    def keep_final(self, best_state: dict[str, torch.Tensor] | None) -> None:
        """Leave the model at ``best_state`` (the best validated epoch), else at the last
        averaged weights (nothing validated), else as it is."""
        if best_state is not None:
            self.model.load_state_dict(best_state)
        elif self.averaged is not None:
            self.model.load_state_dict(self.evaluated.state_dict())


@dataclass
class EarlyStopping:
    """The best validated epoch so far, its weights, and when to stop: after ``patience``
    epochs without a better validation Pearson."""

    patience: int
    best_score: float = -np.inf
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    stale: int = 0

    def judge(self, epoch: int, val_pearson: float) -> bool:
        """Whether ``epoch`` is the best so far (a NaN Pearson never is, but the first
        epoch is kept whatever it scores)."""
        score = val_pearson if np.isfinite(val_pearson) else -np.inf
        improved = self.best_state is None or score > self.best_score
        if improved:
            self.best_score, self.best_epoch = score, epoch
        return improved

    def keep_or_stop(self, improved: bool, evaluated: torch.nn.Module, epoch: int) -> bool:
        """Keep the weights of an improved epoch; whether training should stop now."""
        if improved:
            self.stale = 0
            self.best_state = copy.deepcopy({k: v.detach().cpu()
                                             for k, v in evaluated.state_dict().items()})
            return False
        self.stale += 1
        if self.stale >= self.patience:
            log.info("early stop at epoch %d (best val Pearson %.4f)", epoch, self.best_score)
            return True
        return False


def train_denoiser(model: torch.nn.Module, prior: Prior, train: list[SlideArrays],
                   val: list[SlideArrays], config: STFlowSettings, device: torch.device,
                   on_epoch: EpochCallback | None = None) -> list[dict[str, float]]:
    """Train ``model`` in place, leave it at the best validation checkpoint; return history.

    Each epoch is logged (loss, validation Pearson, the best so far) and its history row
    passed to ``on_epoch(row)`` as it ends: a progress file follows the run through it, and a
    search stops unpromising trials by raising from it.

    With no ``val`` slides, a contiguous ``val_fraction`` of each training slide is held out
    (and never trained on): :func:`validation_split`. With no ``val`` and
    ``val_fraction == 0`` nothing is validated: all ``epochs`` run and the last (averaged)
    weights are kept — the refit on train + validation, whose epoch count was chosen before.
    """
    rng = np.random.default_rng(config.seed)
    steps = AdamSteps(model, prior, config, device)
    train, val = validation_split(train, val, config)
    n_genes = train[0].targets.shape[1]
    stopping = EarlyStopping(config.patience)
    history: list[dict[str, float]] = []
    for epoch in range(1, config.epochs + 1):
        started = time.monotonic()
        loss = steps.epoch(train, rng)
        if not val:
            row = {"epoch": epoch, "train_loss": loss, "val_loss": float("nan"),
                   "val_pearson": float("nan")}
            history.append(row)
            log.info("epoch %d/%d train_loss %.4f (nothing validated) %.1f s", epoch,
                     config.epochs, loss, time.monotonic() - started)
            if on_epoch is not None:
                on_epoch(row)
            continue
        val_loss, val_pearson = validate(steps.evaluated, prior, val, n_genes, config, device)
        row = {"epoch": epoch, "train_loss": loss, "val_loss": val_loss,
               "val_pearson": val_pearson}
        history.append(row)
        improved = stopping.judge(epoch, val_pearson)
        log.info("epoch %d/%d train_loss %.4f val_pearson %.4f (best %.4f @%d) %.1f s", epoch,
                 config.epochs, loss, val_pearson, stopping.best_score, stopping.best_epoch,
                 time.monotonic() - started)
        if on_epoch is not None:
            on_epoch(row)
        if stopping.keep_or_stop(improved, steps.evaluated, epoch):
            break
    steps.keep_final(stopping.best_state)
    return history

"""STFlow's settings: the one definition of every parameter of the model and its training.

The estimator is built from it, the trainer reads it, the registry checks ``model_params``
against its fields (and converts them to their types), and ``config.json`` saves it as
``params``. The names are the ``model_params`` keys of the config; the defaults are the
paper's where the paper gives one. :mod:`stflow.models.catalogue` describes the same
parameters without torch, for the workflow's config check (a test keeps the two equal).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from stflow.data.holdout import VAL_FRACTION
from stflow.errors import StflowError
from stflow.models.catalogue import DENOISERS, PRIOR_NAMES, RESIDUAL_BASES, TARGET_SCALINGS

__all__ = ["DENOISERS", "PRIOR_NAMES", "RESIDUAL_BASES", "TARGET_SCALINGS", "STFlowSettings"]


@dataclass(frozen=True)
class STFlowSettings:
    """Every STFlow parameter (``seed`` included) and its default."""

    seed: int = 0
    prior: str = "zinb"  # zinb | zinb-fitted | zero | gaussian
    mu: float = 0.2  # ZINB prior
    phi: float = 1.0
    pi: float = 0.5
    flow_matching: bool = True  # False: one-step regression (ablation)
    frame_averaging: bool = True  # False: raw offsets (ablation)
    denoiser: str = "fa"  # fa | egnn
    k: int = 8  # neighbours per spot (graph.k in the workflow)
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    dropout: float = 0.2
    lr: float = 5e-4
    epochs: int = 100
    patience: int = 20  # early stop after this many epochs without a better validation score
    steps: int = 5  # sampling steps (Algorithm 2)
    n_samples: int = 1  # flow samples averaged per prediction
    regions_per_slide: int = 8  # regions drawn from each training slide per epoch
    regions_per_step: int = 4  # regions padded into one batch
    val_fraction: float = VAL_FRACTION  # held-out region when a fold has no validation sample
    length_scale_um: float = 100.0
    chunk_size: int | None = 8192
    target_scaling: str = "standard"  # standard: per-gene standardised log1p targets
    feature_pca: int = 0  # whitened PCA components of the features; 0: off
    spatial_skip: bool = False  # a linear path from own and neighbour-mean features
    weight_decay: float = 0.0  # decoupled (AdamW); 0 is plain Adam
    ema: float = 0.0  # decay of an exponential moving average of the weights; 0: off
    min_steps_per_epoch: int = 1  # at least this many Adam steps per epoch (small folds)
    ensemble: int = 1  # networks of consecutive seeds, averaged
    min_region_fraction: float = 0.0  # training regions cover U(this, 1) of a slide
    residual_base: str = "none"  # spatial_ridge: the networks learn that ridge's residual
    base_alpha: float | None = None  # the base's ridge alpha; None: chosen on validation

    def __post_init__(self) -> None:
        if self.prior not in PRIOR_NAMES:
            raise StflowError(f"prior '{self.prior}': unknown. Fix: use one of "
                              f"{list(PRIOR_NAMES)}")
        if self.target_scaling not in TARGET_SCALINGS:
            raise StflowError(f"target_scaling '{self.target_scaling}': unknown. Fix: use one "
                              f"of {list(TARGET_SCALINGS)}")
        if self.residual_base not in RESIDUAL_BASES:
            raise StflowError(f"residual_base '{self.residual_base}': unknown. Fix: use one of "
                              f"{list(RESIDUAL_BASES)}")
        if not 0.0 <= self.min_region_fraction <= 1.0:
            raise StflowError(f"min_region_fraction {self.min_region_fraction}: Fix: a "
                              "fraction of the slide in [0, 1]")
        if self.ensemble < 1:
            raise StflowError(f"ensemble {self.ensemble}: Fix: train at least 1 network")
        if self.feature_pca < 0:
            raise StflowError(f"feature_pca {self.feature_pca}: Fix: 0 (off) or a component "
                              "count")
        if self.denoiser not in DENOISERS:
            raise StflowError(f"denoiser '{self.denoiser}': unknown. Fix: use one of "
                              f"{list(DENOISERS)}")

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Parameter name → default, ``seed`` included."""
        return {f.name: f.default for f in dataclasses.fields(cls)}

    def as_dict(self) -> dict[str, Any]:
        """The settings as ``config.json`` saves them (``params``)."""
        return dataclasses.asdict(self)

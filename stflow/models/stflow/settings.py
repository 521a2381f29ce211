"""STFlow's settings: every parameter of the model and its training, declared once.

Each field carries its type, default, allowed values and help
(:func:`stflow.models.parameters.setting`); the estimator is built from it, the trainer reads
it, the workflow's config check, the search spaces and ``stflow models NAME`` derive their tables
from it, and ``config.json`` saves it as ``params``. The names are the ``model_params`` keys
of the config; the defaults are the paper's where the paper gives one. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from stflow.catalogue import VAL_FRACTION
from stflow.models.parameters import Settings, setting

PRIOR_NAMES = ("zinb", "zinb-fitted", "zero", "gaussian")
DENOISERS = ("fa", "egnn")
TARGET_SCALINGS = ("none", "standard")
RESIDUAL_BASES = ("none", "spatial_ridge")

_POSITIVE = {"low": 0, "low_open": True}
_FRACTION_OPEN = {"low": 0, "high": 1, "high_open": True}


@dataclass(frozen=True)
class STFlowSettings(Settings):
    """Every STFlow parameter (``seed`` included) and its default."""

    runs_on_device: ClassVar[bool] = True

    seed: int = setting(0, "random seed of the initial weights, regions and draws", low=0)
    prior: str = setting("zinb", "the flow's prior: ZINB, ZINB fitted per gene by MLE, zero "
                         "or Gaussian", choices=PRIOR_NAMES)
    mu: float = setting(0.2, "ZINB prior mean", **_POSITIVE)
    phi: float = setting(1.0, "ZINB prior dispersion", **_POSITIVE)
    pi: float = setting(0.5, "ZINB prior zero-inflation probability", low=0, high=1)
    flow_matching: bool = setting(True, "False: one-step regression (ablation)")
    frame_averaging: bool = setting(True, "False: raw offsets (ablation)")
    denoiser: str = setting("fa", "the denoiser network: frame-averaging transformer or EGNN",
                            choices=DENOISERS)
    k: int = setting(8, "neighbours per spot (graph.k in the workflow)", low=1)
    hidden: int = setting(128, "hidden width of the denoiser", low=1)
    layers: int = setting(4, "denoiser layers", low=1)
    heads: int = setting(4, "attention heads", low=1)
    dropout: float = setting(0.2, "dropout of the denoiser", **_FRACTION_OPEN)
    lr: float = setting(5e-4, "Adam learning rate", **_POSITIVE)
    epochs: int = setting(100, "most training epochs", low=1)
    patience: int = setting(20, "early stop after this many epochs without a better "
                            "validation score", low=1)
    steps: int = setting(5, "sampling steps (Algorithm 2)", low=1)
    n_samples: int = setting(1, "flow draws averaged per prediction", low=1)
    regions_per_slide: int = setting(8, "regions drawn from each training slide per epoch",
                                     low=1)
    regions_per_step: int = setting(4, "regions padded into one batch", low=1)
    val_fraction: float = setting(VAL_FRACTION, "held-out region when a fold has no "
                                  "validation sample; 0: none, every epoch runs (a refit)",
                                  **_FRACTION_OPEN)
    length_scale_um: float = setting(100.0, "µm the neighbour offsets are divided by (to "
                                     "order one)",
                                     **_POSITIVE)
    chunk_size: int | None = setting(8192, "spots per chunk of the denoiser (bounds memory); null: "
                                     "one chunk",
                                     low=1)
    target_scaling: str = setting("standard", "standard: per-gene standardised log1p targets",
                                  choices=TARGET_SCALINGS)
    feature_pca: int = setting(0, "whitened PCA components of the features; 0: off", low=0)
    spatial_skip: bool = setting(False, "a linear path from own and neighbour-mean features")
    weight_decay: float = setting(0.0, "decoupled (AdamW) weight decay; 0 is plain Adam",
                                  low=0)
    ema: float = setting(0.0, "decay of an exponential moving average of the weights; 0: off",
                         **_FRACTION_OPEN)
    min_steps_per_epoch: int = setting(1, "at least this many Adam steps per epoch (small "
                                       "folds)", low=1)
    ensemble: int = setting(1, "networks of consecutive seeds, averaged", low=1)
    min_region_fraction: float = setting(0.0, "training regions cover U(this, 1) of a slide",
                                         low=0, high=1)
    residual_base: str = setting("none", "spatial_ridge: the networks learn that ridge's "
                                 "residual", choices=RESIDUAL_BASES)
    base_alpha: float | None = setting(None, "the base's ridge alpha; null: chosen on "
                                       "validation", **_POSITIVE)

"""The baselines' settings: each parameter declared once, with its type, default, allowed
values and help (:func:`stflow.models.parameters.setting`). The estimators are built from
these, their ``config.json`` saves them, and the config check, the search spaces and
``stflow models NAME`` derive their tables from them. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

from stflow.models.parameters import Settings, setting

ALPHA_RULES = ("hest", "validation")  # HEST's fixed alpha, or chosen on validation
_SEED = "random seed of the PCA and the fit"
_COMPONENTS = "PCA components of the standardised features (HEST: 256)"
_ALPHA = "ridge alpha: 'hest' (HEST's fixed 100 / (components × genes), no intercept), " \
    "'validation' (chosen from a log grid on the validation spots) or a positive number"


@dataclass(frozen=True)
class PCARidgeSettings(Settings):
    """HEST-bench's linear probe: StandardScaler → PCA → Ridge."""

    seed: int = setting(0, _SEED, low=0)
    alpha: str | float = setting("hest", _ALPHA, choices=ALPHA_RULES, low=0, low_open=True)
    n_components: int = setting(256, _COMPONENTS, low=1)


@dataclass(frozen=True)
class SpatialRidgeSettings(Settings):
    """Ridge on [own features ‖ mean of k neighbours' features]."""

    seed: int = setting(0, _SEED, low=0)
    k: int = setting(8, "neighbours averaged per spot (graph.k in the workflow)", low=1)
    alpha: str | float = setting("validation", _ALPHA, choices=ALPHA_RULES, low=0,
                                 low_open=True)
    n_components: int = setting(256, _COMPONENTS, low=1)


@dataclass(frozen=True)
class RandomForestSettings(Settings):
    """scikit-learn's random forest on the PCA-projected features (the paper's 70 trees)."""

    seed: int = setting(0, _SEED, low=0)
    n_estimators: int = setting(70, "trees", low=1)
    max_depth: int = setting(16, "deepest split of a tree", low=1)
    max_features: str | int | float = setting(
        "sqrt", "features tried per split: sqrt, log2, a count or a fraction",
        choices=("sqrt", "log2"), low=0, low_open=True)
    min_samples_leaf: int = setting(1, "fewest spots in a leaf", low=1)
    n_components: int = setting(256, _COMPONENTS, low=1)
    n_jobs: int = setting(2, "worker processes (-1: every core)")


@dataclass(frozen=True)
class MLPSettings(Settings):
    """A two-layer MLP on the standardised features."""

    seed: int = setting(0, "random seed of the weights and batches", low=0)
    hidden: int = setting(256, "hidden width", low=1)
    dropout: float = setting(0.1, "dropout", low=0, high=1, high_open=True)
    lr: float = setting(1e-3, "Adam learning rate", low=0, low_open=True)
    weight_decay: float = setting(1e-4, "Adam weight decay", low=0)
    batch_size: int = setting(256, "spots per batch", low=1)
    max_epochs: int = setting(100, "most epochs", low=1)
    patience: int = setting(10, "early stop after this many epochs without a better "
                            "validation loss", low=1)

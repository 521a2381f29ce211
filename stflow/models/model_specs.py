"""The models as facts: each registry entry names its estimator class and its settings
dataclass, without torch or numpy.

The workflow checks ``model_params`` and ``search`` against the settings' declared fields
before any job (the estimators import torch and scikit-learn, far too slow and heavy for
parsing a Snakefile); the estimators are built from the same dataclasses, so a parameter is
declared once. Standard library only.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stflow.errors import StflowError
from stflow.models.baselines.baseline_settings import (
    MLPSettings,
    PCARidgeSettings,
    RandomForestSettings,
    SpatialRidgeSettings,
)
from stflow.models.parameters import Param, Settings, parameters_of
from stflow.models.stflow.settings import STFlowSettings


@dataclass(frozen=True)
class ModelSpec:
    """Where an estimator class lives, the settings it is built from, and the parameters
    this registry entry fixes."""

    target: str  # "module:Class"
    settings: type[Settings]
    fixed: dict[str, Any] = field(default_factory=dict)
    summary: str = ""

    def load_class(self) -> Callable[..., Any]:
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)


_STFLOW = "stflow.models.stflow.estimator:STFlowEstimator"
_BASE = "stflow.models.baselines"
_RIDGE = f"{_BASE}.ridge:PCARidge"
_FOREST = f"{_BASE}.forest:RandomForest"
_MLP = f"{_BASE}.mlp:MLPRegressor"
_SPATIAL_RIDGE = f"{_BASE}.spatial_ridge:SpatialRidge"

_STFLOW_ENTRY = {"target": _STFLOW, "settings": STFlowSettings}

MODELS: dict[str, ModelSpec] = {
    "stflow": ModelSpec(**_STFLOW_ENTRY,
                        summary="STFlow: flow matching, ZINB prior, frame averaging"),
    "stflow_zinb_fitted": ModelSpec(**_STFLOW_ENTRY, fixed={"prior": "zinb-fitted"},
                                    summary="STFlow with a per-gene ZINB prior fitted by MLE"),
    "stflow_zero": ModelSpec(**_STFLOW_ENTRY, fixed={"prior": "zero"},
                             summary="STFlow with the zero prior"),
    "stflow_gaussian": ModelSpec(**_STFLOW_ENTRY, fixed={"prior": "gaussian"},
                                 summary="STFlow, Gaussian prior"),
    "stflow_nofm": ModelSpec(**_STFLOW_ENTRY, fixed={"flow_matching": False},
                             summary="ablation: one-step regression (no flow matching)"),
    "stflow_nofa": ModelSpec(**_STFLOW_ENTRY, fixed={"frame_averaging": False},
                             summary="ablation: raw offsets (no frame averaging)"),
    "stflow_egnn": ModelSpec(**_STFLOW_ENTRY, fixed={"denoiser": "egnn"},
                             summary="flow matching with an EGNN"),
    "ridge_hest": ModelSpec(_RIDGE, PCARidgeSettings, {"alpha": "hest"},
                            "HEST: StandardScaler, PCA(256), Ridge with HEST's fixed alpha"),
    "ridge": ModelSpec(_RIDGE, PCARidgeSettings, {"alpha": "validation"},
                       "PCA + Ridge, alpha chosen on the validation split"),
    "rf": ModelSpec(_FOREST, RandomForestSettings, {}, "random forest, 70 trees (paper)"),
    "mlp": ModelSpec(_MLP, MLPSettings, {}, "two-layer MLP on the features"),
    "spatial_ridge": ModelSpec(_SPATIAL_RIDGE, SpatialRidgeSettings, {},
                               "ridge on [own features ‖ mean of k neighbours' features]"),
}


def parameters(model: str) -> dict[str, Param]:
    """The keyword parameters registry model ``model`` takes (``seed`` aside), from its
    settings' declared fields."""
    return {name: declared for name, declared in parameters_of(MODELS[model].settings).items()
            if name != "seed"}


def reads_graph(model: str) -> bool:
    """Whether ``model`` reads the kNN spot graph: its estimator takes the neighbour count
    ``k``. Such a model alone depends on graph/ and gets graph.k as its ``k``, so the graph
    and the model always agree and changing graph.k retrains these models only."""
    return "k" in parameters(model)


GRAPH_MODELS = frozenset(model for model in MODELS if reads_graph(model))


def describe() -> str:
    """Every registry model and what it is, a line each (``stflow models``)."""
    width = max(map(len, MODELS))
    return "\n".join(f"{name:<{width}}  {spec.summary}" for name, spec in MODELS.items())


def parameter_rows(model: str) -> str:
    """``model``'s parameters as an aligned table: name, type, default, allowed values, help,
    with the values its registry entry fixes (``stflow models MODEL``)."""
    if model not in MODELS:
        raise StflowError(f"unknown model '{model}'. Fix: use one of {list(MODELS)}")
    fixed = MODELS[model].fixed
    rows = [("parameter", "type", "default", "allowed", "meaning")]
    for name, declared in parameters(model).items():
        default = f"{fixed[name]!r} (fixed)" if name in fixed else repr(declared.default)
        rows.append((name, declared.kind, default, declared.allowed, declared.help))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join([*(cell.ljust(w) for cell, w in zip(row[:4], widths,
                                                                  strict=True)), row[4]])
                     for row in rows)

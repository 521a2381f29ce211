"""The models as facts: registry entries and each model's parameters, without torch or numpy.

The workflow checks ``model_params`` and ``search`` against these before any job (the
estimators import torch and scikit-learn, far too slow and heavy for parsing a Snakefile),
and the registry converts ``model_params`` with the same :func:`coerce`. The defaults here
must equal the estimators' own (``STFlowSettings``, the baselines' ``__init__``):
tests/test_catalogue.py compares them for every registry model, so they cannot drift.

Standard library only.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stflow.catalogue import VAL_FRACTION
from stflow.config import spelled

PRIOR_NAMES = ("zinb", "zinb-fitted", "zero", "gaussian")
DENOISERS = ("fa", "egnn")
TARGET_SCALINGS = ("none", "standard")
RESIDUAL_BASES = ("none", "spatial_ridge")
ALPHA_RULES = ("hest", "validation")  # PCARidge: HEST's fixed alpha, or chosen on validation


@dataclass(frozen=True)
class ModelSpec:
    """Where an estimator class lives and the parameters this registry entry fixes."""

    target: str  # "module:Class"
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

MODELS: dict[str, ModelSpec] = {
    "stflow": ModelSpec(_STFLOW, {}, "STFlow: flow matching, ZINB prior, frame averaging"),
    "stflow_zinb_fitted": ModelSpec(_STFLOW, {"prior": "zinb-fitted"},
                                    "STFlow with a per-gene ZINB prior fitted by MLE"),
    "stflow_zero": ModelSpec(_STFLOW, {"prior": "zero"}, "STFlow with the zero prior"),
    "stflow_gaussian": ModelSpec(_STFLOW, {"prior": "gaussian"}, "STFlow, Gaussian prior"),
    "stflow_nofm": ModelSpec(_STFLOW, {"flow_matching": False},
                             "ablation: one-step regression (no flow matching)"),
    "stflow_nofa": ModelSpec(_STFLOW, {"frame_averaging": False},
                             "ablation: raw offsets (no frame averaging)"),
    "stflow_egnn": ModelSpec(_STFLOW, {"denoiser": "egnn"}, "flow matching with an EGNN"),
    "ridge_hest": ModelSpec(_RIDGE, {"alpha": "hest"},
                            "HEST: StandardScaler, PCA(256), Ridge with HEST's fixed alpha"),
    "ridge": ModelSpec(_RIDGE, {"alpha": "validation"},
                       "PCA + Ridge, alpha chosen on the validation split"),
    "rf": ModelSpec(_FOREST, {}, "random forest, 70 trees (paper)"),
    "mlp": ModelSpec(_MLP, {}, "two-layer MLP on the features"),
    "spatial_ridge": ModelSpec(_SPATIAL_RIDGE, {},
                               "ridge on [own features ‖ mean of k neighbours' features]"),
}


@dataclass(frozen=True)
class Param:
    """One keyword parameter: its default, the types it takes, and its allowed values.

    ``choices`` are the strings a parameter takes (beside numbers where ``types`` has them);
    no ``types`` takes anything (a model outside the catalogue, such as a test's);
    ``low``/``high`` bound numbers, inclusively unless ``low_open``/``high_open``.
    """

    default: Any
    types: tuple[type, ...]
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    @property
    def kind(self) -> str:
        """The types as a person reads them: ``int``, ``float or null``, ..."""
        return " or ".join("null" if t is type(None) else t.__name__ for t in self.types)

    @property
    def allowed(self) -> str:
        """The allowed values in words, for a Fix."""
        parts = [f"one of {list(self.choices)}"] if self.choices else []
        if self.low is not None or self.high is not None:
            low = "" if self.low is None else f"{self.low} {'<' if self.low_open else '<='} "
            high = "" if self.high is None else f" {'<' if self.high_open else '<='} {self.high}"
            parts.append(f"a {'number' if float in self.types else 'whole number'} "
                         f"{low}x{high}")
        return " or ".join(parts) or f"a {self.kind}"


def _int(default: int | None, low: float | None = 1, **kw: Any) -> Param:
    types = (int,) if default is not None else (int, type(None))
    return Param(default, types, low=low, **kw)


def _float(default: float | None, low: float | None = 0, **kw: Any) -> Param:
    types = (float,) if default is not None else (float, type(None))
    return Param(default, types, low=low, **kw)


def _choice(default: str, choices: tuple[str, ...]) -> Param:
    return Param(default, (str,), choices=choices)


_BOOL_TRUE = Param(True, (bool,))
_BOOL_FALSE = Param(False, (bool,))
_FRACTION_OPEN = {"low": 0, "high": 1, "high_open": True}

STFLOW_PARAMS: dict[str, Param] = {
    "prior": _choice("zinb", PRIOR_NAMES),
    "mu": _float(0.2, low_open=True),
    "phi": _float(1.0, low_open=True),
    "pi": _float(0.5, high=1),
    "flow_matching": _BOOL_TRUE,
    "frame_averaging": _BOOL_TRUE,
    "denoiser": _choice("fa", DENOISERS),
    "k": _int(8),
    "hidden": _int(128),
    "layers": _int(4),
    "heads": _int(4),
    "dropout": _float(0.2, **_FRACTION_OPEN),
    "lr": _float(5e-4, low_open=True),
    "epochs": _int(100),
    "patience": _int(20),
    "steps": _int(5),
    "n_samples": _int(1),
    "regions_per_slide": _int(8),
    "regions_per_step": _int(4),
    "val_fraction": _float(VAL_FRACTION, low_open=True, high=1, high_open=True),
    "length_scale_um": _float(100.0, low_open=True),
    "chunk_size": _int(8192),
    "target_scaling": _choice("standard", TARGET_SCALINGS),
    "feature_pca": _int(0, low=0),
    "spatial_skip": _BOOL_FALSE,
    "weight_decay": _float(0.0),
    "ema": _float(0.0, **_FRACTION_OPEN),
    "min_steps_per_epoch": _int(1),
    "ensemble": _int(1),
    "min_region_fraction": _float(0.0, high=1),
    "residual_base": _choice("none", RESIDUAL_BASES),
    "base_alpha": _float(None, low_open=True),
    "device": Param("auto", (str,)),  # where to run; the workflow sets it from `device`
}
_RIDGE_PARAMS: dict[str, Param] = {
    "alpha": Param("hest", (str, float), choices=ALPHA_RULES, low=0, low_open=True),
    "n_components": _int(256),
}
PARAMETERS: dict[str, dict[str, Param]] = {
    _STFLOW: STFLOW_PARAMS,
    _RIDGE: _RIDGE_PARAMS,
    _SPATIAL_RIDGE: {"k": _int(8), **_RIDGE_PARAMS,
                     "alpha": Param("validation", (str, float), choices=ALPHA_RULES, low=0,
                                    low_open=True)},
    _FOREST: {"n_estimators": _int(70), "max_depth": _int(16),
              "max_features": Param("sqrt", (str, int, float), choices=("sqrt", "log2"),
                                    low=0, low_open=True),
              "min_samples_leaf": _int(1), "n_components": _int(256), "n_jobs": _int(2, low=None)},
    _MLP: {"hidden": _int(256), "dropout": _float(0.1, **_FRACTION_OPEN),
           "lr": _float(1e-3, low_open=True), "weight_decay": _float(1e-4),
           "batch_size": _int(256), "max_epochs": _int(100), "patience": _int(10)},
}


def parameters(model: str) -> dict[str, Param]:
    """The keyword parameters registry model ``model`` takes (``seed`` aside)."""
    return PARAMETERS[MODELS[model].target]


def reads_graph(model: str) -> bool:
    """Whether ``model`` reads the kNN spot graph: its estimator takes the neighbour count
    ``k``. Such a model alone depends on graph/ and gets graph.k as its ``k``, so the graph
    and the model always agree and changing graph.k retrains these models only."""
    return "k" in parameters(model)


GRAPH_MODELS = frozenset(model for model in MODELS if reads_graph(model))


def coerce(key: str, value: Any, param: Param) -> Any:
    """``value`` as one of ``param``'s types, or ValueError naming ``key``.

    Snakemake's ``--config`` hands nested values over as strings ("100"), so a string that
    spells a value of the right type is converted; an int is taken where a float is wanted.
    """
    types = param.types
    if not types:
        return value  # a parameter of any type (outside the catalogue)
    if value is None and type(None) in types:
        return None
    if isinstance(value, bool):
        if bool in types:
            return value
    elif isinstance(value, int):
        if int in types:
            return value
        if float in types:
            return float(value)
    elif isinstance(value, float):
        if float in types:
            return value
    elif isinstance(value, str):
        if str in types and (not param.choices or value in param.choices):
            return value
        for kind in (t for t in types if t is not str):
            try:
                return spelled(value, kind)
            except ValueError:
                continue
        if str in types:
            return value  # a string the choices refuse, by name (see problems)
    raise ValueError(f"parameter {key}={value!r} should be {param.kind}. Fix: give {key} "
                     f"as a {param.kind} (default {param.default!r})")


def value_problem(value: Any, param: Param) -> str | None:
    """Why a coerced ``value`` is not allowed (a choice or range), or None."""
    if isinstance(value, str) and str in param.types:
        if param.choices and value not in param.choices:
            return f"'{value}' is not one of {list(param.choices)}"
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if param.low is not None and (value < param.low or (param.low_open and value == param.low)):
        return f"{value} is {'<=' if param.low_open else '<'} {param.low}"
    if param.high is not None and (value > param.high
                                   or (param.high_open and value == param.high)):
        return f"{value} is {'>=' if param.high_open else '>'} {param.high}"
    return None


def check_value(key: str, value: Any, param: Param) -> tuple[Any, tuple[str, str] | None]:
    """(the coerced value, None), or (``value``, (the problem, its fix)) where it is refused."""
    try:
        value = coerce(key, value, param)
    except ValueError:
        return value, (f"{value!r} should be {param.kind}",
                       f"give {key} as a {param.kind} (default {param.default!r})")
    problem = value_problem(value, param)
    if problem:
        return value, (problem, f"use {param.allowed} (default {param.default!r})")
    return value, None


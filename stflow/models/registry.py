"""The model registry: a name in the config → an estimator with fit / predict / save / load.

STFlow, its ablations and the baselines all take lists of :class:`stflow.data.dataset.Slide`
and return one (N, G) log1p prediction per slide, so training, prediction and evaluation
treat them alike. Adding a model is one entry here.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from stflow.atomic import read_json, write_json
from stflow.data.dataset import Slide
from stflow.errors import StflowError, input_error


class Estimator(Protocol):
    """What the pipeline needs of a model."""

    def fit(self, train: list[Slide], val: list[Slide]) -> list[dict[str, float]]:
        """Train; return the per-epoch (or single) log rows, e.g. loss and val Pearson."""

    def predict(self, slides: list[Slide]) -> list[np.ndarray]:
        """One (N, G) log1p prediction per slide."""

    def save(self, directory: Path) -> None:
        """Write everything ``load`` needs into ``directory``."""


@dataclass(frozen=True)
class ModelSpec:
    """Where an estimator class lives and the parameters this registry entry fixes."""

    target: str  # "module:Class"
    fixed: dict[str, Any] = field(default_factory=dict)
    summary: str = ""

    def load_class(self) -> Callable[..., Estimator]:
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)


_STFLOW = "stflow.models.stflow.estimator:STFlowEstimator"
_BASE = "stflow.models.baselines"

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
    "ridge_hest": ModelSpec(f"{_BASE}.ridge:PCARidge", {"alpha": "hest"},
                            "HEST: StandardScaler, PCA(256), Ridge with HEST's fixed alpha"),
    "ridge": ModelSpec(f"{_BASE}.ridge:PCARidge", {"alpha": "validation"},
                       "PCA + Ridge, alpha chosen on the validation split"),
    "rf": ModelSpec(f"{_BASE}.forest:RandomForest", {}, "random forest, 70 trees (paper)"),
    "mlp": ModelSpec(f"{_BASE}.mlp:MLPRegressor", {}, "two-layer MLP on the features"),
    "spatial_ridge": ModelSpec(f"{_BASE}.spatial_ridge:SpatialRidge", {},
                               "ridge on [own features ‖ mean of k neighbours' features]"),
}


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise StflowError(f"unknown model '{name}'. Fix: use one of {sorted(MODELS)}")
    return MODELS[name]


def _coerce(model: str, key: str, value: Any, default: Any) -> Any:
    """``value`` as the type of ``default`` (bool, int or float); other parameters pass as is.

    Snakemake's ``--config`` hands nested values over as strings ("100"), so a string that
    spells a value of the right type is converted; anything else is refused by name.
    """
    kind = type(default)
    if value is None or kind not in (bool, int, float):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        try:
            if kind is bool and text in ("true", "false"):
                return text == "true"
            if kind is int:
                return int(text)
            if kind is float:
                return float(text)
        except ValueError:
            pass
    elif isinstance(value, bool) == (kind is bool) and (
            isinstance(value, kind) or (kind is float and isinstance(value, int))):
        return kind(value)
    raise StflowError(f"model '{model}': parameter {key}={value!r} should be {kind.__name__}. "
                      f"Fix: give {key} as a {kind.__name__} (default {default!r})")


def init_parameters(cls: type) -> dict[str, Any]:
    """The keyword parameters of ``cls`` (besides ``seed``) and their defaults: the fields
    of its ``SETTINGS`` dataclass plus ``device`` (STFlow), else its ``__init__`` keywords
    (the baselines, whose signature is their one definition)."""
    settings = getattr(cls, "SETTINGS", None)
    if settings is not None:
        return {**{k: v for k, v in settings.defaults().items() if k != "seed"},
                "device": "auto"}
    return {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
            if k not in ("self", "seed") and p.kind in (p.POSITIONAL_OR_KEYWORD,
                                                          p.KEYWORD_ONLY)}


def check_params(model: str, cls: type, params: dict[str, Any]) -> dict[str, Any]:
    """Refuse parameters ``cls`` does not take; convert the rest to the defaults' types."""
    accepted = init_parameters(cls)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise StflowError(f"model '{model}': unknown parameters {unknown}. "
                          f"Fix: use only {sorted(accepted)} in model_params.{model}")
    return {k: _coerce(model, k, v, accepted[k]) for k, v in params.items()}


def build_estimator(name: str, params: dict[str, Any] | None = None, seed: int = 0,
                    device: str | None = None) -> Estimator:
    """Instantiate model ``name`` with user ``params`` on top of the entry's fixed ones.

    ``device`` (where to run, not a model setting) goes to the estimators that take one,
    unless ``params`` names a device itself.
    """
    spec = get_spec(name)
    cls = spec.load_class()
    params = {**(params or {}), **spec.fixed}
    if device is not None and "device" in init_parameters(cls):
        params.setdefault("device", device)
    return cls(seed=seed, **check_params(name, cls, params))


def save_estimator(name: str, estimator: Estimator, directory: str | Path) -> None:
    """Save an estimator with a small manifest naming its registry entry."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    estimator.save(directory)
    write_json({"model": name}, directory / "manifest.json")


def load_estimator(directory: str | Path, device: str | None = None) -> Estimator:
    """Load what :func:`save_estimator` wrote, onto ``device`` where the class takes one
    (a model trained on cuda must load on a CPU node)."""
    load = get_spec(trained_model_name(directory)).load_class().load
    if device is not None and "device" in inspect.signature(load).parameters:
        return load(directory, device=device)
    return load(directory)


def trained_model_name(directory: str | Path) -> str:
    """The registry name recorded in a trained model folder's manifest.json."""
    manifest = read_json(Path(directory) / "manifest.json", "model manifest",
                         "run the train stage for this model and fold")
    if not isinstance(manifest, dict) or "model" not in manifest:
        raise input_error(Path(directory) / "manifest.json", "names no model",
                          "re-run the train stage for this model and fold")
    return str(manifest["model"])

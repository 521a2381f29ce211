"""The model registry: a name in the config → an estimator with fit / predict / save / load.

STFlow, its ablations and the baselines all take lists of :class:`stflow.data.dataset.Slide`
and return one (N, G) log1p prediction per slide, so training, prediction and evaluation
treat them alike. Adding a model is one entry in :mod:`stflow.models.catalogue` (its
registry entry and parameters, light enough for the workflow to check a config with).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from stflow.atomic import read_json, write_json
from stflow.data.dataset import Slide
from stflow.errors import StflowError, input_error
from stflow.models.capabilities import Capabilities
from stflow.models.catalogue import MODELS, PARAMETERS, ModelSpec, Param, coerce, parameters

__all__ = ["MODELS", "Estimator", "ModelSpec", "build_estimator", "check_params", "get_spec",
           "init_parameters", "load_estimator", "model_parameters", "save_estimator", "trained_model_name"]


class Estimator(Protocol):
    """What the pipeline needs of a model; what it may do besides, it declares
    (:class:`stflow.models.capabilities.Capabilities`, which its class subclasses)."""

    reports_epochs: bool
    fits_on_validation: bool
    refits: bool
    draws: bool

    def fit(self, train: list[Slide], val: list[Slide]) -> list[dict[str, float]]:
        """Train; return the per-epoch (or single) log rows, e.g. loss and val Pearson."""

    def predict(self, slides: list[Slide]) -> list[np.ndarray]:
        """One (N, G) log1p prediction per slide."""

    def save(self, directory: Path) -> None:
        """Write everything ``load`` needs into ``directory``."""


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise StflowError(f"unknown model '{name}'. Fix: use one of {sorted(MODELS)}")
    return MODELS[name]


def estimator_class(name: str) -> type:
    """The class of registry entry ``name``, which declares its capabilities."""
    cls = get_spec(name).load_class()
    if not (isinstance(cls, type) and issubclass(cls, Capabilities)):
        raise StflowError(f"model '{name}': {cls!r} does not declare its capabilities. Fix: "
                          "subclass stflow.models.capabilities.Capabilities")
    return cls


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


def model_parameters(model: str, cls: type | None = None) -> dict[str, Param]:
    """The catalogue's parameters of ``model``; for a model outside it (a test's), ones made
    from its class's defaults, typed where the default is a bool, int or float."""
    spec = get_spec(model)
    if spec.target in PARAMETERS:
        return parameters(model)
    defaults = init_parameters(cls or spec.load_class())
    return {name: Param(default, (type(default),) if type(default) in (bool, int, float)
                        else ()) for name, default in defaults.items()}


def check_params(model: str, cls: type, params: dict[str, Any]) -> dict[str, Any]:
    """Refuse parameters ``cls`` does not take; convert the rest to the defaults' types."""
    accepted = init_parameters(cls)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise StflowError(f"model '{model}': unknown parameters {unknown}. "
                          f"Fix: use only {sorted(accepted)} in model_params.{model}")
    known = model_parameters(model, cls)
    checked = {}
    for key, value in params.items():
        try:
            checked[key] = coerce(key, value, known[key])
        except ValueError as err:
            raise StflowError(f"model '{model}': {err}") from err
    return checked


def build_estimator(name: str, params: dict[str, Any] | None = None, seed: int = 0,
                    device: str | None = None) -> Estimator:
    """Instantiate model ``name`` with user ``params`` on top of the entry's fixed ones.

    ``device`` (where to run, not a model setting) goes to the estimators that take one,
    unless ``params`` names a device itself.
    """
    spec = get_spec(name)
    cls = estimator_class(name)
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
    load = estimator_class(trained_model_name(directory)).load
    if device is not None and "device" in inspect.signature(load).parameters:
        return load(directory, device=device)
    return load(directory)


def trained_model_name(directory: str | Path) -> str:
    """The registry name recorded in a trained model folder's manifest.json."""
    manifest = read_json(Path(directory) / "manifest.json", "model manifest",
                         "run the train stage for this model and fold")
    name = manifest.get("model") if isinstance(manifest, dict) else None
    if not isinstance(name, str) or name not in MODELS:  # not str(): null would read "None"
        raise input_error(Path(directory) / "manifest.json", f"names no model of this stflow "
                          f"({name!r}; it knows {sorted(MODELS)})",
                          "re-run the train stage for this model and fold")
    return name

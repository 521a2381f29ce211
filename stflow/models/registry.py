"""The model registry: a name in the config → an estimator with fit / predict / save / load.

STFlow, its ablations and the baselines all take lists of :class:`stflow.data.dataset.Slide`
and return one (N, G) log1p prediction per slide, so training, prediction and evaluation
treat them alike. Adding a model is its estimator class, its settings dataclass (each
parameter declared once, :mod:`stflow.models.parameters`) and one entry in
:mod:`stflow.models.model_specs`, light enough for the workflow to check a config with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from stflow.atomic import read_json, write_json
from stflow.data.dataset import Slide
from stflow.errors import StflowError, input_error
from stflow.models.capabilities import Capabilities
from stflow.models.model_specs import MODELS, ModelSpec, parameters
from stflow.models.parameters import coerce

__all__ = ["MODELS", "Estimator", "ModelSpec", "build_estimator", "check_params", "get_spec",
           "load_estimator", "save_estimator", "trained_model_name"]


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


def check_params(model: str, params: dict[str, Any]) -> dict[str, Any]:
    """Refuse parameters ``model``'s settings do not declare; convert the rest to their
    declared types (the estimator's settings then check their values)."""
    accepted = parameters(model)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise StflowError(f"model '{model}': unknown parameters {unknown}. "
                          f"Fix: use only {sorted(accepted)} in model_params.{model}")
    checked = {}
    for key, value in params.items():
        try:
            checked[key] = coerce(key, value, accepted[key])
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
    if device is not None and spec.settings.runs_on_device:
        params.setdefault("device", device)
    return cls(seed=seed, **check_params(name, params))


def save_estimator(name: str, estimator: Estimator, directory: str | Path) -> None:
    """Save an estimator with a small manifest naming its registry entry."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    estimator.save(directory)
    write_json({"model": name}, directory / "manifest.json")


def load_estimator(directory: str | Path, device: str | None = None) -> Estimator:
    """Load what :func:`save_estimator` wrote, onto ``device`` where the model runs on one
    (a model trained on cuda must load on a CPU node)."""
    name = trained_model_name(directory)
    load = estimator_class(name).load
    if device is not None and get_spec(name).settings.runs_on_device:
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

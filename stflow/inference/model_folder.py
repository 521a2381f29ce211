"""A trained model folder opened to predict with: the one loader that a fold's predictions
(:mod:`stflow.crossval.predict`) and predict-slide (:mod:`stflow.deploy.predict_slide`) share.

It checks the folder is the model the caller means (``deploy.json`` and the encoder asked
for; ``params.json`` against the genes and features a fold predicts from), that its files
are those recorded when it was written, loads the estimator onto the device, and reads its
interval calibration (a folder saved before calibration existed predicts without intervals,
said once here).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stflow.atomic import read_json
from stflow.data.loading import features_identity
from stflow.errors import input_error
from stflow.intervals.calibration import RECALIBRATE, Calibration, load_calibration
from stflow.models.registry import Estimator, load_estimator, trained_model_name
from stflow.records.deployment import Deployment, read_deployment
from stflow.verify import check_recorded

log = logging.getLogger(__name__)

RETRAIN = "re-run the train stage"


@dataclass(frozen=True)
class TrainedOn:
    """What a fold's prediction reads, refused unless the model was trained on it: the
    genes (and the genes.json they came from) and the features of ``samples``."""

    genes_path: Path
    genes: list[str]
    features_dir: Path
    samples: list[str]


@dataclass
class ModelFolder:
    """A loaded model folder: its estimator, calibration and the records checked."""

    path: Path
    model: str  # the registry name (manifest.json)
    estimator: Estimator
    calibration: Calibration | None
    deployment: Deployment | None  # deploy.json, when the caller deploys the model
    trained_on: TrainedOn | None  # a fold's inputs, checked against params.json
    params: dict[str, Any] | None  # params.json, when checked against them


def open_model_folder(model_dir: str | Path, *, device: str = "auto",
                      deployable: bool = False, encoder: str | None = None,
                      trained_on: Callable[[], TrainedOn] | None = None) -> ModelFolder:
    """Check and load ``model_dir`` onto ``device``.

    ``deployable``: read and check its ``deploy.json`` first, and refuse a model trained on
    another encoder than ``encoder`` (None: any). ``trained_on()``: the inputs a fold
    predicts from, read once the folder's files are known to be whole, refused when its
    ``params.json`` records other genes or features.
    """
    model_dir = Path(model_dir)
    deployment = read_deployment(model_dir) if deployable else None
    if deployment is not None and encoder is not None and encoder != deployment.encoder:
        raise input_error(model_dir, f"was trained on '{deployment.encoder}' features, not on "
                          f"'{encoder}'", f"use --encoder {deployment.encoder} (or leave it "
                          "out), or a model trained on the encoder you want")
    check_recorded(model_dir)
    inputs = None if trained_on is None else trained_on()
    params = None if inputs is None else check_trained_with(model_dir, inputs)
    try:
        estimator = load_estimator(model_dir, device=device)
    except (OSError, KeyError, RuntimeError) as err:
        raise input_error(model_dir, f"model files are incomplete or damaged ({err})",
                          f"{RETRAIN} for this model") from err
    calibration = load_calibration(model_dir)
    if calibration is None:
        log.warning("%s has no interval calibration (it could not be calibrated): its "
                    "predictions carry no intervals or shift flag. Fix: %s", model_dir,
                    RECALIBRATE)
    return ModelFolder(model_dir, trained_model_name(model_dir), estimator, calibration,
                       deployment, inputs, params)


def check_trained_with(model_dir: Path, inputs: TrainedOn) -> dict[str, Any]:
    """Refuse to predict with other genes or other features than the model was trained on;
    return the model's params.json."""
    params_path = model_dir / "params.json"
    trained = read_json(params_path, "model parameters", RETRAIN)
    if not isinstance(trained, dict):
        raise input_error(params_path, "is not a JSON object", RETRAIN)
    if "genes" in trained and not (isinstance(trained["genes"], list) and all(
            isinstance(g, str) for g in trained["genes"])):  # str() would pass 5 or null on
        raise input_error(params_path, "genes is not a list of gene names", RETRAIN)
    genes = inputs.genes
    if "genes" in trained and trained["genes"] != genes:
        raise input_error(inputs.genes_path, f"lists {len(genes)} genes that differ from the "
                          f"{len(trained['genes'])} the model was trained on ({params_path})",
                          "re-run train with this genes.json, or predict with the genes.json "
                          "the model was trained on")
    if "features" in trained:
        found = features_identity(inputs.features_dir, inputs.samples)
        if found != trained["features"]:
            raise input_error(inputs.features_dir, f"features made by {found}, but the model "
                              f"was trained on {trained['features']} ({params_path})",
                              "re-run train on these features, or predict from the features "
                              "the model was trained on")
    return trained

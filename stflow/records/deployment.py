"""``deploy.json``: what applying a trained model to a new slide needs, kept in its folder.

A model folder (``models/{encoder}/{model}/{fold|final}``) then suffices on its own: the
target genes, the encoder and the checksum of its weights, the physical patch window and its
pixel size, the tissue filter, the graph's k, and the spot pitch and lattice of the training
data. Feature normalisation and the prior live in the model's own files (``model.pt``).
A folder without this file or with an unknown format version is refused.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from stflow import __version__, layout
from stflow.atomic import read_json, write_json
from stflow.choices import MIN_TISSUE
from stflow.data.dataset import Slide
from stflow.data.spot_layout import LAYOUTS, SpotLayout, measure_layout
from stflow.errors import check_field_types, input_error

log = logging.getLogger(__name__)

DEPLOY_FILE = "deploy.json"
DEPLOY_FORMAT = "stflow-deploy"
DEPLOY_VERSION = 1
RETRAIN = ("re-run the train stage (or the workflow's train_final target) with this version "
           "of stflow; it writes deploy.json into the model folder")


@dataclass(frozen=True)
class Deployment:
    """A trained model's identity and the settings its inputs were made with."""

    model: str
    genes: list[str]
    encoder: str
    weights_sha256: str
    feature_dim: int
    patch_size_um: float
    patch_size_px: int
    min_tissue: float
    graph_k: int
    pitch_um: float
    layout: str
    trained_on: list[str]
    fold: str

    @property
    def spots(self) -> SpotLayout:
        return SpotLayout(self.pitch_um, self.layout)

    def record(self) -> dict[str, Any]:
        """The contents of deploy.json."""
        return {"format": DEPLOY_FORMAT, "version": DEPLOY_VERSION,
                "stflow_version": __version__, **asdict(self)}


def patch_settings(patch_files: Sequence[Path]) -> tuple[float, int, float] | None:
    """(size_um, size_px, min_tissue) shared by the training patch files, or None.

    None (with a warning) when a file is missing or they disagree: the model is then not
    deployable, which predict-slide says when asked.
    """
    found = set()
    for path in patch_files:
        if not Path(path).is_file():
            log.warning("%s is missing: deploy.json is not written (predict-slide will refuse "
                        "this model)", path)
            return None
        with h5py.File(path, "r") as h5:
            attrs = h5.attrs
            found.add((round(float(attrs["patch_size_um"]), 6), int(attrs["patch_size_px"]),
                       float(attrs.get("min_tissue", MIN_TISSUE))))
    if len(found) != 1:
        log.warning("training patches differ in size or tissue filter (%s): deploy.json is not "
                    "written", sorted(found))
        return None
    return found.pop()


def graph_k(graph_dir: Path | None, samples: Sequence[str], params: dict[str, Any]) -> int:
    """The k of the training graphs (graph/{sample}.npz), else the model's own k, else 8."""
    if graph_dir is not None:
        path = Path(graph_dir) / f"{samples[0]}.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as data:
                if "k" in data.files:
                    return int(data["k"])
                return int(data["neighbors"].shape[1])
    return int(params.get("k", 8))


def describe_training(model: str, genes: list[str], features: dict[str, Any],
                      slides: Sequence[Slide], features_dir: str | Path,
                      graph_dir: str | Path | None, params: dict[str, Any] | None, fold: str,
                      patches_dir: str | Path | None = None) -> Deployment | None:
    """The deployment record of a model trained on ``slides`` (None if it cannot be known).

    The patch window comes from the training patch files (``patches_dir``, by default
    results/{dataset}/patches beside the features), the spot pitch and lattice from the
    training coordinates.
    """
    samples = [s.sample for s in slides]
    patches_dir = Path(patches_dir) if patches_dir is not None else \
        default_patches_dir(features_dir)
    settings = patch_settings([patches_dir / f"{s}.h5" for s in samples])
    if settings is None:
        return None
    if not features.get("encoder") or not features.get("weights_sha256"):
        log.warning("the features name no encoder/weights: deploy.json is not written")
        return None
    size_um, size_px, min_tissue = settings
    spots = measure_layout([s.coords_um for s in slides])
    graph = Path(graph_dir) if graph_dir is not None else None
    return Deployment(model=model, genes=list(genes), encoder=str(features["encoder"]),
                      weights_sha256=str(features["weights_sha256"]),
                      feature_dim=int(slides[0].features.shape[1]),
                      patch_size_um=float(size_um), patch_size_px=int(size_px),
                      min_tissue=float(min_tissue),
                      graph_k=graph_k(graph, samples, params or {}),
                      pitch_um=round(spots.pitch_um, 3), layout=spots.layout,
                      trained_on=samples, fold=fold)


def write_deployment(directory: Path, deployment: Deployment | None) -> None:
    """Write deploy.json into a model folder being assembled (nothing when not deployable)."""
    if deployment is not None:
        write_json(deployment.record(), Path(directory) / DEPLOY_FILE)


def default_patches_dir(features_dir: str | Path) -> Path:
    """results/{dataset}/patches beside results/{dataset}/features/{encoder}
    (stflow.layout)."""
    depth = layout.ENCODER_FEATURES.count("/") + 1  # features/{encoder}: two folders up
    return Path(features_dir).resolve().parents[depth - 1] / layout.PATCHES_DIR


def read_deployment(model_dir: str | Path) -> Deployment:
    """The deploy.json of a model folder, checked: missing, old or damaged ones are refused."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise input_error(model_dir, "model folder does not exist",
                          "pass a folder written by `stflow train` or `stflow train-final` "
                          "(results/{dataset}/models/{encoder}/{model}/final)")
    path = model_dir / DEPLOY_FILE
    if not path.is_file():
        raise input_error(model_dir, f"has no {DEPLOY_FILE}: it is incomplete or was not "
                          "written by `stflow train`, so the encoder, patch size and spot "
                          "layout it needs are unknown", RETRAIN)
    record = read_json(path, "deployment record", RETRAIN)
    if not isinstance(record, dict) or record.get("format") != DEPLOY_FORMAT:
        raise input_error(path, "is not an stflow deployment record", RETRAIN)
    if record.get("version") != DEPLOY_VERSION:
        raise input_error(path, f"has format version {record.get('version')!r}; this stflow "
                          f"({__version__}) reads version {DEPLOY_VERSION}", RETRAIN)
    fields = Deployment.__dataclass_fields__
    missing = [name for name in fields if name not in record]
    if missing:
        raise input_error(path, f"lacks {missing}", RETRAIN)
    deployment = Deployment(**{name: record[name] for name in fields})
    check_field_types(deployment, str(path))  # "100" or 4.5 would reach the stages as such
    if not _valid(deployment):
        raise input_error(path, "holds invalid values (layout, pitch, patch size, k or genes)",
                          RETRAIN)
    return deployment


def _valid(deployment: Deployment) -> bool:
    """Whether the record's values (its types checked) can rebuild the model's inputs:
    positive finite sizes, a tissue fraction, a known spot layout, named genes and samples."""
    lists = (deployment.genes, deployment.trained_on)
    return (deployment.layout in LAYOUTS
            and all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in lists)
            and len(deployment.genes) > 0 and 0 <= deployment.min_tissue <= 1
            and all(math.isfinite(v) and v > 0 for v in (
                deployment.pitch_um, deployment.patch_size_um, deployment.patch_size_px,
                deployment.graph_k, deployment.feature_dim)))

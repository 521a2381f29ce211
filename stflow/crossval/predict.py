"""The predict stage: a trained fold model predicts its fold's test sections into h5ad files
that scanpy/squidpy plot directly, with the model's calibrated intervals and shift flag."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stflow.atomic import atomic_output
from stflow.crossval.inputs import read_fold
from stflow.data.dataset import Slide
from stflow.data.loading import (
    features_identity,
    load_slides,
    read_biomarkers,
    read_gene_scope,
    read_genes,
)
from stflow.data.spatial_image import sample_spatial
from stflow.errors import check_finite, check_shape, input_error
from stflow.inference.model_folder import TrainedOn, open_model_folder
from stflow.inference.prediction_anndata import ModelGraph, prediction_anndata, write_prediction
from stflow.intervals.calibration import SpotIntervals, apply_calibration
from stflow.intervals.conformal import DEFAULT_LEVEL, check_level
from stflow.layout import GRAPH
from stflow.provenance import X_PREDICTED, stflow_uns

log = logging.getLogger(__name__)


def spot_records(slide: Slide, st_path: str | Path
                 ) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[str, Any] | None]:
    """The ingested obs and obsm (spatial, spatial_um) of the slide's spots, and scanpy's
    ``uns["spatial"]`` image of the sample (None without an H&E)."""
    import anndata as ad

    source = ad.read_h5ad(st_path, backed="r")  # obs and obsm only: the counts stay on disk
    try:
        index = source.obs_names.get_indexer(slide.barcodes)
        if (index < 0).any():
            raise input_error(st_path, "some feature barcodes are not in the ingested sample",
                              "re-run patches and embed for this sample")
        obs = source.obs.iloc[index].copy()
        obsm = {key: np.asarray(source.obsm[key])[index]
                for key in ("spatial", "spatial_um") if key in source.obsm}
        image_path, mpp = source.uns.get("image_path"), source.uns.get("mpp")
    finally:
        source.file.close()
    spatial = sample_spatial(image_path, mpp, obsm.get("spatial", np.zeros((0, 2))), slide.sample)
    return obs, obsm, spatial


def write_fold_prediction(path: str | Path, slide: Slide, prediction: np.ndarray,
                          genes: list[str], st_path: str | Path, identity: dict[str, Any],
                          intervals: SpotIntervals | None = None) -> Path:
    """Write the prediction of one slide as an h5ad carrying the ingested obs/obsm of its
    spots, its truth, the graph the model read (squidpy's obsp layout) and, when the model
    is calibrated, its intervals and shift flag. ``identity``: model, encoder,
    weights_sha256, seed, fold, gene_scope (and biomarkers, the genes outside the benchmark)."""
    where = f"prediction of {identity.get('model')} for sample {slide.sample}"
    prediction = np.asarray(prediction, dtype=np.float32)
    check_shape(prediction, "prediction", (slide.n_spots, len(genes)), where)
    check_finite(prediction, "prediction", where)
    obs, obsm, spatial = spot_records(slide, st_path)
    arrays = {"X": prediction}
    if slide.targets is not None:
        arrays["truth"] = slide.targets.astype(np.float32)
    if intervals is not None:
        arrays.update(intervals.layers())
        for name, column in intervals.obs_columns().items():
            obs[name] = column
    graph = None if slide.neighbors is None else ModelGraph(slide.neighbors, slide.coords_um,
                                                            GRAPH)
    rest = prediction_anndata(
        genes, obs, obsm, stflow_uns("prediction", slide.sample, X_PREDICTED, **identity),
        intervals=None if intervals is None else intervals.uns_info(),
        quantiles=None if intervals is None else intervals.quantiles, graph=graph,
        spatial=spatial, sample=slide.sample)
    return write_prediction(path, slide.n_spots, [(slice(0, slide.n_spots), arrays)],
                            lambda: rest)


def predict_fold(model_dir: str | Path, *, splits: str | Path, fold: str, genes: str | Path,
                 st_dir: str | Path, features_dir: str | Path, graph_dir: str | Path | None,
                 out_dir: str | Path, encoder: str | None = None, device: str = "auto",
                 level: float = DEFAULT_LEVEL) -> list[Path]:
    """Predict each test sample of ``fold`` into ``{out_dir}/{sample}.h5ad`` (folder written atomically).

    Each file carries the ``level`` intervals (``layers["lower"]``/``["upper"]``) and the
    shift flag of the model's calibration; a model folder saved before calibration existed
    predicts without them. Refuses a genes.json or feature stores other than those the
    model was trained with.
    """
    level = check_level(level, "--level")
    folder = open_model_folder(model_dir, device=device, trained_on=lambda: TrainedOn(
        Path(genes), read_genes(genes), Path(features_dir), read_fold(splits, fold)["test"]))
    gene_list, test_samples = folder.trained_on.genes, folder.trained_on.samples
    identity = {"model": folder.model, "encoder": encoder or Path(features_dir).name,
                "weights_sha256": features_identity(features_dir, test_samples)[
                    "weights_sha256"],
                "seed": folder.params.get("seed"), "fold": fold,
                "gene_scope": read_gene_scope(genes)}
    biomarkers = read_biomarkers(genes)
    if biomarkers:  # targets outside the benchmark: evaluate scores them apart
        identity["biomarkers"] = biomarkers
    test = load_slides(test_samples, gene_list, st_dir, features_dir, graph_dir)
    predictions = folder.estimator.predict(test)
    if len(predictions) != len(test):
        raise input_error(model_dir, f"the model returned {len(predictions)} predictions for "
                          f"{len(test)} slides", "fix the estimator's predict()")
    out_dir = Path(out_dir)
    with atomic_output(out_dir) as tmp:
        tmp.mkdir()
        for slide, prediction in zip(test, predictions, strict=True):
            intervals = None if folder.calibration is None else apply_calibration(
                folder.calibration, slide.features, prediction, level)
            write_fold_prediction(tmp / f"{slide.sample}.h5ad", slide, prediction, gene_list,
                                  Path(st_dir) / f"{slide.sample}.h5ad", identity, intervals)
    return [out_dir / f"{slide.sample}.h5ad" for slide in test]

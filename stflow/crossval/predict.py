"""The predict stage: a trained fold model predicts its fold's test sections into h5ad files
that scanpy/squidpy plot directly, with the model's calibrated intervals and shift flag."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stflow.atomic import atomic_output, read_json
from stflow.crossval.inputs import read_fold
from stflow.data.dataset import Slide
from stflow.data.graph import squidpy_graph
from stflow.data.loading import features_identity, load_slides, read_gene_scope, read_genes
from stflow.data.spatial_image import sample_spatial
from stflow.errors import check_finite, check_shape, input_error
from stflow.intervals.calibration import (
    RECALIBRATE,
    SpotIntervals,
    apply_calibration,
    load_calibration,
)
from stflow.intervals.conformal import DEFAULT_LEVEL, check_level
from stflow.models.registry import (
    load_estimator,
    trained_model_name,
)
from stflow.provenance import X_PREDICTED, log1p_uns, stflow_uns
from stflow.verify import check_recorded

log = logging.getLogger(__name__)


def prediction_anndata(slide: Slide, prediction: np.ndarray, genes: list[str],
                       st_path: str | Path, identity: dict[str, Any],
                       intervals: SpotIntervals | None = None):
    """Prediction of one slide as AnnData, carrying the ingested obs/obsm of its spots, the
    graph the model read (squidpy's obsp layout) and, when the model is calibrated, its
    intervals and shift flag. ``identity``: model, encoder, weights_sha256, seed, fold, gene_scope."""
    import anndata as ad

    where = f"prediction of {identity.get('model')} for sample {slide.sample}"
    prediction = np.asarray(prediction, dtype=np.float32)
    check_shape(prediction, "prediction", (slide.n_spots, len(genes)), where)
    check_finite(prediction, "prediction", where)
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
    result = ad.AnnData(X=prediction, obs=obs, var=pd.DataFrame(index=pd.Index(genes)),
                        obsm=obsm)
    if slide.targets is not None:
        result.layers["truth"] = slide.targets.astype(np.float32)
    result.uns["sample"] = slide.sample  # read by evaluate and coverage
    result.uns["stflow"] = stflow_uns("prediction", slide.sample, X_PREDICTED, **identity)
    result.uns["log1p"] = log1p_uns()
    if slide.neighbors is not None:  # the graph the model read, as squidpy writes one
        obsp, graph = squidpy_graph(slide.neighbors, slide.coords_um, "graph/{sample}.npz")
        result.obsp.update(obsp)
        result.uns["spatial_neighbors"] = graph
    spatial = sample_spatial(image_path, mpp, obsm.get("spatial", np.zeros((0, 2))), slide.sample)
    if spatial is not None:  # scanpy's layout: sc.pl.spatial draws it over the H&E
        result.uns["spatial"] = spatial
    if intervals is not None:
        intervals.attach(result)
    return result


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
    model_dir = Path(model_dir)
    check_recorded(model_dir)
    gene_list = read_genes(genes)
    test_samples = read_fold(splits, fold)["test"]
    trained = check_trained_with(model_dir, genes, gene_list, features_dir, test_samples)
    estimator = load_estimator(model_dir, device=device)
    identity = {"model": trained_model_name(model_dir),
                "encoder": encoder or Path(features_dir).name,
                "weights_sha256": features_identity(features_dir, test_samples)[
                    "weights_sha256"],
                "seed": trained.get("seed"), "fold": fold,
                "gene_scope": read_gene_scope(genes)}
    calibration = load_calibration(model_dir)
    if calibration is None:
        log.warning("%s has no interval calibration (trained by an older stflow): the "
                    "predictions carry no intervals. Fix: %s", model_dir, RECALIBRATE)
    test = load_slides(test_samples, gene_list, st_dir, features_dir, graph_dir)
    predictions = estimator.predict(test)
    if len(predictions) != len(test):
        raise input_error(model_dir, f"the model returned {len(predictions)} predictions for "
                          f"{len(test)} slides", "fix the estimator's predict()")
    out_dir = Path(out_dir)
    with atomic_output(out_dir) as tmp:
        tmp.mkdir()
        for slide, prediction in zip(test, predictions, strict=True):
            st_path = Path(st_dir) / f"{slide.sample}.h5ad"
            intervals = None if calibration is None else apply_calibration(
                calibration, slide.features, prediction, level)
            adata = prediction_anndata(slide, prediction, gene_list, st_path, identity,
                                       intervals)
            adata.write_h5ad(tmp / f"{slide.sample}.h5ad")
    return [out_dir / f"{slide.sample}.h5ad" for slide in test]


def check_trained_with(model_dir: Path, genes_path: str | Path, genes: list[str],
                       features_dir: str | Path, samples: list[str]) -> dict[str, Any]:
    """Refuse to predict with other genes or other features than the model was trained on;
    return the model's params.json."""
    params_path = model_dir / "params.json"
    trained = read_json(params_path, "model parameters", "re-run the train stage")
    if not isinstance(trained, dict):
        raise input_error(params_path, "is not a JSON object", "re-run the train stage")
    if "genes" in trained and not (isinstance(trained["genes"], list) and all(
            isinstance(g, str) for g in trained["genes"])):  # str() would pass 5 or null on
        raise input_error(params_path, "genes is not a list of gene names",
                          "re-run the train stage")
    if "genes" in trained and trained["genes"] != genes:
        raise input_error(genes_path, f"lists {len(genes)} genes that differ from the "
                          f"{len(trained['genes'])} the model was trained on ({params_path})",
                          "re-run train with this genes.json, or predict with the genes.json "
                          "the model was trained on")
    if "features" in trained:
        found = features_identity(features_dir, samples)
        if found != trained["features"]:
            raise input_error(features_dir, f"features made by {found}, but the model was "
                              f"trained on {trained['features']} ({params_path})",
                              "re-run train on these features, or predict from the features "
                              "the model was trained on")
    return trained

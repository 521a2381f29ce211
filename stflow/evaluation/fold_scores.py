"""The evaluate stage: one fold's prediction files scored with the HEST metric
(:mod:`stflow.evaluation.hest_metric`), with the fold's split scheme recorded and the score of
every spatial block bootstrap replicate and jackknife resample, at the block side and at 2×
and 8× it (:mod:`stflow.evaluation.bootstrap`), and the gene scope the predictions carry
(how their genes were chosen, :data:`stflow.data.genes.GENE_SCOPES`). The biomarkers a
prediction marks (targets outside the benchmark genes, :func:`stflow.data.genes.biomarker_targets`)
are scored apart under "biomarker_pearson" and never enter the fold score or its resamples."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from stflow.atomic import write_json
from stflow.data.splits import fold_of, read_splits
from stflow.errors import check_finite, input_error
from stflow.evaluation.bootstrap import (
    DEFAULT_BOOTSTRAP,
    BootstrapSettings,
    bca_interval,
    fold_bootstrap,
)
from stflow.evaluation.hest_metric import fold_metrics, pearson_per_gene
from stflow.provenance import dense

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """One test sample's prediction file: measured and predicted log1p expression (spots ×
    genes), the genes, and the spot centres in microns (the bootstrap's blocks)."""

    sample: str
    truth: np.ndarray
    pred: np.ndarray
    genes: list[str]
    coords_um: np.ndarray
    gene_scope: str = "unknown"
    biomarkers: tuple[str, ...] = ()


def spot_coordinates_um(adata: object, path: Path) -> np.ndarray:
    """obsm["spatial_um"], else obsm["spatial"] (pixels) × uns["mpp"] (µm per pixel)."""
    if "spatial_um" in adata.obsm:
        coords = np.asarray(adata.obsm["spatial_um"], dtype=np.float64)
    elif "spatial" in adata.obsm and "mpp" in adata.uns:
        coords = np.asarray(adata.obsm["spatial"], dtype=np.float64) * float(adata.uns["mpp"])
    else:
        raise input_error(path, "has no spot coordinates (obsm['spatial_um'], or "
                          "obsm['spatial'] with uns['mpp']) to cut the test spots into blocks",
                          "re-run the predict stage, which copies them from the ingested sample")
    check_finite(coords, "spot coordinates (µm)", path)
    return coords


def read_prediction(path: str | Path) -> Prediction:
    """A prediction h5ad (docs/artifacts.md) as the evaluate stage reads it."""
    import anndata as ad

    path = Path(path)
    if not path.exists():
        raise input_error(path, "prediction file does not exist",
                          "run the predict stage for this encoder, model and fold")
    adata = ad.read_h5ad(path)
    if "truth" not in adata.layers:
        raise input_error(path, "has no layers['truth'] (measured log1p expression)",
                          "re-run the predict stage, which stores the truth beside X")

    pred, truth = dense(adata.X), dense(adata.layers["truth"])
    check_finite(pred, "X (prediction)", path)
    check_finite(truth, "layers['truth']", path)
    return Prediction(str(adata.uns.get("sample", path.stem)), truth, pred,
                      [str(g) for g in adata.var_names], spot_coordinates_um(adata, path),
                      prediction_gene_scope(adata, path), prediction_biomarkers(adata))


def prediction_gene_scope(adata: object, path: Path) -> str:
    """``uns["stflow"]["gene_scope"]`` of the prediction file at ``path`` (how its genes were
    chosen), which the predict stage records."""
    scope = dict(adata.uns.get("stflow", {})).get("gene_scope")
    if not scope:
        raise input_error(path, "records no gene scope (uns['stflow']['gene_scope'])",
                          "re-run the predict stage for this fold")
    return str(scope)


def prediction_biomarkers(adata: object) -> tuple[str, ...]:
    """``uns["stflow"]["biomarkers"]`` of a prediction file: its genes outside the benchmark
    (none in a file written before they were recorded, or without any)."""
    names = dict(adata.uns.get("stflow", {})).get("biomarkers")
    return () if names is None else tuple(str(g) for g in np.atleast_1d(names))


def split_biomarkers(predictions: Sequence[Prediction]) -> tuple[list[Prediction], dict]:
    """The predictions restricted to the benchmark genes, and the biomarkers' pooled Pearson
    (gene → r, None where constant in the truth), scored apart so that they never enter the
    benchmark mean."""
    first = predictions[0]
    marked = set(first.biomarkers)
    if not marked:
        return list(predictions), {}
    bench = [i for i, g in enumerate(first.genes) if g not in marked]
    extra = [i for i, g in enumerate(first.genes) if g in marked]
    r = pearson_per_gene(np.concatenate([p.truth[:, extra] for p in predictions]),
                         np.concatenate([p.pred[:, extra] for p in predictions]))
    scores = {first.genes[i]: (float(v) if np.isfinite(v) else None)
              for i, v in zip(extra, r, strict=True)}
    return [replace(p, truth=p.truth[:, bench], pred=p.pred[:, bench],
                    genes=[p.genes[i] for i in bench]) for p in predictions], scores


def evaluate_predictions(paths: Sequence[str | Path], encoder: str, model: str,
                         fold: str, *, seed: int = 0, scheme: str = "unknown",
                         bootstrap: BootstrapSettings = DEFAULT_BOOTSTRAP) -> dict:
    """Score a fold from its prediction files; every file must share the same genes.

    ``seed``, ``scheme`` (of the splits.json) and the predictions' gene scope are recorded
    to label the tables' rows;
    ``bootstrap`` sets the replicates of the fold score stored under "bootstrap". The
    biomarkers the predictions mark are scored apart, under "biomarker_pearson".
    """
    if not paths:
        raise input_error("--predictions", "no prediction files given",
                          "pass the test samples' prediction h5ad files of the fold")
    predictions = [read_prediction(path) for path in paths]
    genes = predictions[0].genes
    for path, prediction in zip(paths, predictions, strict=True):
        if prediction.genes != genes:
            raise input_error(path, "its genes differ from those of the other predictions",
                              "predict every test sample with the same genes.json")
    scopes = sorted({p.gene_scope for p in predictions})
    if len(scopes) > 1:
        raise input_error(paths[0], f"the predictions carry different gene scopes {scopes}",
                          "predict every test sample of the fold with the same genes.json")
    if len({p.biomarkers for p in predictions}) > 1:
        raise input_error(paths[0], "the predictions mark different biomarkers",
                          "predict every test sample of the fold with the same genes.json")
    predictions, biomarkers = split_biomarkers(predictions)
    genes = predictions[0].genes
    truths = [p.truth for p in predictions]
    preds = [p.pred for p in predictions]
    samples = [p.sample for p in predictions]
    result = {"scheme": scheme, "gene_scope": scopes[0], "encoder": encoder, "model": model,
              "seed": int(seed), "fold": fold}
    result.update(fold_metrics(truths, preds, genes, samples))
    result["biomarker_pearson"] = biomarkers
    result["bootstrap"] = fold_bootstrap(truths, preds, [p.coords_um for p in predictions],
                                         samples, fold, bootstrap)
    return result


def evaluate_fold(paths: Sequence[str | Path], splits_path: str | Path, encoder: str,
                  model: str, fold: str, seed: int = 0,
                  bootstrap: BootstrapSettings = DEFAULT_BOOTSTRAP) -> dict:
    """Score a fold whose predictions must be exactly its test samples in ``splits_path``;
    the splits' scheme labels the result."""
    splits = read_splits(splits_path)
    test = sorted(str(s) for s in fold_of(splits, fold, splits_path).get("test") or [])
    result = evaluate_predictions(paths, encoder, model, fold, seed=seed,
                                  scheme=splits["scheme"], bootstrap=bootstrap)
    predicted = sorted(result["pearson_per_sample"])
    if predicted != test:
        raise input_error(splits_path, f"fold {fold} tests {test}, but the predictions are of "
                          f"{predicted}", "score the predictions of this fold's test samples "
                          "(re-run predict with this splits.json)")
    return result


def write_fold_scores(predictions: Sequence[str | Path], *, splits: str | Path, encoder: str,
                      model: str, fold: str, seed: int, out: str | Path,
                      bootstrap: BootstrapSettings = DEFAULT_BOOTSTRAP) -> dict:
    """The evaluate stage: :func:`evaluate_fold` written to ``out`` (metrics JSON)."""
    result = evaluate_fold(predictions, splits, encoder, model, fold, seed, bootstrap)
    write_json(result, out)
    boot = result["bootstrap"]
    score = float("nan") if result["pearson_mean"] is None else result["pearson_mean"]
    low, high = bca_interval(np.array(boot["replicates"], dtype=float), score,
                             np.array(boot["jackknife"], dtype=float))
    log.info("%s/%s seed %d %s (%s): Pearson %.4f [%.4f, %.4f] over %d genes (%d constant), "
             "%d spots in %s blocks", encoder, model, seed, fold, result["scheme"],
             score, low, high, result["n_genes"],
             result["n_constant_genes"], result["n_test_spots"],
             boot["n_blocks"])
    return result


def prediction_files(folder: str | Path) -> list[Path]:
    """The ``{sample}.h5ad`` files of a predictions folder, in name order."""
    return sorted(Path(folder).glob("*.h5ad"))

"""The evaluate stage: one fold's prediction files scored with the HEST metric
(:mod:`stflow.evaluation.metrics`), with the fold's split scheme recorded."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stflow.atomic import write_json
from stflow.data.splits import fold_of, read_splits
from stflow.errors import check_finite, input_error
from stflow.evaluation.metrics import fold_metrics

log = logging.getLogger(__name__)


def read_prediction(path: str | Path) -> tuple[str, np.ndarray, np.ndarray, list[str]]:
    """(sample, truth, prediction, genes) from a prediction h5ad (docs/artifacts.md)."""
    import anndata as ad
    import scipy.sparse as sp

    path = Path(path)
    if not path.exists():
        raise input_error(path, "prediction file does not exist",
                          "run the predict stage for this encoder, model and fold")
    adata = ad.read_h5ad(path)
    if "truth" not in adata.layers:
        raise input_error(path, "has no layers['truth'] (measured log1p expression)",
                          "re-run the predict stage, which stores the truth beside X")

    def dense(matrix: object) -> np.ndarray:
        return np.asarray(matrix.toarray() if sp.issparse(matrix) else matrix, dtype=np.float64)

    pred, truth = dense(adata.X), dense(adata.layers["truth"])
    check_finite(pred, "X (prediction)", path)
    check_finite(truth, "layers['truth']", path)
    sample = str(adata.uns.get("sample", path.stem))
    return sample, truth, pred, [str(g) for g in adata.var_names]


def evaluate_predictions(paths: Sequence[str | Path], encoder: str, model: str,
                         fold: str, *, seed: int = 0, scheme: str = "unknown") -> dict:
    """Score a fold from its prediction files; every file must share the same genes.

    ``seed`` and ``scheme`` (of the splits.json) are recorded to label the tables' rows.
    """
    if not paths:
        raise input_error("--predictions", "no prediction files given",
                          "pass the test samples' prediction h5ad files of the fold")
    truths, preds, samples = [], [], []
    genes: list[str] | None = None
    for path in paths:
        sample, truth, pred, file_genes = read_prediction(path)
        if genes is None:
            genes = file_genes
        elif file_genes != genes:
            raise input_error(path, "its genes differ from those of the other predictions",
                              "predict every test sample with the same genes.json")
        truths.append(truth)
        preds.append(pred)
        samples.append(sample)
    result = {"scheme": scheme, "encoder": encoder, "model": model, "seed": int(seed),
              "fold": fold}
    result.update(fold_metrics(truths, preds, genes or [], samples))
    return result


def evaluate_fold(paths: Sequence[str | Path], splits_path: str | Path, encoder: str,
                  model: str, fold: str, seed: int = 0) -> dict:
    """Score a fold whose predictions must be exactly its test samples in ``splits_path``;
    the splits' scheme labels the result."""
    splits = read_splits(splits_path)
    test = sorted(str(s) for s in fold_of(splits, fold, splits_path).get("test") or [])
    result = evaluate_predictions(paths, encoder, model, fold, seed=seed,
                                  scheme=splits["scheme"])
    predicted = sorted(result["pearson_per_sample"])
    if predicted != test:
        raise input_error(splits_path, f"fold {fold} tests {test}, but the predictions are of "
                          f"{predicted}", "score the predictions of this fold's test samples "
                          "(re-run predict with this splits.json)")
    return result


def write_fold_scores(predictions: Sequence[str | Path], splits: str | Path, encoder: str,
                      model: str, fold: str, seed: int, out: str | Path) -> dict:
    """The evaluate stage: :func:`evaluate_fold` written to ``out`` (metrics JSON)."""
    result = evaluate_fold(predictions, splits, encoder, model, fold, seed)
    write_json(result, out)
    log.info("%s/%s seed %d %s (%s): Pearson %.4f over %d genes (%d constant), %d spots",
             encoder, model, seed, fold, result["scheme"],
             result["pearson_mean"] or float("nan"), result["n_genes"],
             result["n_constant_genes"], result["n_test_spots"])
    return result


def prediction_files(folder: str | Path) -> list[Path]:
    """The ``{sample}.h5ad`` files of a predictions folder, in name order."""
    return sorted(Path(folder).glob("*.h5ad"))

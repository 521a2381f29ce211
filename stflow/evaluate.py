"""The benchmark metric, exactly as HEST-bench computes it, and the tables built from it.

Per fold the test spots of all test samples are pooled, the Pearson correlation between
measured and predicted log1p expression is computed per gene, and the fold score is the
mean over genes. Across folds the score is reported as mean ± population std (ddof=0).
A gene that is constant in the truth has no correlation: it is left out of the mean and
counted as ``n_constant_genes`` instead of turning the average into NaN. A gene whose
*prediction* is constant scores r = 0, so every model is averaged over the same genes and
collapsing a hard gene to a constant is not rewarded by dropping it.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stflow.atomic import atomic_output, read_json, write_json
from stflow.errors import check_finite, input_error

log = logging.getLogger(__name__)


def _as_matrix(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2:
        raise input_error(name, f"expected a (spots, genes) matrix, got shape {array.shape}",
                          "pass one row per spot and one column per gene")
    check_finite(array, name)
    return array


def pearson_per_gene(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Pearson r of each column of ``truth`` with the same column of ``pred``.

    Returns a (G,) array: NaN where the truth column is constant (the gene cannot be scored,
    for any model; callers exclude it), 0 where only the prediction is constant (a
    constant prediction explains none of the variation). No warning is raised.
    """
    truth = _as_matrix(truth, "truth")
    pred = _as_matrix(pred, "pred")
    if truth.shape != pred.shape:
        raise input_error("pred", f"shape {pred.shape} differs from truth {truth.shape}",
                          "predict the same spots and genes as the truth")
    if truth.shape[0] < 2:
        return np.full(truth.shape[1], np.nan)
    dt = truth - truth.mean(axis=0)
    dp = pred - pred.mean(axis=0)
    # Centre first, then compare the spread to the data scale: a column whose deviations
    # are only floating-point noise counts as constant.
    nt = np.sqrt((dt * dt).sum(axis=0))
    npd = np.sqrt((dp * dp).sum(axis=0))
    scale_t = np.abs(truth).max(axis=0) * np.sqrt(truth.shape[0]) * 1e-12
    scale_p = np.abs(pred).max(axis=0) * np.sqrt(pred.shape[0]) * 1e-12
    varies_t = (nt > scale_t) & (nt > 0)
    ok = varies_t & (npd > scale_p) & (npd > 0)
    out = np.where(varies_t, 0.0, np.nan)
    out[ok] = (dt[:, ok] * dp[:, ok]).sum(axis=0) / (nt[ok] * npd[ok])
    return np.clip(out, -1.0, 1.0)


def mean_pearson(truth: np.ndarray, pred: np.ndarray) -> float:
    """Mean per-gene Pearson over the genes that vary in the truth (NaN when none does)."""
    values = pearson_per_gene(truth, pred)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def fold_metrics(truths: Sequence[np.ndarray], preds: Sequence[np.ndarray],
                 genes: Sequence[str], samples: Sequence[str]) -> dict:
    """Score one fold: pooled per-gene Pearson plus a per-sample breakdown."""
    if not truths or len(truths) != len(preds) or len(truths) != len(samples):
        raise input_error("predictions", f"{len(truths)} truths, {len(preds)} predictions and "
                          f"{len(samples)} sample names", "pass one prediction per test sample")
    pooled_truth = np.concatenate([np.asarray(t) for t in truths], axis=0)
    pooled_pred = np.concatenate([np.asarray(p) for p in preds], axis=0)
    if pooled_truth.shape[1] != len(genes):
        raise input_error("predictions", f"{pooled_truth.shape[1]} gene columns but "
                          f"{len(genes)} gene names", "keep var and X aligned")
    per_gene = pearson_per_gene(pooled_truth, pooled_pred)
    finite = np.isfinite(per_gene)
    per_sample = {s: mean_pearson(t, p) for s, t, p in zip(samples, truths, preds, strict=True)}
    return {
        "n_test_spots": int(pooled_truth.shape[0]),
        "n_genes": int(len(genes)),
        "n_constant_genes": int((~finite).sum()),
        "pearson_mean": float(per_gene[finite].mean()) if finite.any() else None,
        "pearson_per_gene": {g: (float(v) if np.isfinite(v) else None)
                             for g, v in zip(genes, per_gene, strict=True)},
        "pearson_per_sample": {s: (v if np.isfinite(v) else None) for s, v in per_sample.items()},
    }


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
                         fold: str) -> dict:
    """Score a fold from its prediction files; every file must share the same genes."""
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
    result = {"encoder": encoder, "model": model, "fold": fold}
    result.update(fold_metrics(truths, preds, genes or [], samples))
    return result


METRIC_COLUMNS = ["encoder", "model", "fold", "n_test_spots", "n_genes", "n_constant_genes",
                  "pearson_mean"]


def _read_metrics(path: str | Path) -> dict:
    path = Path(path)
    data = read_json(path, "metrics file", "run `stflow evaluate` first")
    missing = [c for c in METRIC_COLUMNS + ["pearson_per_gene"] if c not in data]
    if missing:
        raise input_error(path, f"lacks the keys {missing}", "re-run `stflow evaluate`")
    return data


def aggregate(metric_paths: Sequence[str | Path]) -> dict[str, object]:
    """Fold JSONs → the metrics, summary and per-gene tables as pandas DataFrames."""
    import pandas as pd

    records = [_read_metrics(p) for p in metric_paths]
    if not records:
        raise input_error("--metrics", "no metrics files given",
                          "pass the fold JSONs written by `stflow evaluate`")
    metrics = pd.DataFrame([{c: r[c] for c in METRIC_COLUMNS} for r in records])
    metrics["pearson_mean"] = metrics["pearson_mean"].astype(float)
    duplicated = metrics.duplicated(["encoder", "model", "fold"])
    if duplicated.any():
        row = metrics[duplicated].iloc[0]
        raise input_error("--metrics", f"fold {row['fold']} of {row['encoder']}/{row['model']} "
                          "is given twice", "pass each fold's metrics once")
    summary = (metrics.groupby(["encoder", "model"], sort=False)["pearson_mean"]
               .agg(pearson_mean="mean", pearson_std=lambda s: float(np.std(s, ddof=0)),
                    n_folds="count").reset_index())
    genes = pd.DataFrame([
        {"encoder": r["encoder"], "model": r["model"], "fold": r["fold"], "gene": g,
         "pearson": v}
        for r in records for g, v in r["pearson_per_gene"].items()
    ], columns=["encoder", "model", "fold", "gene", "pearson"])
    return {"metrics": metrics, "summary": summary, "genes": genes}


def summary_markdown(summary: object) -> str:
    """The paper's table shape: one row per model, one column per encoder, "mean ± std"."""
    encoders = list(dict.fromkeys(summary["encoder"]))
    models = list(dict.fromkeys(summary["model"]))
    cells = {(r.model, r.encoder): f"{r.pearson_mean:.3f} ± {r.pearson_std:.3f}"
             for r in summary.itertuples()}
    lines = ["| model | " + " | ".join(encoders) + " |",
             "|---|" + "---|" * len(encoders)]
    for model in models:
        row = [cells.get((model, enc), "–") for enc in encoders]
        lines.append(f"| {model} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def write_tables(tables: dict[str, object], out_dir: str | Path) -> None:
    """Write metrics.tsv, summary.tsv, summary.md and genes.tsv atomically."""
    out_dir = Path(out_dir)
    for name in ("metrics", "summary", "genes"):
        with atomic_output(out_dir / f"{name}.tsv") as tmp:
            tables[name].to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    with atomic_output(out_dir / "summary.md") as tmp:
        Path(tmp).write_text(summary_markdown(tables["summary"]))


def _run_evaluate(args: argparse.Namespace) -> None:
    result = evaluate_predictions(args.predictions, args.encoder, args.model, args.fold)
    write_json(result, args.out)
    log.info("%s/%s %s: Pearson %.4f over %d genes (%d constant), %d spots", args.encoder,
             args.model, args.fold, result["pearson_mean"] or float("nan"), result["n_genes"],
             result["n_constant_genes"], result["n_test_spots"])


def _run_aggregate(args: argparse.Namespace) -> None:
    tables = aggregate(args.metrics)
    write_tables(tables, args.out_dir)
    log.info("wrote tables for %d folds to %s", len(tables["metrics"]), args.out_dir)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` and ``aggregate`` subcommands."""
    p = subparsers.add_parser("evaluate", help="score one fold's predictions (HEST metric)")
    p.add_argument("--predictions", nargs="+", required=True, help="prediction h5ad files")
    p.add_argument("--encoder", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--fold", required=True)
    p.add_argument("--out", required=True, help="metrics JSON to write")
    p.set_defaults(func=_run_evaluate)

    a = subparsers.add_parser("aggregate", help="fold metrics → tables/*.tsv and summary.md")
    a.add_argument("--metrics", nargs="+", required=True, help="fold metrics JSONs")
    a.add_argument("--out-dir", required=True, help="folder for the tables")
    a.set_defaults(func=_run_aggregate)

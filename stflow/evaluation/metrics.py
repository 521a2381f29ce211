"""The benchmark metric, exactly as HEST-bench computes it, and the tables built from it.

Per fold the test spots of all test samples are pooled, the Pearson correlation between
measured and predicted log1p expression is computed per gene, and the fold score is the
mean over genes. Across folds the score is reported as mean ± population std (ddof=0);
with several seeds the fold spread and the seed spread are reported separately.
A gene that is constant in the truth has no correlation: it is left out of the mean and
counted as ``n_constant_genes`` instead of turning the average into NaN. A gene whose
*prediction* is constant scores r = 0, so every model is averaged over the same genes and
collapsing a hard gene to a constant is not rewarded by dropping it.

Every row of every table carries the split ``scheme`` of its splits.json, so a
leave-one-section-out number (``section``) is never read as a patient-stratified one.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stflow.atomic import atomic_output, read_json, write_json
from stflow.data.splits import fold_of, read_splits
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


RUN_KEYS = ["scheme", "encoder", "model", "seed", "fold"]
METRIC_COLUMNS = RUN_KEYS + ["n_test_spots", "n_genes", "n_constant_genes", "pearson_mean"]
GROUP_KEYS = ["scheme", "encoder", "model"]
SUMMARY_COLUMNS = GROUP_KEYS + ["pearson_mean", "fold_std", "seed_std", "n_folds", "n_seeds"]
SCHEME_NOTES = {
    "section": "scheme **section**: leave-one-section-out folds, NOT patient-stratified (the "
               "test section's patient has other sections in training); optimistic, not "
               "comparable with patient-stratified results",
}


def _read_metrics(path: str | Path) -> dict:
    path = Path(path)
    data = read_json(path, "metrics file", "run `stflow evaluate` first")
    missing = [c for c in METRIC_COLUMNS + ["pearson_per_gene"] if c not in data]
    if missing:
        raise input_error(path, f"lacks the keys {missing}", "re-run `stflow evaluate`")
    return data


def summarize(metrics: object) -> object:
    """One row per scheme × encoder × model from the per-run rows of metrics.tsv.

    ``pearson_mean`` is the mean over folds and seeds; ``fold_std`` the population std over
    folds of the seed-averaged fold scores (how much the test sections differ);
    ``seed_std`` the population std over seeds of the fold-averaged scores (how much
    training randomness moves the result). Each needs every fold scored with every seed.
    """
    import pandas as pd

    duplicated = metrics.duplicated(RUN_KEYS)
    if duplicated.any():
        row = metrics[duplicated].iloc[0]
        raise input_error("--metrics", f"fold {row['fold']} (seed {row['seed']}) of "
                          f"{row['encoder']}/{row['model']} is given twice",
                          "pass each fold's metrics once")
    rows = []
    for key, group in metrics.groupby(GROUP_KEYS, sort=False):
        folds, seeds = group["fold"].unique(), group["seed"].unique()
        if len(group) != len(folds) * len(seeds):
            have = set(zip(group["fold"], group["seed"], strict=True))
            fold, seed = next((f, s) for f in folds for s in seeds if (f, s) not in have)
            raise input_error("--metrics", f"{key[1]}/{key[2]} lacks {fold} with seed {seed} "
                              "(the fold and seed spreads need every fold of every seed)",
                              "pass the metrics of every fold and seed")
        grid = group.pivot(index="fold", columns="seed", values="pearson_mean")
        rows.append({**dict(zip(GROUP_KEYS, key, strict=True)),
                     "pearson_mean": float(grid.stack().mean()),
                     "fold_std": float(grid.mean(axis=1).std(ddof=0)),
                     "seed_std": float(grid.mean(axis=0).std(ddof=0)),
                     "n_folds": len(folds), "n_seeds": len(seeds)})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def aggregate(metric_paths: Sequence[str | Path]) -> dict[str, object]:
    """Fold JSONs → the metrics, summary and per-gene tables as pandas DataFrames."""
    import pandas as pd

    records = [_read_metrics(p) for p in metric_paths]
    if not records:
        raise input_error("--metrics", "no metrics files given",
                          "pass the fold JSONs written by `stflow evaluate`")
    metrics = pd.DataFrame([{c: r[c] for c in METRIC_COLUMNS} for r in records],
                           columns=METRIC_COLUMNS)
    metrics["pearson_mean"] = metrics["pearson_mean"].astype(float)
    metrics["seed"] = metrics["seed"].astype(int)
    genes = pd.DataFrame([
        {**{k: r[k] for k in RUN_KEYS}, "gene": g, "pearson": v}
        for r in records for g, v in r["pearson_per_gene"].items()
    ], columns=RUN_KEYS + ["gene", "pearson"])
    return {"metrics": metrics, "summary": summarize(metrics), "genes": genes}


def score_cell(row: object, with_seeds: bool) -> str:
    """"mean ± fold std", plus "(seed ± std)" when the table has several seeds."""
    if not np.isfinite(row.pearson_mean):
        return "n/a"
    cell = f"{row.pearson_mean:.3f} ± {row.fold_std:.3f}"
    return f"{cell} (seed ± {row.seed_std:.3f})" if with_seeds else cell


def score_notes(summary: object) -> list[str]:
    """What the cells mean, and a warning for every scheme that is not patient-stratified."""
    with_seeds = bool((summary["n_seeds"] > 1).any()) if len(summary) else False
    notes = ["Mean Pearson over genes; mean over folds and seeds ± population std over folds "
             "(of the seed-averaged fold scores)" +
             ("; seed ± = population std over seeds (of the fold-averaged scores)."
              if with_seeds else ".")]
    return notes + scheme_warnings(summary["scheme"])


def scheme_warnings(schemes: Sequence[str]) -> list[str]:
    """A markdown warning for each scheme whose results are not patient-stratified."""
    return [f"**Warning**: {SCHEME_NOTES[s]}." for s in dict.fromkeys(schemes)
            if s in SCHEME_NOTES]


def markdown_grid(summary: object, label: str, labels: dict[str, str] | None = None) -> str:
    """Rows scheme × model (shown as ``labels[model]`` in a ``label`` column when given), one
    column per encoder, cells "mean ± fold std"; notes below the table."""
    encoders = list(dict.fromkeys(summary["encoder"]))
    with_seeds = bool((summary["n_seeds"] > 1).any()) if len(summary) else False
    cells = {(r.scheme, r.model, r.encoder): score_cell(r, with_seeds)
             for r in summary.itertuples()}
    head = ["scheme", label] + (["model"] if labels else [])
    lines = ["| " + " | ".join(head + encoders) + " |",
             "|" + "---|" * (len(head) + len(encoders))]
    for scheme, model in dict.fromkeys(zip(summary["scheme"], summary["model"], strict=True)):
        first = [scheme, labels[model], model] if labels else [scheme, model]
        row = first + [cells.get((scheme, model, enc), "–") for enc in encoders]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines + [""] + score_notes(summary)) + "\n"


def summary_markdown(summary: object) -> str:
    """The paper's table shape: one row per model, one column per encoder, "mean ± std"."""
    return markdown_grid(summary, "model")


def write_tables(tables: dict[str, object], out_dir: str | Path) -> None:
    """Write metrics.tsv, summary.tsv, summary.md and genes.tsv atomically."""
    out_dir = Path(out_dir)
    for name in ("metrics", "summary", "genes"):
        with atomic_output(out_dir / f"{name}.tsv") as tmp:
            tables[name].to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    with atomic_output(out_dir / "summary.md") as tmp:
        Path(tmp).write_text(summary_markdown(tables["summary"]))


def _run_evaluate(args: argparse.Namespace) -> None:
    result = evaluate_fold(args.predictions, args.splits, args.encoder, args.model, args.fold,
                           args.seed)
    write_json(result, args.out)
    log.info("%s/%s seed %d %s (%s): Pearson %.4f over %d genes (%d constant), %d spots",
             args.encoder, args.model, args.seed, args.fold, result["scheme"],
             result["pearson_mean"] or float("nan"), result["n_genes"],
             result["n_constant_genes"], result["n_test_spots"])


def _run_aggregate(args: argparse.Namespace) -> None:
    tables = aggregate(args.metrics)
    write_tables(tables, args.out_dir)
    log.info("wrote tables for %d runs (fold × seed) to %s", len(tables["metrics"]),
             args.out_dir)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` and ``aggregate`` subcommands."""
    p = subparsers.add_parser("evaluate", help="score one fold's predictions (HEST metric)")
    p.add_argument("--predictions", nargs="+", required=True, help="prediction h5ad files")
    p.add_argument("--encoder", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--fold", required=True)
    p.add_argument("--seed", type=int, default=0, help="the training seed (a table column)")
    p.add_argument("--splits", required=True, help="splits.json: the fold's test samples "
                   "and the split scheme (a table column)")
    p.add_argument("--out", required=True, help="metrics JSON to write")
    p.set_defaults(func=_run_evaluate)

    a = subparsers.add_parser("aggregate", help="fold metrics → tables/*.tsv and summary.md")
    a.add_argument("--metrics", nargs="+", required=True, help="fold metrics JSONs")
    a.add_argument("--out-dir", required=True, help="folder for the tables")
    a.set_defaults(func=_run_aggregate)

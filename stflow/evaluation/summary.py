"""The aggregate stage: every run's fold scores as tables — metrics.tsv (one row per encoder ×
model × seed × fold), summary.tsv/.md (mean ± population std over folds and seeds) and
genes.tsv (per-gene Pearson)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stflow.atomic import atomic_output, read_json
from stflow.errors import input_error

log = logging.getLogger(__name__)


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


def write_summary(metric_paths: Sequence[str | Path], out_dir: str | Path) -> dict[str, object]:
    """The aggregate stage: :func:`aggregate` written to ``out_dir`` as the result tables."""
    tables = aggregate(metric_paths)
    write_tables(tables, out_dir)
    log.info("wrote tables for %d runs (fold × seed) to %s", len(tables["metrics"]), out_dir)
    return tables

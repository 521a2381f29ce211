"""The aggregate stage: every run's fold scores as tables — metrics.tsv (one row per encoder ×
model × seed × fold), summary.tsv/.md (the mean over folds and seeds with each spread named:
the population std over folds, ``fold_std``, and over seeds, ``seed_std``, and the 95 %
bootstrap interval of the mean, ``ci_low``/``ci_high``; the paired difference to the best
baseline), genes.tsv (per-gene Pearson of the benchmark genes) and biomarkers.tsv (the
biomarkers trained beside them, scored apart: never in a mean of the other tables). Every row
says its split scheme and gene scope, so no score hides how it was made."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stflow.atomic import atomic_output, read_json
from stflow.data.genes import GENE_SCOPES
from stflow.errors import input_error
from stflow.evaluation.bootstrap import WIDER_SIDES, bca_interval

log = logging.getLogger(__name__)


RUN_KEYS = ["scheme", "encoder", "model", "seed", "fold"]


METRIC_COLUMNS = RUN_KEYS + ["gene_scope", "n_test_spots", "n_genes", "n_constant_genes", "pearson_mean"]


GROUP_KEYS = ["scheme", "encoder", "model"]


GENE_COLUMNS = RUN_KEYS + ["gene", "pearson"]  # genes.tsv and biomarkers.tsv


SUMMARY_COLUMNS = GROUP_KEYS + ["gene_scope", "pearson_mean", "fold_std", "seed_std", "n_folds", "n_seeds"]


INTERVAL_COLUMNS = ["ci_low", "ci_high", "reference", "diff", "diff_low", "diff_high",
                    "n_bootstrap", "bootstrap_bias", "ci_low_2x", "ci_high_2x", "ci_low_8x",
                    "ci_high_8x"]


SIDES = ("", *(f"_{m}x" for m in WIDER_SIDES))  # column suffix of each block side


COMPARISON_KEYS = ["scheme", "encoder"]


RERUN_EVALUATE = ("re-run `stflow evaluate` (the evaluate rule) for every run with the same "
                  "evaluation: settings (bootstrap, block_um, seed)")


SCHEME_NOTES = {
    "section": "scheme **section**: leave-one-section-out folds, NOT patient-stratified (the "
               "test section's patient has other sections in training); optimistic, not "
               "comparable with patient-stratified results",
}


def _read_metrics(path: str | Path) -> dict:
    """A fold's metrics JSON, checked for the keys the tables read."""
    path = Path(path)
    data = read_json(path, "metrics file", "run `stflow evaluate` first")
    missing = [c for c in METRIC_COLUMNS + ["pearson_per_gene"] if c not in data]
    if missing:
        raise input_error(path, f"lacks the keys {missing}", "re-run `stflow evaluate`")
    return data


def gene_scope_of(rows: object) -> str:
    """The gene scope of some metrics rows ("+"-joined if they mix)."""
    return "+".join(sorted({str(s) for s in rows["gene_scope"]}))


def summarize(metrics: object) -> object:
    """One row per scheme × encoder × model from the per-run rows of metrics.tsv.

    ``pearson_mean`` is the mean over folds and seeds; ``fold_std`` the population std over
    folds of the seed-averaged fold scores (how much the test sections differ);
    ``seed_std`` the population std over seeds of the fold-averaged scores (how much
    training randomness moves the result). Each needs every fold scored with every seed.
    ``gene_scope`` says how the genes were chosen (:data:`GENE_SCOPES`).
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
                     "gene_scope": gene_scope_of(group), "pearson_mean": float(grid.stack().mean()),
                     "fold_std": float(grid.mean(axis=1).std(ddof=0)),
                     "seed_std": float(grid.mean(axis=0).std(ddof=0)),
                     "n_folds": len(folds), "n_seeds": len(seeds)})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def fold_replicates(records: Sequence[dict], paths: Sequence[str | Path]) -> dict[tuple, object]:
    """Run (RUN_KEYS values) → its replicate and jackknife fold scores per block side, for
    the metrics JSONs that hold them.

    Runs compared with each other must share the resamples: the same number of replicates
    and seed within a scheme × encoder, and the same blocks within a fold.
    """
    import pandas as pd

    rows = [{"scheme": r["scheme"], "encoder": r["encoder"], "fold": r["fold"],
             "path": str(p), "draws": f"{r['bootstrap']['n']} replicates, seed "
             f"{r['bootstrap']['seed']}",
             "blocks": f"blocks of {json.dumps(r['bootstrap']['block_um'], sort_keys=True)} µm"}
            for r, p in zip(records, paths, strict=True) if r.get("bootstrap")]
    frame = pd.DataFrame(rows, columns=["scheme", "encoder", "fold", "path", "draws", "blocks"])
    for keys, column in ((COMPARISON_KEYS, "draws"), (COMPARISON_KEYS + ["fold"], "blocks")):
        for _, group in frame.groupby(keys):
            first, *others = group.drop_duplicates(column).itertuples()
            if others:
                raise input_error(others[0].path, f"bootstrapped with "
                                  f"{getattr(others[0], column)}, but {first.path} with "
                                  f"{getattr(first, column)}: their replicates are not paired",
                                  RERUN_EVALUATE)
    return {tuple(r[k] for k in RUN_KEYS): _run_resamples(r["bootstrap"])
            for r in records if "jackknife" in (r.get("bootstrap") or {})}


def _run_resamples(bootstrap: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Column suffix of each block side → (replicate, jackknife) fold scores of a run."""
    sides = [bootstrap, *(bootstrap["wider"][f"{m}x"] for m in WIDER_SIDES)]
    return {suffix: (np.array(side["replicates"], dtype=float),
                     np.array(side["jackknife"], dtype=float))
            for suffix, side in zip(SIDES, sides, strict=True)}


def model_replicates(metrics: object, replicates: dict[tuple, object]) -> dict[tuple, object]:
    """Scheme × encoder × model → per block side its replicates and jackknife values.

    Replicate b is the mean over folds and seeds of each fold's replicate b, as
    ``pearson_mean`` averages the fold scores; leaving out block k of fold f changes only
    that fold's runs, so its jackknife value is the model score moved by the mean over seeds
    of (fold f's leave-k-out score − its score), over the number of folds. Models with a run
    without them (metrics written before the bootstrap) are left out, with a warning."""
    out, missing = {}, []
    for key, group in metrics.groupby(GROUP_KEYS, sort=False):
        runs = [replicates.get(run)
                for run in group[RUN_KEYS].itertuples(index=False, name=None)]
        if any(r is None for r in runs):
            missing.append("/".join(key))
        else:
            out[key] = {suffix: _model_side(group, [r[suffix] for r in runs])
                        for suffix in SIDES}
    if missing:
        log.warning("no bootstrap replicates in some metrics of %s (written before evaluate "
                    "stored them with their jackknife): their intervals are NaN. Fix: %s",
                    ", ".join(missing), RERUN_EVALUATE)
    return out


def _model_side(group: object, runs: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
    """(replicates, jackknife values) of a model's score from those of its runs (``group``
    rows), the jackknife's folds in name order."""
    scores = group["pearson_mean"].to_numpy(float)
    folds = group["fold"].to_numpy()
    shifts = [np.mean([jack - score for (_, jack), score, f in zip(runs, scores, folds,
                                                                   strict=True) if f == fold],
                      axis=0) for fold in sorted(set(folds))]
    return (np.mean([reps for reps, _ in runs], axis=0),
            scores.mean() + np.concatenate(shifts) / len(shifts))


def reference_models(summary: object) -> dict[tuple, str]:
    """Scheme × encoder → the best model outside the STFlow family (highest pearson_mean):
    the baseline every model of the comparison is measured against."""
    baselines = summary[~summary["model"].str.startswith("stflow")
                        & summary["pearson_mean"].notna()]
    best = baselines.loc[baselines.groupby(COMPARISON_KEYS, sort=False)["pearson_mean"].idxmax()]
    return {(s, e): m for s, e, m in zip(best["scheme"], best["encoder"], best["model"],
                                         strict=True)}


def with_intervals(summary: object, replicates: dict[tuple, object]) -> object:
    """``summary`` with INTERVAL_COLUMNS: the 95 % BCa interval of the mean (at the block
    side, then at 2× and 8× it), the replicates' bias (their mean − the score), and the
    paired difference to the comparison's reference model over the same replicates."""
    import pandas as pd

    references = reference_models(summary)
    means = dict(zip(summary[GROUP_KEYS].itertuples(index=False, name=None),
                     summary["pearson_mean"], strict=True))
    rows = []
    for key in summary[GROUP_KEYS].itertuples(index=False, name=None):
        reference = references.get(key[:2], "")
        diff = means[key] - means[(*key[:2], reference)] if reference else float("nan")
        rows.append(_interval_row(replicates.get(key), means[key], reference, diff,
                                  replicates.get((*key[:2], reference))
                                  if reference != key[2] else None))
    return pd.concat([summary, pd.DataFrame(rows, columns=INTERVAL_COLUMNS,
                                            index=summary.index)], axis=1)


def _interval_row(own: dict | None, mean: float, reference: str, diff: float,
                  ref: dict | None) -> list:
    """The INTERVAL_COLUMNS of one model (NaN intervals without its resamples)."""
    nan = (float("nan"), float("nan"))
    if own is None:
        return [*nan, reference, diff, *nan, 0, float("nan"), *nan, *nan]
    reps, jack = own[""]
    diff_ci = nan
    if ref is not None and ref[""][1].shape == jack.shape:
        diff_ci = bca_interval(reps - ref[""][0], diff, jack - ref[""][1])
    wider = [v for suffix in SIDES[1:]
             for v in bca_interval(own[suffix][0], mean, own[suffix][1])]
    return [*bca_interval(reps, mean, jack), reference, diff, *diff_ci, len(reps),
            float(np.nanmean(reps) - mean), *wider]


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
    summary = summarize(metrics)
    replicates = model_replicates(metrics, fold_replicates(records, metric_paths))
    return {"metrics": metrics, "summary": with_intervals(summary, replicates),
            "genes": gene_table(records, "pearson_per_gene"),
            "biomarkers": gene_table(records, "biomarker_pearson")}


def gene_table(records: Sequence[dict], key: str) -> object:
    """One row per run × gene of the records' ``key`` (gene → Pearson): genes.tsv from the
    benchmark genes, biomarkers.tsv from the biomarkers (none in metrics written before)."""
    import pandas as pd

    return pd.DataFrame([{**{k: r[k] for k in RUN_KEYS}, "gene": g, "pearson": v}
                         for r in records for g, v in (r.get(key) or {}).items()],
                        columns=GENE_COLUMNS)


def biomarker_markdown(biomarkers: object) -> str:
    """summary.md's biomarker section (empty without biomarkers): each one's Pearson per
    model and encoder, averaged over folds and seeds, said to be outside the mean above."""
    if not len(biomarkers):
        return ""
    scores = biomarkers.assign(pearson=biomarkers["pearson"].astype(float))
    means = scores.groupby(GROUP_KEYS + ["gene"], sort=False)["pearson"].mean()
    lines = ["", "Biomarkers (trained beside the genes above, scored apart: not in their mean; "
             "Pearson averaged over the seeds and the folds where the gene is a biomarker, "
             "not a benchmark gene; biomarkers.tsv):", "",
             "| scheme | encoder | model | gene | pearson |", "|---|---|---|---|---|"]
    lines += [f"| {s} | {e} | {m} | {g} | {v:.3f} |" for (s, e, m, g), v in means.items()]
    return "\n".join(lines) + "\n"


def score_cell(row: object) -> str:
    """"mean ± fold std (sd over folds), seed sd …, 95 % CI [low, high]": each spread named,
    so the fold spread, the seed spread and the interval are never mistaken for each other."""
    if not np.isfinite(row.pearson_mean):
        return "n/a"
    seeds = f"seed sd {row.seed_std:.3f}" if row.n_seeds > 1 else "1 seed (no seed sd)"
    low, high = getattr(row, "ci_low", np.nan), getattr(row, "ci_high", np.nan)
    interval = f", 95 % CI [{low:.2f}, {high:.2f}]" if np.isfinite(low) else ""
    return f"{row.pearson_mean:.3f} ± {row.fold_std:.3f} (sd over folds), {seeds}{interval}"


def diff_cell(row: object) -> str:
    """"+diff [95 % interval] vs reference", "reference" on the reference's own row."""
    if not isinstance(row.reference, str) or not row.reference:
        return "–"
    if row.reference == row.model:
        return "reference"
    interval = (f" [{row.diff_low:+.3f}, {row.diff_high:+.3f}]"
                if np.isfinite(row.diff_low) else "")
    return f"{row.diff:+.3f}{interval} vs {row.reference}"


def score_notes(summary: object) -> list[str]:
    """What the cells mean, and a warning for every scheme that is not patient-stratified."""
    notes = ["Mean Pearson over genes; mean over folds and seeds ± the population std over "
             "folds of the seed-averaged fold scores (sd over folds: how much the test "
             "patients differ; summary.tsv fold_std); seed sd: the population std over seeds "
             "of the fold-averaged scores (training randomness; seed_std)."]
    return notes + interval_notes(summary) + scheme_warnings(summary["scheme"])


def interval_notes(summary: object) -> list[str]:
    """What the bracketed interval and the Δ columns are, where the summary has them."""
    notes = []
    if "ci_low" in summary and summary["ci_low"].notna().any():
        notes.append(
            "95 % CI: BCa interval (bias-corrected and accelerated) of the mean, from "
            "a spatial block bootstrap of the test spots (square blocks resampled with "
            "replacement within each test slide; the same draws for every model of a fold; "
            "each replicate averaged over folds and seeds like the mean; "
            f"{int(summary['n_bootstrap'].max())} replicates; acceleration from a jackknife "
            "over blocks; summary.tsv ci_low, ci_high). summary.tsv adds the replicates' bias (bootstrap_bias) and the "
            "interval at 2× and 8× the block side (ci_low_2x … ci_high_8x): an interval that "
            "widens with the side rests on blocks shorter than the errors' spatial range. "
            "It covers the sampling of test spots only, not training randomness (the seed "
            "spread) or the choice of test slides.")
    if "diff" in summary:
        notes.append(
            "Δ: paired difference to the best non-STFlow model of the same scheme and encoder "
            "(highest mean), with its 95 % BCa interval over the same bootstrap replicates; an "
            "interval that excludes 0 separates the two models on these test spots.")
    return notes


def scheme_warnings(schemes: Sequence[str]) -> list[str]:
    """A markdown warning for each scheme whose results are not patient-stratified."""
    return [f"**Warning**: {SCHEME_NOTES[s]}." for s in dict.fromkeys(schemes)
            if s in SCHEME_NOTES]


def markdown_grid(summary: object, label: str, labels: dict[str, str] | None = None) -> str:
    """Rows scheme × model (shown as ``labels[model]`` in a ``label`` column when given), one
    column per encoder, cells :func:`score_cell` (and a "Δ encoder" column beside each when
    the summary has the paired differences); the scheme and gene scope above, notes below."""
    encoders = list(dict.fromkeys(summary["encoder"]))
    with_diff = "diff" in summary
    cells = {(r.scheme, r.model, r.encoder): [score_cell(r)] +
             ([diff_cell(r)] if with_diff else []) for r in summary.itertuples()}
    absent = ["–", "–"] if with_diff else ["–"]
    columns = [c for enc in encoders for c in ([enc, f"Δ {enc}"] if with_diff else [enc])]
    head = ["scheme", label] + (["model"] if labels else [])
    lines = ["| " + " | ".join(head + columns) + " |",
             "|" + "---|" * (len(head) + len(columns))]
    for scheme, model in dict.fromkeys(zip(summary["scheme"], summary["model"], strict=True)):
        first = [scheme, labels[model], model] if labels else [scheme, model]
        row = first + [c for enc in encoders for c in cells.get((scheme, model, enc), absent)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join([protocol_line(summary), ""] + lines + [""] + score_notes(summary)) + "\n"


def protocol_line(summary: object) -> str:
    """How the scores were made: the split scheme and the gene scope, with what it means."""
    schemes = ", ".join(dict.fromkeys(map(str, summary["scheme"]))) or "none"
    scopes = list(dict.fromkeys(gene_scope_of(summary).split("+"))) if len(summary) else []
    said = "; ".join(f"**{s}** ({GENE_SCOPES.get(s, 'see genes.json')})" for s in scopes)
    return f"Split scheme: **{schemes}**. Gene scope: {said or 'none'}."


def summary_markdown(summary: object) -> str:
    """The paper's table shape: one row per model, one column per encoder, each cell the
    mean with its fold spread, seed spread and interval named."""
    return markdown_grid(summary, "model")


def write_tables(tables: dict[str, object], out_dir: str | Path) -> None:
    """Write metrics.tsv, summary.tsv, summary.md, genes.tsv and biomarkers.tsv atomically."""
    out_dir = Path(out_dir)
    for name in ("metrics", "summary", "genes", "biomarkers"):
        with atomic_output(out_dir / f"{name}.tsv") as tmp:
            tables[name].to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    with atomic_output(out_dir / "summary.md") as tmp:
        Path(tmp).write_text(summary_markdown(tables["summary"])
                             + biomarker_markdown(tables["biomarkers"]))


def write_summary(metric_paths: Sequence[str | Path], *, out_dir: str | Path) -> dict[str, object]:
    """The aggregate stage: :func:`aggregate` written to ``out_dir`` as the result tables."""
    tables = aggregate(metric_paths)
    write_tables(tables, out_dir)
    log.info("wrote tables for %d runs (fold × seed) to %s", len(tables["metrics"]), out_dir)
    return tables

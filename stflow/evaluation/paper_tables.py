"""The paper's experiments as tables (Tables 1–5 of the STFlow paper), from a run's metrics.

Each table is written as TSV (long form: one row per scheme × encoder × model, or per run
for the inference times) and as markdown (the paper's shape: one row per variant, one column
per encoder, each cell the mean with its fold spread, seed spread and interval named, under
a line giving the split scheme and gene scope). Only the models present in the run are shown. A table none
of whose models ran is still written, because a workflow's outputs are fixed: its TSV holds
only the header and its markdown says which models to add to ``models:``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from stflow.atomic import atomic_output
from stflow.catalogue import PAPER_TABLES
from stflow.data.splits import fold_of, read_splits
from stflow.errors import input_error
from stflow.evaluation.summary import (
    METRIC_COLUMNS,
    SUMMARY_COLUMNS,
    markdown_grid,
    scheme_warnings,
    summarize,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PaperTable:
    """A comparison of the paper: its title, the name of its variant column, and its models
    in the paper's order with their labels (``None``: every model of the run)."""

    title: str
    label: str
    models: dict[str, str] | None


SCORE_TABLES = {
    "methods": PaperTable("Table 1: gene expression prediction (every model of the run)",
                          "model", None),
    "priors": PaperTable("Table 2: prior distribution of STFlow", "prior", {
        "stflow": "ZINB", "stflow_zinb_fitted": "ZINB fitted per gene (ML)",
        "stflow_zero": "zero", "stflow_gaussian": "Gaussian"}),
    "denoisers": PaperTable("Table 3: E(2)-invariant denoiser", "denoiser", {
        "stflow": "frame-averaging transformer", "stflow_egnn": "EGNN"}),
    "ablations": PaperTable("Table 4: ablation study", "variant", {
        "stflow": "STFlow", "stflow_nofm": "w/o FM", "stflow_nofa": "w/o FA"}),
}
TIME_COLUMNS = ["scheme", "gene_scope", "encoder", "model", "seed", "fold", "n_test_samples", "n_test_spots",
                "predict_s", "embed_s", "total_s"]
TABLE_NAMES = list(PAPER_TABLES)  # SCORE_TABLES, then inference_time (tests check)


def read_metrics_table(path: str | Path) -> pd.DataFrame:
    """tables/metrics.tsv, checked for the columns the paper tables need."""
    path = Path(path)
    if not path.exists():
        raise input_error(path, "metrics table does not exist", "run `stflow aggregate` first")
    metrics = pd.read_csv(path, sep="\t", dtype={"scheme": str, "encoder": str, "model": str,
                                                  "fold": str})
    missing = [c for c in METRIC_COLUMNS if c not in metrics.columns]
    if missing:
        raise input_error(path, f"lacks the columns {missing}", "re-run `stflow aggregate`")
    return metrics


def score_table(summary: pd.DataFrame, spec: PaperTable) -> pd.DataFrame:
    """The summary rows of the table's models (present in the run), in the paper's order,
    with the variant label as a column after ``scheme``."""
    if spec.models is None:
        return summary[SUMMARY_COLUMNS].reset_index(drop=True)
    encoders = list(dict.fromkeys(summary["encoder"]))  # the run's order (the config's)
    rows = summary[summary["model"].isin(list(spec.models))].copy()
    rows["_encoder"] = rows["encoder"].map(encoders.index)
    rows["_model"] = rows["model"].map(list(spec.models).index)
    rows = rows.sort_values(["scheme", "_encoder", "_model"], kind="stable")
    rows.insert(1, spec.label, rows["model"].map(spec.models))
    return rows.drop(columns=["_encoder", "_model"]).reset_index(drop=True)


def score_markdown(table: pd.DataFrame, spec: PaperTable) -> str:
    """The table in the paper's shape, with a note on the models that did not run."""
    head = f"## {spec.title}\n\n"
    wanted = list(spec.models or [])
    if table.empty:
        listed = ", ".join(wanted) or "any model"
        return head + (f"_Not run: none of its models ({listed}) is in this run. Add them to "
                       "`models:` in the config to fill this table._\n")
    text = head + markdown_grid(table, spec.label, spec.models)
    absent = [m for m in wanted if m not in set(table["model"])]
    if absent:
        text += f"\n_Not run: {', '.join(absent)} (add to `models:` in the config)._\n"
    return text


def benchmark_seconds(path: Path) -> float:
    """Wall-clock seconds of one job from its Snakemake benchmark TSV (mean over repeats)."""
    if not path.exists():
        raise input_error(path, "benchmark file does not exist", "run the job through the "
                          "workflow (Snakemake writes benchmarks/), or leave Table 5 out")
    frame = pd.read_csv(path, sep="\t")
    if "s" not in frame.columns or frame.empty:
        raise input_error(path, "has no 's' column (seconds) or no rows",
                          "delete it and re-run the job that writes it")
    return float(frame["s"].astype(float).mean())


def inference_times(metrics: pd.DataFrame, splits_path: str | Path,
                    benchmarks: str | Path) -> pd.DataFrame:
    """Table 5 per run: the predict job's time for the fold's test set (without the image
    encoder), the embed jobs' time for its test sections, and their sum (with it)."""
    splits = read_splits(splits_path)
    benchmarks = Path(benchmarks)
    embed: dict[tuple[str, str], float] = {}
    rows = []
    for run in metrics.itertuples():
        test = [str(s) for s in fold_of(splits, run.fold, splits_path).get("test") or []]
        predict_s = benchmark_seconds(benchmarks / "predict" / run.encoder / run.model /
                                      f"seed{run.seed}" / f"{run.fold}.tsv")
        for sample in test:
            if (run.encoder, sample) not in embed:
                embed[run.encoder, sample] = benchmark_seconds(
                    benchmarks / "embed" / run.encoder / f"{sample}.tsv")
        embed_s = sum(embed[run.encoder, s] for s in test)
        rows.append({"scheme": run.scheme, "gene_scope": run.gene_scope,
                     "encoder": run.encoder, "model": run.model, "seed": int(run.seed),
                     "fold": run.fold, "n_test_samples": len(test),
                     "n_test_spots": int(run.n_test_spots), "predict_s": predict_s,
                     "embed_s": embed_s, "total_s": predict_s + embed_s})
    return pd.DataFrame(rows, columns=TIME_COLUMNS)


def time_markdown(times: pd.DataFrame) -> str:
    """Table 5's shape: mean seconds per test set, per model and encoder."""
    head = "## Table 5: inference time per test set\n\n"
    if times.empty:
        return head + "_No runs to time._\n"
    keys = ["scheme", "model", "encoder"]
    means = times.groupby(keys, sort=False)[["predict_s", "embed_s", "total_s"]].mean()
    counts = times.groupby(keys, sort=False).agg(n_folds=("fold", "nunique"),
                                                 n_seeds=("seed", "nunique"))
    lines = ["| scheme | model | encoder | without encoder (s) | encoder (s) | "
             "with encoder (s) |", "|---|---|---|---|---|---|"]
    for key, row in means.iterrows():
        lines.append("| " + " | ".join(key) + " | " + " | ".join(
            f"{row[c]:.2f}" for c in ("predict_s", "embed_s", "total_s")) + " |")
    folds, seeds = int(counts["n_folds"].max()), int(counts["n_seeds"].max())
    notes = [
        "",
        f"Mean over the test sets of {folds} fold(s) and {seeds} seed(s). Without encoder: "
        "wall-clock time of the predict job (Snakemake benchmark: Python start-up, loading "
        "the model and features, predicting every test section). Encoder: embedding the "
        "fold's test sections (the embed jobs, shared by every model and seed). With "
        "encoder: their sum.",
    ]
    return head + "\n".join(lines + notes + scheme_warnings(times["scheme"])) + "\n"


def paper_tables(metrics_path: str | Path, splits_path: str | Path,
                 benchmarks: str | Path) -> dict[str, tuple[pd.DataFrame, str]]:
    """name → (TSV frame, markdown) for every table of ``TABLE_NAMES``."""
    metrics = read_metrics_table(metrics_path)
    summary = summarize(metrics)
    tables = {}
    for name, spec in SCORE_TABLES.items():
        table = score_table(summary, spec)
        tables[name] = (table, score_markdown(table, spec))
        if table.empty:
            log.info("%s: none of %s ran; written with a note", name, list(spec.models or []))
    times = inference_times(metrics, splits_path, benchmarks)
    tables["inference_time"] = (times, time_markdown(times))
    return tables


def write_paper_tables(tables: dict[str, tuple[pd.DataFrame, str]], out_dir: str | Path
                       ) -> list[Path]:
    """Write ``{name}.tsv`` and ``{name}.md`` of every table atomically."""
    out_dir = Path(out_dir)
    written = []
    for name, (frame, markdown) in tables.items():
        with atomic_output(out_dir / f"{name}.tsv") as tmp:
            frame.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
        with atomic_output(out_dir / f"{name}.md") as tmp:
            Path(tmp).write_text(markdown)
        written += [out_dir / f"{name}.tsv", out_dir / f"{name}.md"]
    return written






def write_paper_tables_of_run(metrics: str | Path, *, splits: str | Path, benchmarks: str | Path,
                              out_dir: str | Path) -> list[Path]:
    """The tables stage: the paper's tables of a run (its metrics.tsv, splits.json and job
    benchmarks) written to ``out_dir``."""
    tables = paper_tables(metrics, splits, benchmarks)
    written = write_paper_tables(tables, out_dir)
    log.info("wrote %s to %s", ", ".join(tables), out_dir)
    return written

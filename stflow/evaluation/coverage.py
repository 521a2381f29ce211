"""Do the intervals cover what they claim, and do narrow intervals mark small errors?

Read from the fold prediction files (``layers["truth"]``, ``X``, the conformal quantiles in
``varm`` and each spot's interval scale and shift flag in ``obs``), for every encoder ×
model × seed × fold and every stored level:

- empirical coverage over all test spots and benchmark genes, per test slide too (the
  biomarkers a prediction marks are left out, as they are from its score);
- per-gene coverage (its 10th percentile and median over genes);
- mean width, in log1p and in units of each gene's standard deviation on the test spots;
- the median over genes of Spearman(width, |error|): do wider intervals mark larger errors;
- the area under the selective-risk curve (below) and the share of flagged spots.

Risk against coverage is the selective mean absolute error: per gene, |error| over the gene's
standard deviation on all the fold's test spots, averaged over the x % of spots with the
narrowest intervals, then over genes, for x from one spot to all. A mean Pearson on those
spots would not do: keeping the narrowest spots restricts the range of expression, which
lowers a correlation even where the errors shrink, so it would call the most certain spots
the worst predicted. Its area (AURC, lower is better) is compared with a random ordering's
(the error at 100 %) and the oracle's (spots ordered by their own error). Tied widths are
taken in random order (their errors averaged), so equal widths give the random curve.

The shift flag is reported as the share of flagged spots only: the shift score measures how
far a spot's features lie from the training spots, not how large its error is, and its AUROC
for large errors (0.15–0.49 on her2st) was read as an error warning it is not.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stflow.atomic import atomic_output
from stflow.data.splits import read_splits
from stflow.errors import input_error
from stflow.evaluation.fold_scores import prediction_biomarkers, prediction_gene_scope
from stflow.evaluation.summary import protocol_line
from stflow.metrics import pearson_per_gene
from stflow.provenance import dense

log = logging.getLogger(__name__)

REPORTED_LEVEL = 0.9  # the level of risk-coverage and the markdown table
FRACTIONS = tuple(round(0.1 * i, 1) for i in range(1, 11))
RUN_KEYS = ["scheme", "encoder", "model", "seed", "fold"]
COVERAGE_COLUMNS = RUN_KEYS + [
    "gene_scope", "level", "slide", "n_spots", "calibration", "difficulty",
    "n_calibration_spots", "coverage",
    "gene_coverage_p10", "gene_coverage_median", "width_log1p", "width_sd",
    "width_error_spearman", "selective_mae_aurc", "random_mae_aurc", "oracle_mae_aurc",
    "share_shifted"]


@dataclass
class IntervalSlide:
    """One test slide's truth, prediction, interval quantiles, scales and shift flags."""

    sample: str
    truth: np.ndarray  # (N, G)
    prediction: np.ndarray  # (N, G)
    quantiles: np.ndarray  # (G, L)
    levels: tuple[float, ...]
    scale: np.ndarray  # (N, 1) per spot, or (N, G) per spot and gene
    shifted: np.ndarray  # (N,)
    difficulty: str
    n_calibration_spots: int
    gene_scope: str = "unknown"  # how the genes were chosen (stflow.data.genes.GENE_SCOPES)
    calibration: str = "within"  # whose spots calibrated it: patient (new ones) or within


def read_interval_slide(path: str | Path) -> IntervalSlide | None:
    """A prediction file's interval parts over its benchmark genes (the biomarkers it marks
    are scored apart, never in a mean); None for a file written without intervals."""
    return read_run_slide(path)[1]


def read_run_slide(path: str | Path) -> tuple[tuple[str, str, int, str], IntervalSlide | None]:
    """The run a prediction file records (encoder, model, seed, fold: its
    ``uns["stflow"]``) and its interval parts (None without intervals)."""
    import anndata as ad

    path = Path(path)
    adata = ad.read_h5ad(path)
    info = dict(adata.uns.get("stflow", {}))
    try:
        run = (str(info["encoder"]), str(info["model"]), int(info["seed"]), str(info["fold"]))
    except (KeyError, TypeError, ValueError) as err:
        raise input_error(path, f"records no fold run in uns['stflow'] (lacks {err})",
                          "pass prediction files written by `stflow predict`") from err
    intervals = info.get("intervals")
    if not intervals or "conformal_quantile" not in adata.varm or "truth" not in adata.layers:
        return run, None
    marked = prediction_biomarkers(adata)
    if marked:
        adata = adata[:, ~adata.var_names.isin(marked)]
    return run, IntervalSlide(str(adata.uns.get("sample", path.stem)),
                              dense(adata.layers["truth"]), dense(adata.X),
                              np.asarray(adata.varm["conformal_quantile"], np.float64),
                              tuple(float(v) for v in intervals["levels"]),
                              _interval_scale(adata),
                              adata.obs["shifted"].to_numpy(bool),
                              str(intervals["difficulty"]),
                              int(intervals["n_calibration_spots"]),
                              prediction_gene_scope(adata, path),
                              str(intervals["calibration"]))


def _interval_scale(adata: object) -> np.ndarray:
    """The interval scale as (N, 1) (per spot, in obs) or (N, G) (per spot and gene)."""
    if "interval_scale" in adata.layers:
        return dense(adata.layers["interval_scale"])
    return adata.obs["interval_scale"].to_numpy(np.float64)[:, None]


def half_widths(slide: IntervalSlide, level: float) -> np.ndarray:
    """(N, G) half-width of each spot's interval at ``level``."""
    index = slide.levels.index(level)
    return slide.scale * slide.quantiles[None, :, index]


def clipped_widths(slide: IntervalSlide, level: float) -> np.ndarray:
    """(N, G) width of each spot's interval at ``level`` as written, the lower bound clipped
    at 0 (stflow.intervals.conformal.interval): the impossible part below 0 is no width."""
    half = half_widths(slide, level)
    return half + np.maximum(np.minimum(half, slide.prediction), 0.0)


def width_error_spearman(width: np.ndarray, error: np.ndarray) -> float:
    """Median over genes of Spearman(width, |error|); NaN when no gene's widths vary."""
    from scipy.stats import rankdata

    varies = np.ptp(width, axis=0) > 0
    if not varies.any() or len(width) < 3:
        return float("nan")
    rho = pearson_per_gene(rankdata(error[:, varies], axis=0),
                           rankdata(width[:, varies], axis=0))
    return float(np.nanmedian(rho)) if np.isfinite(rho).any() else float("nan")


def selective_curve(width: np.ndarray, error: np.ndarray) -> np.ndarray:
    """(N,) mean over genes of the mean ``error`` on the k spots with the narrowest ``width``
    (per gene), k = 1 … N; spots of equal width share their mean error (random order)."""
    total = np.zeros(len(width))
    for g in range(width.shape[1]):
        order = np.argsort(width[:, g], kind="stable")
        w, e = width[order, g], error[order, g]
        tie = np.concatenate([[0], np.cumsum(np.diff(w) != 0)])
        total += np.cumsum((np.bincount(tie, e) / np.bincount(tie))[tie])
    return total / (width.shape[1] * np.arange(1, len(width) + 1))


def selective_aurcs(width: np.ndarray, error: np.ndarray) -> dict[str, float]:
    """Area under the selective-error curve ordered by width, by chance (the mean error) and
    by the error itself (the best any ordering can do)."""
    curve = selective_curve(width, error)
    return {"selective_mae_aurc": float(curve.mean()), "random_mae_aurc": float(curve[-1]),
            "oracle_mae_aurc": float(selective_curve(error, error).mean())}


def coverage_rows(slides: Sequence[IntervalSlide], run: dict) -> list[dict]:
    """One row per level × (all test slides pooled, then each slide)."""
    truth = np.concatenate([s.truth for s in slides])
    error = np.abs(truth - np.concatenate([s.prediction for s in slides]))
    spread = np.maximum(truth.std(0), 1e-12)
    parts = [("all", slice(0, len(truth)))]
    start = 0
    for slide in slides:
        parts.append((slide.sample, slice(start, start + len(slide.truth))))
        start += len(slide.truth)
    shifted = np.concatenate([s.shifted for s in slides])
    reported = np.concatenate([half_widths(s, REPORTED_LEVEL) for s in slides])
    ranking = {name: selective_aurcs(reported[part], error[part] / spread)
               for name, part in parts}
    rows = []
    for level in slides[0].levels:
        half = np.concatenate([half_widths(s, level) for s in slides])
        width = np.concatenate([clipped_widths(s, level) for s in slides])
        inside = error <= half
        for name, part in parts:
            per_gene = inside[part].mean(0)
            rows.append({**run, "level": level, "slide": name,
                         "n_spots": int(inside[part].shape[0]),
                         "calibration": slides[0].calibration,
                         "difficulty": slides[0].difficulty,
                         "n_calibration_spots": slides[0].n_calibration_spots,
                         "coverage": float(inside[part].mean()),
                         "gene_coverage_p10": float(np.percentile(per_gene, 10)),
                         "gene_coverage_median": float(np.median(per_gene)),
                         "width_log1p": float(np.mean(width[part])),
                         "width_sd": float(np.mean(width[part] / spread)),
                         "width_error_spearman": width_error_spearman(half[part], error[part]),
                         **ranking[name], "share_shifted": float(np.mean(shifted[part]))})
    return rows


def risk_rows(slides: Sequence[IntervalSlide], run: dict) -> list[dict]:
    """Selective MAE (in gene sd) on the narrowest x % of spots, for each x in FRACTIONS."""
    truth = np.concatenate([s.truth for s in slides])
    error = np.abs(truth - np.concatenate([s.prediction for s in slides]))
    width = np.concatenate([half_widths(s, REPORTED_LEVEL) for s in slides])
    curve = selective_curve(width, error / np.maximum(truth.std(0), 1e-12))
    return [{**run, "fraction": fraction,
             "selective_mae": float(curve[max(1, math.ceil(fraction * len(curve))) - 1])}
            for fraction in FRACTIONS]


def coverage_tables(prediction_files: Sequence[str | Path], splits: str | Path
                    ) -> tuple[object, object]:
    """(coverage, risk) tables over every fold run whose prediction files carry intervals,
    runs in the order their first file is given, each run's slides in the order given."""
    import pandas as pd

    scheme = read_splits(splits)["scheme"]
    runs: dict[tuple[str, str, int, str], list[IntervalSlide | None]] = {}
    for path in prediction_files:
        run, slide = read_run_slide(path)
        runs.setdefault(run, []).append(slide)
    coverage, risk = [], []
    for (encoder, model, seed, fold), slides in runs.items():
        if any(s is None for s in slides):
            log.warning("%s/%s seed %d %s: predictions without intervals (a model that could "
                        "not be calibrated): left out of the coverage table", encoder, model,
                        seed, fold)
            continue
        run = {"scheme": scheme, "encoder": encoder, "model": model, "seed": seed,
               "fold": fold, "gene_scope": "+".join(sorted({s.gene_scope for s in slides}))}
        coverage += coverage_rows(slides, run)
        risk += risk_rows(slides, run)
    return (pd.DataFrame(coverage, columns=COVERAGE_COLUMNS),
            pd.DataFrame(risk, columns=RUN_KEYS + ["fraction", "selective_mae"]))


def coverage_markdown(coverage: object) -> str:
    """Per scheme × encoder × model and level: coverage pooled over every test spot of each
    fold, as mean (min–max) over folds and seeds, with the width and ranking columns."""
    pooled = coverage[coverage["slide"] == "all"]
    head = ("| scheme | encoder | model | calibration | level | coverage (min–max) | gene p10 "
            "| width (sd) | ρ(width, \\|error\\|) | selective MAE AURC (random, oracle) "
            "| shifted |")
    lines = [head, "|" + "---|" * 11]
    for key, group in pooled.groupby(["scheme", "encoder", "model", "calibration", "level"],
                                     sort=False):
        lines.append("| " + " | ".join([*map(str, key[:4]), f"{key[4]:g}",
                     f"{group['coverage'].mean():.3f} ({group['coverage'].min():.3f}–"
                     f"{group['coverage'].max():.3f})",
                     f"{group['gene_coverage_p10'].mean():.3f}",
                     f"{group['width_sd'].mean():.2f}",
                     _cell(group["width_error_spearman"].mean()),
                     f"{group['selective_mae_aurc'].mean():.3f} "
                     f"({group['random_mae_aurc'].mean():.3f}, "
                     f"{group['oracle_mae_aurc'].mean():.3f})",
                     f"{group['share_shifted'].mean():.1%}"]) + " |")
    notes = ["Coverage: share of test spot × gene pairs inside the interval (pooled over the "
             "fold's test slides), mean (min–max) over folds and seeds. Intervals are "
             "normalised split-conformal, calibrated per gene on each model's validation "
             "spots: calibration patient - a training patient the fold model never trained "
             "on, so the test patient's coverage is what a new patient gets; within - the "
             "training patients' own spots (a section or a held-out region), which promises "
             "nothing for a new patient. gene p10: 10th percentile over genes of per-gene coverage. Width in "
             "units of each gene's standard deviation on the test spots, lower bounds clipped "
             "at 0. ρ: median over "
             "genes of Spearman(width, |error|) (blank where widths do not vary). Selective MAE "
             "AURC: area under the curve of the mean |error| (in each gene's sd) on the spots "
             "with the narrowest 90 % intervals against the share kept; lower is better, the "
             "random ordering's (the mean error) and the oracle's (spots by their own error) "
             "beside it. Shifted: share of spots the shift flag marks (far from the training "
             "spots; not an error warning)."]
    return "\n".join([protocol_line(pooled), ""] + lines + [""] + notes) + "\n"


def _cell(value: float) -> str:
    return "" if not np.isfinite(value) else f"{value:.3f}"


def risk_figure(risk: object, path: str | Path) -> None:
    """Selective MAE on the narrowest x % of spots, one line per encoder × model averaged over
    its runs (seed × fold), counted in the legend; a flat line ranks no better than chance."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4))
    ax = figure.subplots()
    for (encoder, model), group in risk.groupby(["encoder", "model"], sort=False):
        curves = group.pivot_table(index=["seed", "fold"], columns="fraction",
                                   values="selective_mae")
        mean = curves.mean()
        ax.plot(mean.index * 100, mean.values, marker="o",
                label=f"{model} ({encoder}): {len(curves)} runs")
    ax.set_xlabel(f"spots kept: the narrowest {REPORTED_LEVEL:.0%} intervals first (%)")
    ax.set_ylabel("mean |error| on them (in gene sd; lower is better)")
    ax.set_title("selective risk against coverage")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7)
    figure.tight_layout()
    with atomic_output(path) as tmp:
        figure.savefig(tmp, dpi=120, format="png")


def write_coverage(prediction_files: Sequence[str | Path], *, splits: str | Path,
                   table: str | Path, markdown: str | Path, risk: str | Path,
                   figure: str | Path) -> tuple[object, object]:
    """The coverage stage: the coverage table (TSV and markdown), the risk-coverage table
    and its figure, each written atomically, from the fold prediction files."""
    coverage, risk_table = coverage_tables(prediction_files, splits)
    for path, frame in ((table, coverage), (risk, risk_table)):
        with atomic_output(path) as tmp:
            frame.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    with atomic_output(markdown) as tmp:
        Path(tmp).write_text(coverage_markdown(coverage))
    risk_figure(risk_table, figure)
    log.info("coverage of %d runs written to %s", len(risk_table) // len(FRACTIONS), table)
    return coverage, risk_table

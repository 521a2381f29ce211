"""Do the intervals cover what they claim, and does the shift flag find the bad spots?

Read from the fold prediction files (``layers["truth"]``, ``X``, the conformal quantiles in
``varm`` and each spot's interval scale and shift score in ``obs``), for every encoder ×
model × seed × fold and every stored level:

- empirical coverage over all test spots and genes, per test slide too;
- per-gene coverage (its 10th percentile and median over genes);
- mean width, in log1p and in units of each gene's standard deviation on the test spots;
- the median over genes of Spearman(width, |error|): do wider intervals mark larger errors;
- the shift score's AUROC for large errors (|error| above the gene's 90th percentile) and
  the share of flagged spots.

Risk against coverage: the mean per-gene Pearson on the x % of spots with the narrowest
intervals, for x = 10 … 100 (NaN below 100 % where a gene's widths are all equal).
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
from stflow.metrics import pearson_per_gene

log = logging.getLogger(__name__)

REPORTED_LEVEL = 0.9  # the level of risk-coverage, Spearman and the markdown table
FRACTIONS = tuple(round(0.1 * i, 1) for i in range(1, 11))
LARGE_ERROR_PERCENTILE = 90.0
RUN_KEYS = ["scheme", "encoder", "model", "seed", "fold"]
COVERAGE_COLUMNS = RUN_KEYS + [
    "level", "slide", "n_spots", "difficulty", "n_calibration_spots", "coverage",
    "gene_coverage_p10", "gene_coverage_median", "width_log1p", "width_sd",
    "width_error_spearman", "shift_auroc", "share_shifted"]


@dataclass
class IntervalSlide:
    """One test slide's truth, prediction, interval quantiles, scales and shift scores."""

    sample: str
    truth: np.ndarray  # (N, G)
    prediction: np.ndarray  # (N, G)
    quantiles: np.ndarray  # (G, L)
    levels: tuple[float, ...]
    scale: np.ndarray  # (N, 1) per spot, or (N, G) per spot and gene
    shift_score: np.ndarray  # (N,)
    shifted: np.ndarray  # (N,)
    difficulty: str
    n_calibration_spots: int


def read_interval_slide(path: str | Path) -> IntervalSlide | None:
    """A prediction file's interval parts; None for a file written without intervals."""
    import anndata as ad

    path = Path(path)
    adata = ad.read_h5ad(path)
    info = dict(adata.uns.get("stflow", {})).get("intervals")
    if not info or "conformal_quantile" not in adata.varm or "truth" not in adata.layers:
        return None
    return IntervalSlide(str(adata.uns.get("sample", path.stem)),
                         _dense(adata.layers["truth"]), _dense(adata.X),
                         np.asarray(adata.varm["conformal_quantile"], np.float64),
                         tuple(float(v) for v in info["levels"]),
                         _interval_scale(adata),
                         adata.obs["shift_score"].to_numpy(np.float64),
                         adata.obs["shifted"].to_numpy(bool), str(info["difficulty"]),
                         int(info["n_calibration_spots"]))


def _interval_scale(adata: object) -> np.ndarray:
    """The interval scale as (N, 1) (per spot, in obs) or (N, G) (per spot and gene)."""
    if "interval_scale" in adata.layers:
        return _dense(adata.layers["interval_scale"])
    return adata.obs["interval_scale"].to_numpy(np.float64)[:, None]


def _dense(matrix: object) -> np.ndarray:
    import scipy.sparse as sp

    return np.asarray(matrix.toarray() if sp.issparse(matrix) else matrix, dtype=np.float64)


def half_widths(slide: IntervalSlide, level: float) -> np.ndarray:
    """(N, G) half-width of each spot's interval at ``level``."""
    index = slide.levels.index(level)
    return slide.scale * slide.quantiles[None, :, index]


def width_error_spearman(width: np.ndarray, error: np.ndarray) -> float:
    """Median over genes of Spearman(width, |error|); NaN when no gene's widths vary."""
    from scipy.stats import rankdata

    varies = np.ptp(width, axis=0) > 0
    if not varies.any() or len(width) < 3:
        return float("nan")
    rho = pearson_per_gene(rankdata(error[:, varies], axis=0),
                           rankdata(width[:, varies], axis=0))
    return float(np.nanmedian(rho)) if np.isfinite(rho).any() else float("nan")


def shift_auroc(shift_score: np.ndarray, error: np.ndarray, threshold: np.ndarray) -> float:
    """AUROC of the per-spot shift score for spot × gene errors above ``threshold`` (G,)."""
    from sklearn.metrics import roc_auc_score

    large = error > threshold[None, :]
    if large.all() or not large.any():
        return float("nan")
    return float(roc_auc_score(large.ravel(), np.repeat(shift_score, error.shape[1])))


def coverage_rows(slides: Sequence[IntervalSlide], run: dict) -> list[dict]:
    """One row per level × (all test slides pooled, then each slide)."""
    truth = np.concatenate([s.truth for s in slides])
    error = np.abs(truth - np.concatenate([s.prediction for s in slides]))
    spread = np.maximum(truth.std(0), 1e-12)
    large = np.percentile(error, LARGE_ERROR_PERCENTILE, axis=0)
    parts = [("all", slice(0, len(truth)))]
    start = 0
    for slide in slides:
        parts.append((slide.sample, slice(start, start + len(slide.truth))))
        start += len(slide.truth)
    shift = np.concatenate([s.shift_score for s in slides])
    shifted = np.concatenate([s.shifted for s in slides])
    rows = []
    for level in slides[0].levels:
        half = np.concatenate([half_widths(s, level) for s in slides])
        inside = error <= half
        for name, part in parts:
            per_gene = inside[part].mean(0)
            rows.append({**run, "level": level, "slide": name,
                         "n_spots": int(inside[part].shape[0]),
                         "difficulty": slides[0].difficulty,
                         "n_calibration_spots": slides[0].n_calibration_spots,
                         "coverage": float(inside[part].mean()),
                         "gene_coverage_p10": float(np.percentile(per_gene, 10)),
                         "gene_coverage_median": float(np.median(per_gene)),
                         "width_log1p": float(np.mean(2 * half[part])),
                         "width_sd": float(np.mean(2 * half[part] / spread)),
                         "width_error_spearman": width_error_spearman(half[part], error[part]),
                         "shift_auroc": shift_auroc(shift[part], error[part], large),
                         "share_shifted": float(np.mean(shifted[part]))})
    return rows


def risk_rows(slides: Sequence[IntervalSlide], run: dict) -> list[dict]:
    """Mean per-gene Pearson on the narrowest x % of spots, for each x in FRACTIONS."""
    truth = np.concatenate([s.truth for s in slides])
    prediction = np.concatenate([s.prediction for s in slides])
    width = np.concatenate([half_widths(s, REPORTED_LEVEL) for s in slides])
    rows = []
    for fraction in FRACTIONS:
        keep = max(3, math.ceil(fraction * len(truth)))
        scores = []
        for g in range(truth.shape[1]):
            if fraction < 1 and np.ptp(width[:, g]) == 0:
                scores.append(np.nan)
                continue
            chosen = np.argsort(width[:, g], kind="stable")[:keep]
            scores.append(pearson_per_gene(truth[chosen, g:g + 1], prediction[chosen, g:g + 1])[0])
        finite = [s for s in scores if np.isfinite(s)]
        rows.append({**run, "fraction": fraction,
                     "pearson": float(np.mean(finite)) if finite else float("nan")})
    return rows


def run_of(folder: Path, scheme: str) -> dict:
    """scheme, encoder, model, seed and fold of predictions/{encoder}/{model}/seed{s}/{fold}."""
    fold, seed, model, encoder = folder.parts[-1], folder.parts[-2], folder.parts[-3], \
        folder.parts[-4]
    if not seed.startswith("seed"):
        raise input_error(folder, "is not a predictions/{encoder}/{model}/seed{seed}/{fold} "
                          "folder", "pass the predict stage's output folders")
    return {"scheme": scheme, "encoder": encoder, "model": model, "seed": int(seed[4:]),
            "fold": fold}


def coverage_tables(prediction_dirs: Sequence[str | Path], splits: str | Path
                    ) -> tuple[object, object]:
    """(coverage, risk) tables over every prediction folder that carries intervals."""
    import pandas as pd

    scheme = read_splits(splits)["scheme"]
    coverage, risk = [], []
    for folder in map(Path, prediction_dirs):
        run = run_of(folder, scheme)
        slides = [read_interval_slide(p) for p in sorted(folder.glob("*.h5ad"))]
        if not slides or any(s is None for s in slides):
            log.warning("%s: predictions without intervals (a model saved before "
                        "calibration): left out of the coverage table", folder)
            continue
        coverage += coverage_rows(slides, run)
        risk += risk_rows(slides, run)
    return (pd.DataFrame(coverage, columns=COVERAGE_COLUMNS),
            pd.DataFrame(risk, columns=RUN_KEYS + ["fraction", "pearson"]))


def coverage_markdown(coverage: object) -> str:
    """Per scheme × encoder × model and level: coverage pooled over every test spot of each
    fold, as mean (min–max) over folds and seeds, with the width and ranking columns."""
    pooled = coverage[coverage["slide"] == "all"]
    head = ("| scheme | encoder | model | level | coverage (min–max) | gene p10 | width (sd) "
            "| ρ(width, \\|error\\|) | shift AUROC | shifted |")
    lines = [head, "|" + "---|" * 10]
    for key, group in pooled.groupby(["scheme", "encoder", "model", "level"], sort=False):
        lines.append("| " + " | ".join([*map(str, key[:3]), f"{key[3]:g}",
                     f"{group['coverage'].mean():.3f} ({group['coverage'].min():.3f}–"
                     f"{group['coverage'].max():.3f})",
                     f"{group['gene_coverage_p10'].mean():.3f}",
                     f"{group['width_sd'].mean():.2f}",
                     _cell(group["width_error_spearman"].mean()),
                     _cell(group["shift_auroc"].mean()),
                     f"{group['share_shifted'].mean():.1%}"]) + " |")
    notes = ["Coverage: share of test spot × gene pairs inside the interval (pooled over the "
             "fold's test slides), mean (min–max) over folds and seeds. Intervals are "
             "normalised split-conformal, calibrated per gene on each model's validation "
             "spots. gene p10: 10th percentile over genes of per-gene coverage. Width in "
             "units of each gene's standard deviation on the test spots. ρ: median over "
             "genes of Spearman(width, |error|) (blank where widths do not vary). Shift "
             "AUROC: the shift score against errors above each gene's 90th percentile."]
    return "\n".join(lines + [""] + notes) + "\n"


def _cell(value: float) -> str:
    return "" if not np.isfinite(value) else f"{value:.3f}"


def risk_figure(risk: object, path: str | Path) -> None:
    """Mean Pearson on the narrowest x % of spots, one line per encoder × model, averaged
    over the runs (seed × fold) whose widths vary; the legend counts them."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4))
    ax = figure.subplots()
    for (encoder, model), group in risk.groupby(["encoder", "model"], sort=False):
        curves = group.pivot_table(index=["seed", "fold"], columns="fraction",
                                   values="pearson", dropna=False)
        ranked = curves.dropna()
        if len(ranked):
            mean = ranked.mean()
            ax.plot(mean.index * 100, mean.values, marker="o",
                    label=f"{model} ({encoder}): {len(ranked)} of {len(curves)} runs")
    ax.set_xlabel(f"spots kept: the narrowest {REPORTED_LEVEL:.0%} intervals first (%)")
    ax.set_ylabel("mean per-gene Pearson")
    ax.set_title("risk against coverage")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "interval widths vary in no run (constant difficulty):\nnothing "
                "to rank", ha="center", va="center", transform=ax.transAxes)
    figure.tight_layout()
    with atomic_output(path) as tmp:
        figure.savefig(tmp, dpi=120, format="png")


def write_coverage(prediction_dirs: Sequence[str | Path], *, splits: str | Path,
                   tables_dir: str | Path, figure: str | Path) -> tuple[object, object]:
    """The coverage stage: tables/coverage.{tsv,md}, tables/risk_coverage.tsv and the
    risk-coverage figure, each written atomically."""
    coverage, risk = coverage_tables(prediction_dirs, splits)
    tables_dir = Path(tables_dir)
    for name, table in (("coverage", coverage), ("risk_coverage", risk)):
        with atomic_output(tables_dir / f"{name}.tsv") as tmp:
            table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    with atomic_output(tables_dir / "coverage.md") as tmp:
        Path(tmp).write_text(coverage_markdown(coverage))
    risk_figure(risk, figure)
    log.info("coverage of %d runs written to %s", len(risk) // len(FRACTIONS), tables_dir)
    return coverage, risk

"""A cohort of predicted slides as one table: one row per slide, one column per gene.

``slides/cohort.h5ad``: X the slide's mean predicted log1p expression over its spots, layers
``lower``/``upper`` the mean of its spots' interval bounds (the spots' calibrated intervals
averaged, not an interval for the slide mean: the errors of neighbouring spots are not
independent, so a narrower interval for the mean would be a claim nobody measured); obs the
sheet's metadata columns, the slide's spots, tissue area, share of spots flagged as unlike the
training spots, and whom its intervals were calibrated for. ``slides/cohort.tsv``: the same
as a table, with the slides that could not be read (status ``missing`` and the reason).
``slides/cohort_maps/{gene}.png``: every slide as a small map, one colour scale per gene.
Each slide's h5ad is read a row chunk at a time, so a cohort of million-spot slides needs the
memory of one chunk.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from stflow.atomic import atomic_output, write_h5ad
from stflow.catalogue import DEFAULT_BIOMARKERS
from stflow.deploy.slide_maps import spot_raster
from stflow.errors import StflowError, input_error
from stflow.evaluation.shown_genes import choose_genes
from stflow.layout import COHORT
from stflow.plotting import new_figure, save_png
from stflow.provenance import PREDICTION_KEYS, stflow_uns

log = logging.getLogger(__name__)

X_SLIDE_MEAN = "mean over the slide's spots of the predicted log1p expression"
SLIDE_INTERVAL = ("mean over the slide's spots of their interval bounds (the spots' "
                  "calibrated intervals averaged; not an interval for the slide mean)")
CHUNK_ROWS = 100_000
MAP_CELLS = 160  # cells along a map's longer side


@dataclass
class SlideSummary:
    """One predicted slide reduced to per-gene means, its facts and small maps."""

    slide: str
    genes: list[str]
    mean: np.ndarray  # (G,)
    lower: np.ndarray | None  # (G,), None without intervals
    upper: np.ndarray | None
    facts: dict[str, Any]
    identity: dict[str, Any]
    rasters: dict[str, np.ndarray] = field(default_factory=dict)


def _text(values: Any) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _read_uns(file: h5py.File) -> dict[str, Any]:
    from anndata.io import read_elem

    return read_elem(file["uns"]["stflow"]) if "uns" in file and "stflow" in file["uns"] else {}


def _column_means(data: h5py.Dataset, n: int) -> np.ndarray:
    """Column means of an (n, G) dataset read ``CHUNK_ROWS`` rows at a time."""
    total = np.zeros(data.shape[1], dtype=np.float64)
    for start in range(0, n, CHUNK_ROWS):
        total += np.asarray(data[start:start + CHUNK_ROWS], dtype=np.float64).sum(axis=0)
    return total / max(n, 1)


def _rasters(file: h5py.File, columns: Mapping[str, int], n: int) -> dict[str, np.ndarray]:
    """A small raster (at most MAP_CELLS a side) of each gene in ``columns``, NaN off tissue."""
    if not columns or n == 0:
        return {}
    xy = np.asarray(file["obsm"]["spatial"][:], dtype=np.float64)
    xy = xy - xy.min(axis=0)
    extent = float(xy.max()) + 1.0
    shape = (int(xy[:, 1].max()) + 1, int(xy[:, 0].max()) + 1)
    picked = sorted(columns.values())
    values = np.concatenate([np.asarray(file["X"][s:s + CHUNK_ROWS][:, picked], np.float64)
                             for s in range(0, n, CHUNK_ROWS)])
    return {gene: spot_raster(xy, values[:, picked.index(j)], shape, extent / MAP_CELLS)[0]
            for gene, j in columns.items()}


def summarise_slide(slide: str, h5ad: str | Path, drawn: Sequence[str]) -> SlideSummary:
    """Per-gene means, facts and maps of ``drawn`` genes of one slide's prediction."""
    try:
        with h5py.File(h5ad, "r") as file:
            genes = _text(file["var"]["_index"][:])
            n = int(file["X"].shape[0])
            uns = _read_uns(file)
            layers = file.get("layers", {})
            bounds = [_column_means(layers[k], n) if k in layers else None
                      for k in ("lower", "upper")]
            shifted = (float(np.mean(file["obs"]["shifted"][:])) if "shifted" in file["obs"]
                       and n else None)
            summary = SlideSummary(
                slide, genes, _column_means(file["X"], n), *bounds,
                facts=_facts(uns, n, shifted),
                identity={key: uns.get(key) for key in (*PREDICTION_KEYS, "model_dir")},
                rasters=_rasters(file, {g: genes.index(g) for g in drawn if g in genes}, n))
    except (OSError, KeyError, ValueError) as err:
        raise input_error(h5ad, f"is not a readable slide prediction ({err})",
                          f"delete it and rerun the workflow to predict slide {slide} again"
                          ) from err
    return summary


def _facts(uns: Mapping[str, Any], n: int, shifted: float | None) -> dict[str, Any]:
    """The cohort's obs columns of one slide, from its ``uns["stflow"]``."""
    intervals = uns.get("intervals") or {}
    def number(value: Any) -> float:
        return float("nan") if value is None else float(value)

    return {"um_per_px": number(uns.get("mpp")), "um_per_px_from": str(uns.get("mpp_source")),
            "spots": n, "tissue_area_mm2": number(uns.get("tissue_area_mm2")),
            "share_shifted": number(shifted),
            "interval_level": number(intervals.get("level")),
            "calibration": intervals.get("calibration", intervals.get("method", "none")),
            "calibrated_for": intervals.get("calibrated_for", intervals.get("reason", ""))}


def _check_same_genes(summaries: Sequence[SlideSummary], h5ads: Mapping[str, str | Path]
                      ) -> list[str]:
    genes = summaries[0].genes
    for s in summaries[1:]:
        if s.genes != genes:
            raise input_error(h5ads[s.slide], f"predicts {len(s.genes)} genes unlike slide "
                              f"{summaries[0].slide}'s {len(genes)}: another model predicted it",
                              "delete the cohort's slide predictions made by an older model "
                              "and rerun the workflow")
    return genes


def cohort_anndata(summaries: Sequence[SlideSummary], genes: Sequence[str],
                   metadata: Mapping[str, Mapping[str, str]],
                   missing: Mapping[str, str]) -> Any:
    """The cohort AnnData: one row per predicted slide (``missing``: slide -> why not)."""
    import anndata as ad

    obs = pd.DataFrame([{**metadata.get(s.slide, {}), **s.facts} for s in summaries],
                       index=pd.Index([s.slide for s in summaries], name="slide"))
    for column in {key for values in metadata.values() for key in values}:
        obs[column] = _typed(obs[column])
    layers = {}
    if all(s.lower is not None for s in summaries):
        layers = {"lower": np.stack([s.lower for s in summaries]).astype(np.float32),
                  "upper": np.stack([s.upper for s in summaries]).astype(np.float32)}
    adata = ad.AnnData(X=np.stack([s.mean for s in summaries]).astype(np.float32), obs=obs,
                       var=pd.DataFrame(index=pd.Index(list(genes))), layers=layers)
    adata.uns["stflow"] = stflow_uns("cohort", COHORT, X_SLIDE_MEAN, **summaries[0].identity,
                                     n_slides=len(summaries), slide_interval=SLIDE_INTERVAL,
                                     missing=dict(missing))
    return adata


def _typed(column: pd.Series) -> pd.Series:
    """A metadata column as written, or as numbers when every filled cell is one (empty
    cells then missing), so that it stays numeric in the h5ad and a spreadsheet."""
    filled = column.astype(str).str.strip().replace("", np.nan)
    try:
        return pd.to_numeric(filled)
    except (ValueError, TypeError):
        return column.astype(str)


def cohort_table(slides: Sequence[str], adata: Any, metadata: Mapping[str, Mapping[str, str]],
                 missing: Mapping[str, str]) -> pd.DataFrame:
    """Every slide in sheet order: status (predicted / missing), the reason, its metadata
    and facts, then per gene its mean and (with intervals) ``{gene}_lower``/``_upper``."""
    genes = list(adata.var_names)
    rows = []
    for slide in slides:
        row: dict[str, Any] = {"slide": slide}
        if slide in missing:
            row.update(status="missing", reason=missing[slide], **metadata.get(slide, {}))
        else:
            i = adata.obs_names.get_loc(slide)
            row.update(status="predicted", reason="", **adata.obs.iloc[i].to_dict())
            for j, gene in enumerate(genes):
                row[gene] = float(adata.X[i, j])
                if "lower" in adata.layers:
                    row[f"{gene}_lower"] = float(adata.layers["lower"][i, j])
                    row[f"{gene}_upper"] = float(adata.layers["upper"][i, j])
        rows.append(row)
    return pd.DataFrame(rows)


def draw_cohort_maps(summaries: Sequence[SlideSummary], drawn: Sequence[str],
                     missing: Mapping[str, str], out: Path) -> list[Path]:
    """One PNG per gene: every slide's small map on one colour scale (1st-99th percentile
    over the cohort's spots' cells), the missing slides as labelled empty panels."""
    names = [s.slide for s in summaries] + list(missing)
    cols = max(1, math.ceil(math.sqrt(len(names))))
    rows = math.ceil(len(names) / cols)
    written = []
    with atomic_output(out) as tmp:
        tmp.mkdir()
        for gene in drawn:
            values = np.concatenate([s.rasters[gene][np.isfinite(s.rasters[gene])].ravel()
                                     for s in summaries if gene in s.rasters] or [np.zeros(1)])
            vmin, vmax = np.percentile(values, [1, 99])
            fig, axes = new_figure(rows, cols, figsize=(1.6 * cols + 0.8, 1.6 * rows + 0.4))
            image = None
            for ax, name in zip(axes.ravel(), names, strict=False):
                ax.set_title(name, fontsize=6)
                ax.set_axis_off()
                summary = next((s for s in summaries if s.slide == name), None)
                if summary is None or gene not in summary.rasters:
                    ax.text(0.5, 0.5, "not predicted", ha="center", va="center", fontsize=6,
                            transform=ax.transAxes)
                    continue
                image = ax.imshow(summary.rasters[gene], cmap="viridis", vmin=vmin, vmax=vmax,
                                  interpolation="nearest")
            for ax in axes.ravel()[len(names):]:
                ax.set_axis_off()
            if image is not None:
                fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01,
                             label=f"{gene}: predicted log1p")
            fig.suptitle(f"{gene} across {len(summaries)} slides (one colour scale)",
                         fontsize=9)
            file = f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', gene)}.png"
            save_png(fig, tmp / file)
            written.append(out / file)
    return written


def read_checks(checks: Mapping[str, str | Path]) -> dict[str, dict[str, Any]]:
    """slide -> its slide_check record (stflow.deploy.slide_check)."""
    return {slide: json.loads(Path(path).read_text()) for slide, path in checks.items()}


def write_cohort(slides: Sequence[str], h5ads: Mapping[str, str | Path],
                 checks: Mapping[str, str | Path], metadata: Mapping[str, Mapping[str, str]],
                 genes: Sequence[str], out_h5ad: str | Path, out_tsv: str | Path,
                 out_maps: str | Path) -> Any:
    """Summarise each predicted slide (``h5ads``: slide -> file, the readable ones), list
    the others with the reason their check gave, and write the h5ad, table and maps."""
    records = read_checks(checks)
    missing = {s: records.get(s, {}).get("reason", "not predicted") for s in slides
               if s not in h5ads}
    if not h5ads:
        raise StflowError(f"{out_h5ad}: none of the {len(slides)} slides could be read "
                          f"({missing}). Fix: correct the images (see slides/checks/*.json)")
    first = next(iter(h5ads.values()))
    with h5py.File(first, "r") as file:
        all_genes = _text(file["var"]["_index"][:])
    drawn, note = choose_genes(list(genes) or list(DEFAULT_BIOMARKERS), all_genes)
    if note:
        log.info("cohort maps: %s", note)
    summaries = []
    for i, slide in enumerate(s for s in slides if s in h5ads):
        summaries.append(summarise_slide(slide, h5ads[slide], drawn))
        if (i + 1) % 10 == 0 or i + 1 == len(h5ads):
            log.info("cohort: %d of %d slides read", i + 1, len(h5ads))
    adata = cohort_anndata(summaries, _check_same_genes(summaries, h5ads), metadata, missing)
    write_h5ad(adata, out_h5ad)
    with atomic_output(out_tsv) as tmp:
        cohort_table(slides, adata, metadata, missing).to_csv(tmp, sep="\t", index=False)
    draw_cohort_maps(summaries, drawn, missing, Path(out_maps))
    if missing:
        log.warning("cohort: %d slide(s) missing, each with its reason in %s: %s",
                    len(missing), out_tsv, sorted(missing))
    return adata

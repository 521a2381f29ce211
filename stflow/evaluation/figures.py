"""Figures of a finished run: biomarker maps (the paper's Figure 3), training curves, and a
comparison of models with fold error bars.

Everything is read back from the run's artifacts (predictions h5ad, history.tsv,
tables/metrics.tsv), so the figures show exactly what was evaluated.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from tqdm import tqdm

from stflow import layout
from stflow.atomic import atomic_output
from stflow.errors import input_error
from stflow.evaluation.fold_scores import prediction_biomarkers
from stflow.evaluation.shown_genes import choose_genes
from stflow.metrics import pearson_per_gene
from stflow.plotting import new_figure, save_png

log = logging.getLogger(__name__)


def minmax(values: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] per panel, as the paper's Figure 3 does; constant values give 0."""
    values = np.asarray(values, dtype=np.float64)
    span = values.max() - values.min()
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)


def thumbnail(image_path: str | Path, max_px: int = 1024) -> tuple[np.ndarray, float] | None:
    """A downsampled RGB H&E image and its level-0 pixels per thumbnail pixel (or None).

    Reads through the patch stage's slide readers (openslide or the plain-image fallback);
    a sample whose "image" is a HEST-bench patch file has no slide to show.
    """
    from stflow.data.patches import open_slide

    path = Path(image_path)
    if not path.exists() or path.suffix.lower() in {".h5", ".hdf5"}:
        log.warning("%s: no H&E slide to draw under the maps", path)
        return None
    with open_slide(path) as reader:
        image, scale = reader.thumbnail(max_px)
    return np.asarray(image.convert("RGB")), scale


def _image_path(st_path: Path) -> str | None:
    """``uns["image_path"]`` of an ingested sample, read without loading its counts."""
    import h5py

    if not st_path.exists():
        return None
    with h5py.File(st_path, "r") as handle:
        if "uns" not in handle or "image_path" not in handle["uns"]:
            return None
        value = handle["uns"]["image_path"][()]
    return value.decode() if isinstance(value, bytes) else str(value)


def _spot_panel(ax, coords: np.ndarray, values: np.ndarray, background, title: str) -> None:
    if background is not None:
        image, scale = background
        ax.imshow(image, extent=(0, image.shape[1] * scale, image.shape[0] * scale, 0))
    ax.scatter(coords[:, 0], coords[:, 1], c=minmax(values), cmap="viridis", vmin=0, vmax=1,
               s=max(2.0, 3000.0 / max(len(values), 1)), linewidths=0)
    pad = np.ptp(coords, axis=0).max() * 0.05 + 1
    ax.set_xlim(coords[:, 0].min() - pad, coords[:, 0].max() + pad)
    ax.set_ylim(coords[:, 1].max() + pad, coords[:, 1].min() - pad)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)


def biomarker_figure(predictions: dict[str, list[Path]], genes: Sequence[str],
                     st_files: Mapping[str, Path], out: str | Path) -> None:
    """Truth next to every model's prediction, per test sample and gene (Figure 3).

    ``predictions`` maps a model name to its prediction h5ad files (one per test sample).
    """
    import anndata as ad

    models = list(predictions)
    by_sample: dict[str, dict[str, ad.AnnData]] = {}
    for model in models:
        for path in predictions[model]:
            by_sample.setdefault(Path(path).stem, {})[model] = ad.read_h5ad(path)
    if not by_sample:
        raise input_error(out, "no prediction files to draw", "run the predict stage first")
    first = next(iter(next(iter(by_sample.values())).values()))
    shown, note = choose_genes(genes, list(first.var_names))
    extra = [g for g in shown if g in prediction_biomarkers(first)]
    if extra:  # say which maps lie outside the benchmark mean
        note = "; ".join(filter(None, [note, f"{', '.join(extra)}: biomarker, trained beside "
                                       "the benchmark genes and scored apart"]))
    if note:
        log.info("biomarker maps: %s", note)
    rows = [(s, g) for s in sorted(by_sample) for g in shown]
    fig, axes = new_figure(len(rows), len(models) + 1,
                           figsize=(2.4 * (len(models) + 1), 2.4 * len(rows)))
    for r, (sample, gene) in enumerate(rows):
        per_model = by_sample[sample]
        reference = next(iter(per_model.values()))
        background = None
        image_path = _image_path(st_files[sample]) if sample in st_files else None
        background = thumbnail(image_path) if image_path else None
        coords = np.asarray(reference.obsm["spatial"])
        truth = np.asarray(reference[:, gene].layers["truth"]).ravel()
        _spot_panel(axes[r, 0], coords, truth, background, f"{sample} {gene}\nmeasured")
        for c, model in enumerate(models, start=1):
            if model not in per_model:
                axes[r, c].axis("off")
                continue
            adata = per_model[model]
            pred = np.asarray(adata[:, gene].X).ravel()
            score = pearson_per_gene(truth[:, None], pred[:, None])[0]  # as evaluated
            _spot_panel(axes[r, c], np.asarray(adata.obsm["spatial"]), pred, background,
                        f"{model}\nr = {score:.3f}")
    if note:
        fig.suptitle(note, fontsize=8)
    fig.tight_layout()
    _save(fig, out)


def training_curves(histories: dict[tuple[str, str, str], pd.DataFrame],
                    out: str | Path) -> None:
    """Training loss and validation Pearson per epoch; ``histories`` is keyed by
    (encoder, model, run), the run naming the fold (and the seed, with several)."""
    encoders = sorted({key[0] for key in histories}) or [""]
    models = sorted({key[1] for key in histories})
    colors = {m: matplotlib.colormaps["tab10"](i % 10) for i, m in enumerate(models)}
    fig, axes = new_figure(len(encoders), 2, figsize=(10, 3.2 * len(encoders)))
    for (encoder, model, fold), frame in sorted(histories.items()):
        row = encoders.index(encoder)
        if "member" in frame:  # an ensemble: draw its first network's curve
            frame = frame[frame["member"].fillna(0) == 0]
        for col, column in enumerate(("train_loss", "val_pearson")):
            if column in frame and frame[column].notna().any():
                axes[row, col].plot(frame["epoch"], frame[column], marker=".",
                                    color=colors[model], alpha=0.8,
                                    label=f"{model} {fold}")
    for row, encoder in enumerate(encoders):
        axes[row, 0].set(title=f"{encoder}: training loss", xlabel="epoch", ylabel="loss")
        axes[row, 1].set(title=f"{encoder}: validation Pearson", xlabel="epoch",
                         ylabel="mean Pearson")
        if axes[row, 1].lines:
            axes[row, 1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    _save(fig, out)


def comparison_chart(metrics: pd.DataFrame, out: str | Path) -> None:
    """Mean Pearson per model and encoder: bar = fold mean, error bar = fold std, dots = folds.

    With several seeds each fold's score is first averaged over the seeds, so the error bar
    is the fold spread, as ``fold_std`` in summary.tsv.
    """
    required = {"encoder", "model", "fold", "pearson_mean"}
    if not required <= set(metrics.columns):
        raise input_error(layout.METRICS_TABLE, f"lacks columns {sorted(required - set(metrics))}",
                          "re-run the aggregate stage")
    metrics = (metrics.groupby(["encoder", "model", "fold"], sort=False)["pearson_mean"]
               .mean().reset_index())
    encoders = sorted(metrics["encoder"].unique())
    fig, axes = new_figure(1, len(encoders),
                           figsize=(1.0 + 1.1 * metrics["model"].nunique() * len(encoders), 3.6))
    for ax, encoder in zip(axes[0], encoders, strict=True):
        sub = metrics[metrics["encoder"] == encoder]
        grouped = sub.groupby("model", sort=False)["pearson_mean"]
        means, stds = grouped.mean(), grouped.std(ddof=0)
        x = np.arange(len(means))
        ax.bar(x, means.values, yerr=stds.values, capsize=4, color="#8fb3d9", edgecolor="k")
        for i, model in enumerate(means.index):
            values = sub.loc[sub["model"] == model, "pearson_mean"].to_numpy()
            ax.scatter(np.full(len(values), x[i]), values, color="k", s=10, zorder=3)
        ax.set_xticks(x, means.index, rotation=45, ha="right")
        ax.set(title=encoder, ylabel="mean Pearson over genes")
        ax.axhline(0, color="grey", linewidth=0.5)
    fig.tight_layout()
    _save(fig, out)


def _save(fig, out: str | Path) -> None:
    with atomic_output(out) as tmp:
        save_png(fig, tmp)


@dataclass(frozen=True)
class FigureInputs:
    """The files the figures read, keyed as they are drawn."""

    metrics: Path  # tables/metrics.tsv
    histories: dict[tuple[str, str, str], Path]  # (encoder, model, run) → history.tsv
    predictions: dict[tuple[str, str], dict[str, list[Path]]]  # (encoder, fold) → model → h5ads
    st_files: dict[str, Path]  # sample → its st h5ad (the H&E behind the maps)


def figure_inputs(results: str | Path, *, encoders: Sequence[str], models: Sequence[str],
                  folds: Sequence[str], seeds: Sequence[int] = (0,)) -> FigureInputs:
    """The files of a results folder the figures read (paths: :mod:`stflow.layout`): the
    rule's script and ``stflow figures`` hand a results folder, the figures take files. The
    run of a history is the fold, prefixed by the seed when there are several; the maps use
    the first seed's predictions."""
    results = Path(results)
    histories = {
        (encoder, model, f"seed{seed} {fold}" if len(seeds) > 1 else fold): layout.under(
            results, layout.MODEL, encoder=encoder, model=model, seed=seed, fold=fold
        ) / "history.tsv"
        for encoder in encoders for model in models for seed in seeds for fold in folds}
    predictions = {(encoder, fold): {model: sorted(layout.under(
        results, layout.PREDICTIONS, encoder=encoder, model=model, seed=seeds[0],
        fold=fold).glob("*.h5ad")) for model in models} for encoder in encoders for fold in folds}
    st_files = {path.stem: path for path in sorted((results / layout.ST_DIR).glob("*.h5ad"))}
    return FigureInputs(results / layout.METRICS_TABLE, histories, predictions, st_files)


def read_histories(paths: Mapping[tuple[str, str, str], Path]
                   ) -> dict[tuple[str, str, str], pd.DataFrame]:
    """Each training history.tsv, keyed as given; a missing one is refused by name."""
    for path in paths.values():
        if not path.exists():
            raise input_error(path, "training history is missing",
                              "run the train stage for this model, seed and fold")
    return {key: pd.read_csv(path, sep="\t") for key, path in paths.items()}


def make_figures(inputs: FigureInputs, *, encoders: Sequence[str], models: Sequence[str],
                 genes: Sequence[str], comparison: str | Path, curves: str | Path,
                 biomarkers: str | Path) -> list[Path]:
    """Write the model comparison, the training curves and, per encoder and fold, one
    biomarker map (``biomarkers``/{encoder}/{fold}.png, a folder written whole)."""
    if not inputs.metrics.exists():
        raise input_error(inputs.metrics, "metrics table is missing", "run `stflow aggregate`")
    metrics = pd.read_csv(inputs.metrics, sep="\t")
    metrics = metrics[metrics["encoder"].isin(encoders) & metrics["model"].isin(models)]
    comparison_chart(metrics, comparison)
    training_curves(read_histories(inputs.histories), curves)
    written = [Path(comparison), Path(curves)]
    with atomic_output(biomarkers) as tmp:
        for (encoder, fold), predictions in tqdm(inputs.predictions.items(),
                                                 desc="biomarker maps"):
            name = layout.BIOMARKER_MAP.format(encoder=encoder, fold=fold)
            biomarker_figure(predictions, genes, inputs.st_files, tmp / name)
            written.append(Path(biomarkers) / name)
    return written

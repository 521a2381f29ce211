"""Predict expression maps, with calibrated per-spot intervals, for new H&E slides.

One slide goes: thumbnail → tissue mask → virtual spots (the training pitch and lattice) →
patches with the training window, streamed into the model's own encoder → kNN graph in
microns → several flow samples over the whole slide. Their mean is the prediction; the
model's split-conformal calibration gives each spot and gene an interval at the chosen
level, and its shift reference flags spots unlike the training data (at most 5 % of spots
exchangeable with the validation spots are flagged): a claim about the image, not that the
prediction is wrong; the slide's share flagged (``uns["stflow"]["intervals"]
["share_shifted"]``) is the number to read. The raw spread of the samples is kept too, named
as what it is (uncalibrated). All go into
``{out}/{name}.h5ad`` with PNG maps of chosen genes in ``{out}/{name}_maps/`` (and, when
asked, the same as SpatialData in ``{out}/{name}.zarr``). Only the
model folder is needed (``deploy.json``; ``calibration.*`` for the intervals).
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from stflow import __version__
from stflow.catalogue import DEFAULT_BIOMARKERS
from stflow.choices import DEFAULT_MAX_SPOTS
from stflow.data.dataset import Slide
from stflow.data.graph import knn_graph
from stflow.data.patches.readers import SlideReader, open_slide
from stflow.data.patches.tissue import tissue_mask
from stflow.data.spatial_image import HIRES_SIDE, spatial_uns
from stflow.deploy.given_features import FeatureStore, open_feature_store
from stflow.deploy.slide_maps import write_maps
from stflow.deploy.slide_rows import SlideRows
from stflow.deploy.slide_scale import slide_mpp
from stflow.deploy.spot_budget import check_spot_count, lattice_estimate, tissue_area_um2
from stflow.deploy.spot_grid import LAYOUTS, SpotLayout, VirtualSpots, given_spots, virtual_spots
from stflow.deploy.window_embedding import StreamTimes, embed_windows
from stflow.device import resolve_device
from stflow.errors import StflowError, check_field_types, input_error
from stflow.evaluation.shown_genes import choose_genes
from stflow.inference.model_folder import open_model_folder
from stflow.inference.prediction_anndata import ModelGraph, prediction_anndata, write_prediction
from stflow.intervals.calibration import shift_scores
from stflow.intervals.conformal import DEFAULT_LEVEL, check_level
from stflow.provenance import X_PREDICTED, stflow_uns
from stflow.records.deployment import Deployment

log = logging.getLogger(__name__)

NAME = re.compile(r"[^A-Za-z0-9_.-]+")
NO_INTERVALS = {"method": "none", "reason": "the model folder has no calibration"}


@dataclass(frozen=True)
class SlideOptions:
    """Settings of a slide prediction; None takes the model's training value."""

    n_samples: int = 8
    pitch_um: float | None = None
    layout: str | None = None
    min_tissue: float | None = None
    genes: tuple[str, ...] = ()  # drawn as PNG maps; default ERBB2, GATA3 or the first two
    batch_size: int = 32
    workers: int | None = None
    device: str = "auto"
    seed: int = 0
    weights: str | None = None  # local encoder checkpoint (offline foundation models)
    encoder: str | None = None  # refused unless it is the model's encoder
    level: float = DEFAULT_LEVEL  # coverage of layers lower/upper
    spatialdata: bool = False  # also write {name}.zarr (SpatialData: H&E, spots, table)
    chunk_spots: int | None = 100_000  # spots per piece of the row-wise work; None/0: one
    max_spots: int | None = DEFAULT_MAX_SPOTS  # refused above this, before any work; None: no cap

    def __post_init__(self) -> None:
        check_field_types(self, "predict-slide options")


@dataclass
class SlideResult:
    """Where one slide's outputs are, how many spots, and how long each part took."""

    name: str
    h5ad: Path
    maps: Path
    n_spots: int
    seconds: dict[str, float] = field(default_factory=dict)
    spatialdata: Path | None = None


class DeployedModel:
    """A model folder ready to apply: deployment record, estimator and the encoder it needs."""

    def __init__(self, model_dir: str | Path, options: SlideOptions,
                 features: FeatureStore | None = None) -> None:
        """``features``: the slide's given features, checked against the model in place of
        the encoder, which is then not loaded."""
        self.dir = Path(model_dir).resolve()
        folder = open_model_folder(self.dir, device=options.device, deployable=True,
                                   encoder=options.encoder)
        self.deployment: Deployment = folder.deployment
        self.estimator, self.calibration = folder.estimator, folder.calibration
        self.device = resolve_device(options.device)
        self.encoder = None
        if features is not None:
            features.check_model(self.deployment)
        else:
            self.encoder = self._encoder(options.weights)

    def _encoder(self, weights: str | None) -> Any:
        """The model's encoder (``weights``: a local checkpoint), refused unless its weights
        and feature width are those the model was trained with."""
        from stflow.data.encoders import load_encoder

        dep = self.deployment
        encoder = load_encoder(dep.encoder, weights)
        if encoder.weights_sha256 != dep.weights_sha256:
            raise input_error(encoder.weights_path, f"these '{dep.encoder}' weights "
                              f"(sha256 {encoder.weights_sha256[:12]}…) are not the ones "
                              f"the model was trained with ({dep.weights_sha256[:12]}…, "
                              f"{self.dir / 'deploy.json'})", "pass the same checkpoint with "
                              "--weights, or use a model trained on these weights")
        if encoder.feature_dim != dep.feature_dim:
            raise input_error(self.dir, f"expects {dep.feature_dim} features, encoder "
                              f"'{dep.encoder}' gives {encoder.feature_dim}",
                              "use the encoder checkpoint the model was trained with")
        return encoder

    def identity(self) -> dict[str, Any]:
        """The model's identity, for ``uns["stflow"]``."""
        dep = self.deployment
        return {"model_dir": str(self.dir), "model": dep.model, "fold": dep.fold,
                "trained_on": list(dep.trained_on), "encoder": dep.encoder,
                "weights_sha256": dep.weights_sha256, "n_genes": len(dep.genes),
                "patch_size_um": dep.patch_size_um, "patch_size_px": dep.patch_size_px,
                "graph_k": dep.graph_k, "training_pitch_um": dep.pitch_um,
                "training_layout": dep.layout, "stflow_version": __version__}

    def draw(self, slide: Slide, n_samples: int, seed: int, chunk_spots: int | None = None,
               reuse_features: bool = False) -> tuple[np.ndarray, np.ndarray, str]:
        """(mean, std, what the spread means) of the model's predictions for one slide; the
        spread is the samples' own, not a calibrated uncertainty. An estimator that
        ``draws`` keeps one sample at a time, not all of them, and with ``reuse_features``
        may overwrite the slide's features."""
        genes = len(self.deployment.genes)
        n_draws, draws = (self.estimator.distinct_draws(n_samples) if self.estimator.draws
                          else (1, None))
        if draws is None:
            mean = np.asarray(self.estimator.predict([slide])[0], dtype=np.float32)
            std = np.zeros_like(mean)
            meaning = f"none: {self.deployment.model} is deterministic, so sample_std is 0"
        else:
            mean, std = self.estimator.draw_moments(slide, n_draws, seed=seed,
                                                      chunk_spots=chunk_spots,
                                                      reuse_features=reuse_features)
            meaning = (f"standard deviation (ddof=1) of {draws}; uncalibrated (see "
                       "layers lower/upper for calibrated intervals)")
        if mean.shape != (slide.n_spots, genes) or not np.isfinite(mean).all():
            raise StflowError(f"{self.dir}: the model returned predictions of shape "
                              f"{mean.shape} (expected {(slide.n_spots, genes)}) or non-finite "
                              "values. Fix: re-train the model with this version of stflow")
        return mean, std, meaning


def read_spots_file(path: str | Path) -> tuple[np.ndarray, list[str] | None]:
    """Centres (level-0 px) and optional names from a CSV/TSV (x, y[, barcode]) or h5ad."""
    path = Path(path)
    if not path.is_file():
        raise input_error(path, "spots file not found", "give a CSV/TSV with x, y columns "
                          "(level-0 pixels) or an h5ad with obsm['spatial']")
    if path.suffix == ".h5ad":
        import anndata as ad

        adata = ad.read_h5ad(path, backed="r")
        try:
            if "spatial" not in adata.obsm:
                raise input_error(path, "has no obsm['spatial']",
                                  "give an h5ad whose obsm['spatial'] holds level-0 centres")
            return np.asarray(adata.obsm["spatial"], np.float64), list(adata.obs_names)
        finally:
            adata.file.close()
    table = pd.read_csv(path, sep=None, engine="python")
    if not {"x", "y"} <= set(table.columns):
        raise input_error(path, f"has columns {list(table.columns)}, not x and y",
                          "name the level-0 pixel columns x (column) and y (row)")
    names = table["barcode"].astype(str).tolist() if "barcode" in table else None
    return table[["x", "y"]].to_numpy(np.float64), names


def spot_layout(deployment: Deployment, options: SlideOptions) -> SpotLayout:
    """The training pitch and lattice, unless the options set them."""
    layout = options.layout or deployment.layout
    if layout not in LAYOUTS:
        raise input_error("--layout", f"'{layout}' is unknown", f"use one of {list(LAYOUTS)}")
    pitch = options.pitch_um if options.pitch_um is not None else deployment.pitch_um
    if not pitch > 0:
        raise input_error("--pitch-um", f"{pitch} is not positive", "give a pitch in microns")
    return SpotLayout(float(pitch), layout)


def genes_to_draw(wanted: Sequence[str], genes: Sequence[str]) -> list[str]:
    """Requested genes that the model predicts; default ERBB2/GATA3 if there, else the first two."""
    shown, note = choose_genes(list(wanted) or list(DEFAULT_BIOMARKERS), list(genes))
    if note and wanted:
        log.info("maps: %s", note)
    return shown


@dataclass(frozen=True)
class Tissue:
    """What the tissue mask found: the stain threshold it chose and the tissue's area (the
    cohort table's per-slide area)."""

    threshold: float
    area_mm2: float


def place_spots(reader: SlideReader, mpp: float, dep: Deployment, options: SlideOptions,
                spots: np.ndarray | None) -> tuple[VirtualSpots, Image.Image, float, Tissue,
                                                   SpotLayout]:
    """Thumbnail, tissue mask and spots: the virtual lattice, or the given centres. A lattice
    whose estimated count passes ``--max-spots`` is refused before it is built."""
    layout = spot_layout(dep, options)
    min_tissue = dep.min_tissue if options.min_tissue is None else options.min_tissue
    if not 0 <= min_tissue <= 1:
        raise input_error("--min-tissue", f"{min_tissue}", "use a fraction in [0, 1]")
    thumb, scale = reader.thumbnail(HIRES_SIDE)
    mask, threshold = tissue_mask(np.asarray(thumb))
    where = f"slide {reader.path}"
    side_px = dep.patch_size_um / mpp
    if spots is None:
        check_spot_count(where, lattice_estimate(mask, scale, mpp, layout), options.max_spots,
                         f"a {layout.pitch_um:g} µm {layout.layout} lattice over its tissue "
                         "would have about")
        placed = virtual_spots(mask, scale, reader.width, reader.height, mpp, layout,
                               dep.patch_size_um, min_tissue, where)
        check_spot_count(where, placed.n, options.max_spots,
                         f"a {layout.pitch_um:g} µm {layout.layout} lattice over its tissue has")
    else:
        placed = given_spots(spots, mask, scale, side_px, reader.width, reader.height, where)
    return (placed, thumb, scale, Tissue(threshold, tissue_area_um2(mask, scale, mpp) / 1e6),
            layout)


class StepClock(dict):
    """Seconds of each named step of a slide's prediction (``uns["stflow"]["seconds"]``),
    in the order the steps first end: ``with clock("graph"): ...`` (a step timed in parts
    adds them up)."""

    @contextlib.contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self[step] = self.get(step, 0.0) + time.perf_counter() - start


@dataclass
class SlideSpots:
    """One slide's spots and their features, as the steps after embedding need them."""

    name: str
    path: Path
    mpp: float
    mpp_source: str
    placed: VirtualSpots
    thumb: Image.Image
    scale: float
    tissue: Tissue
    layout: SpotLayout
    given: bool  # spots given (a spots file or a features store), not a virtual lattice
    names: list[str]
    features: np.ndarray | None
    store: FeatureStore | None

    @property
    def coords_um(self) -> np.ndarray:
        return self.placed.centres_px * self.mpp


def predict_slide(slide_path: str | Path, model: DeployedModel, out_dir: str | Path, *,
                  name: str | None = None, um_per_px: float | None = None,
                  spots: np.ndarray | None = None, spot_names: Sequence[str] | None = None,
                  features: FeatureStore | None = None,
                  options: SlideOptions = SlideOptions()) -> SlideResult:
    """Predict one slide into ``{out_dir}/{name}.h5ad`` and ``{out_dir}/{name}_maps/``.

    ``spots`` (level-0 pixel centres) replace the virtual lattice when given; ``features``
    (a store ``stflow embed`` wrote) replace the lattice and the embedding. After sampling,
    the (N, G) outputs are made and written ``options.chunk_spots`` spots at a time.
    """
    slide_path = Path(slide_path)
    name = NAME.sub("_", name or slide_path.stem)
    level = check_slide_options(options)
    clock = StepClock()
    found = locate_spots(slide_path, name, model, um_per_px, spots, spot_names, features,
                         options, clock)
    with clock("graph"):
        neighbors, _ = knn_graph(found.coords_um, model.deployment.graph_k,
                                 where=f"slide {slide_path}")
    with clock("shift_scores"):
        scores = None if model.calibration is None else shift_scores(
            model.calibration, found.features, options.chunk_spots)
    with clock("sampling"):
        mean, std, meaning = model.draw(
            Slide(sample=name, features=found.features, coords_um=found.coords_um,
                  barcodes=np.asarray(found.names), neighbors=neighbors),
            options.n_samples, options.seed, chunk_spots=options.chunk_spots,
            reuse_features=True)
        found.features = None  # standardised in place by the sampling: the raw values are gone
    with clock("write"):
        h5ad, maps = write_slide(Path(out_dir), found, model, (mean, std, meaning), scores,
                                 neighbors, level, options, clock)
    result = SlideResult(name, h5ad, maps, found.placed.n, dict(clock))
    if options.spatialdata:
        from stflow.deploy.spatialdata_export import export_spatialdata

        result.spatialdata = export_spatialdata(h5ad, Path(out_dir) / f"{name}.zarr", slide_path)
    return result


def check_slide_options(options: SlideOptions) -> float:
    """Refuse options no slide can be predicted with; the interval level."""
    if options.n_samples < 1:
        raise input_error("--n-samples", f"{options.n_samples}", "draw at least one sample")
    return check_level(options.level, "--level")


def locate_spots(slide_path: Path, name: str, model: DeployedModel, um_per_px: float | None,
                 spots: np.ndarray | None, spot_names: Sequence[str] | None,
                 store: FeatureStore | None, options: SlideOptions, clock: StepClock
                 ) -> SlideSpots:
    """The slide's scale, tissue and spots (clock: ``tissue``), and their features: the
    given store's, else embedded from the slide's windows (``patches_and_embedding``)."""
    dep = model.deployment
    with clock("tissue"):
        mpp, mpp_source = slide_mpp(slide_path, um_per_px)
        features = None
        if store is not None:
            features, coords, store_names = store.read(dep.feature_dim)
            spots, spot_names = coords / mpp, list(store_names)
    with open_slide(slide_path, downsample=dep.patch_size_um / mpp / dep.patch_size_px
                    ) as reader:
        with clock("tissue"):
            placed, thumb, scale, tissue, layout = place_spots(reader, mpp, dep, options,
                                                               spots)
        log.info("%s: %d %s at %.3f µm/px", name, placed.n, "given spots" if spots is not None
                 else f"virtual spots ({layout.layout}, {layout.pitch_um:.0f} µm pitch)", mpp)
        if features is None:
            features = embed_spots(reader, placed, mpp, model, options, clock)
    return SlideSpots(name, slide_path, mpp, mpp_source, placed, thumb, scale, tissue,
                      layout, spots is not None, _spot_names(name, placed, spot_names),
                      features, store)


def embed_spots(reader: SlideReader, placed: VirtualSpots, mpp: float, model: DeployedModel,
                options: SlideOptions, clock: StepClock) -> np.ndarray:
    """The spots' features from the model's encoder, each window read at the training
    window and pixel size (clock: ``patches_wait``, the share spent waiting for windows,
    and ``patches_and_embedding``)."""
    dep, times = model.deployment, StreamTimes()
    with clock("patches_and_embedding"):
        features = embed_windows(reader, placed.centres_px, dep.patch_size_um / mpp,
                                 dep.patch_size_px, model.encoder, model.device,
                                 options.batch_size, options.workers, times)
        clock["patches_wait"] = times.patches_wait_s
    return features


def write_slide(out_dir: Path, found: SlideSpots, model: DeployedModel,
                sampled: tuple[np.ndarray, np.ndarray, str], scores: np.ndarray | None,
                neighbors: np.ndarray, level: float, options: SlideOptions, clock: StepClock
                ) -> tuple[Path, Path]:
    """Write ``{name}.h5ad`` from the ``sampled`` (mean, spread, what the spread means) a
    row chunk at a time, with the intervals at ``level`` (:class:`SlideRows`, which also
    keeps the columns the maps draw), then the PNG maps, which never outlive a failed
    write."""
    dep, name, (mean, std, meaning) = model.deployment, found.name, sampled
    diameter_um = dep.spots.spot_diameter_um if found.given else found.layout.spot_diameter_um
    spatial = spatial_uns(name, found.thumb, found.scale, diameter_um / found.mpp,
                          found.path.resolve())
    drawn = genes_to_draw(options.genes, dep.genes)
    rows = SlideRows(mean, std, model.calibration, scores, level,
                     [list(dep.genes).index(g) for g in drawn], options.chunk_spots)
    maps, h5ad = out_dir / f"{name}_maps", out_dir / f"{name}.h5ad"

    def rest():  # after the rows: the per-spot interval columns are known then
        clock["intervals"] = rows.interval_seconds
        obs = pd.DataFrame({"array_row": found.placed.array_rc[:, 0],
                            "array_col": found.placed.array_rc[:, 1],
                            "tissue_fraction": found.placed.tissue_fraction.astype(np.float32),
                            "in_tissue": True, **rows.obs}, index=pd.Index(found.names))
        centres = np.asarray(found.placed.centres_px, dtype=np.float64)
        obsm = {"spatial": centres, "spatial_um": centres * found.mpp}
        return prediction_anndata(
            dep.genes, obs, obsm, slide_info(found, model, meaning, options, clock),
            intervals=rows.intervals_record() or NO_INTERVALS,
            quantiles=None if rows.last is None else rows.last.quantiles,
            graph=ModelGraph(neighbors, obsm["spatial_um"], "predict-slide kNN"),
            spatial=spatial)

    def draw() -> None:  # before the h5ad's rename: maps never outlive a failed write
        write_maps(maps, drawn, drawn, mean[:, rows.drawn],
                   (rows.second, rows.second_label()), found.placed.centres_px, spatial, name)

    try:
        write_prediction(h5ad, found.placed.n, rows, rest, then=draw)
    except BaseException:
        shutil.rmtree(maps, ignore_errors=True)
        raise
    log_shifted(name, rows, model)
    return h5ad, maps


def slide_info(found: SlideSpots, model: DeployedModel, meaning: str, options: SlideOptions,
               clock: StepClock) -> dict[str, Any]:
    """``uns["stflow"]`` of a slide's prediction: the model's identity, how the spots were
    placed and sampled, and the seconds of each step so far."""
    dep, layout = model.deployment, found.layout
    return {**stflow_uns("slide_prediction", found.name, X_PREDICTED, **model.identity()),
            "slide_path": str(found.path.resolve()), "mpp": found.mpp,
            "mpp_source": found.mpp_source, "spots": "given" if found.given else "virtual",
            "pitch_um": layout.pitch_um, "layout": layout.layout,
            "min_tissue": dep.min_tissue if options.min_tissue is None else options.min_tissue,
            "tissue_threshold": found.tissue.threshold,
            "tissue_area_mm2": round(found.tissue.area_mm2, 4), "n_samples": options.n_samples,
            "seed": options.seed, "sample_spread": meaning, "n_spots": found.placed.n,
            **({"features": str(found.store.path.resolve())} if found.store else {}),
            "seconds": {k: round(v, 3) for k, v in clock.items()}}


def log_shifted(name: str, rows: SlideRows, model: DeployedModel) -> None:
    """The share of the slide's spots flagged as unlike the training spots, when known."""
    if "shifted" in rows.obs:
        log.info("%s: %.1f %% of spots flagged as unlike the training spots (shift score > "
                 "%.3g)", name, 100 * float(np.mean(rows.obs["shifted"])),
                 model.calibration.shift.threshold)


def _spot_names(name: str, placed: VirtualSpots, given: Sequence[str] | None) -> list[str]:
    if given is not None:
        if len(given) != placed.n or len(set(given)) != len(given):
            raise input_error(f"spots of {name}", f"{len(given)} names for {placed.n} spots, or "
                              "repeated names", "give one unique name per spot")
        return [str(g) for g in given]
    if (placed.array_rc >= 0).all():
        return [f"{name}_r{r}_c{c}" for r, c in placed.array_rc]
    return [f"{name}_{i}" for i in range(placed.n)]


def predict_slides(slides: Sequence[str | Path], model_dir: str | Path, *,
                   out_dir: str | Path, names: Sequence[str] | None = None,
                   um_per_px: float | None = None, spots_file: str | Path | None = None,
                   features: str | Path | None = None,
                   options: SlideOptions = SlideOptions()) -> list[SlideResult]:
    """Predict each slide with the model in ``model_dir`` (loaded once) into ``out_dir``.

    ``spots_file`` (level-0 centres) or ``features`` (a features store: its spots and their
    features, no embedding) replace the virtual lattice of a single slide; their row count is
    checked against ``options.max_spots`` before the model is loaded.
    """
    if not slides:
        raise input_error("predict-slide", "no slides given", "pass one or more slide files")
    if names is not None and len(names) != len(slides):
        raise input_error("--name", f"{len(names)} names for {len(slides)} slides",
                          "give one --name per slide, or none")
    for option, value in (("--spots", spots_file), ("--features", features)):
        if value is not None and len(slides) != 1:
            raise input_error(option, f"given for {len(slides)} slides",
                              f"predict one slide per call when giving {option}")
    if spots_file is not None and features is not None:
        raise input_error("--spots", "given with --features, whose store has its own spots",
                          "give one of them")
    check_level(options.level, "--level")
    for path in slides:  # refuse a missing file before loading anything
        if not Path(path).is_file():
            raise input_error(path, "slide file not found", "check the path")
    spots, spot_names, store = None, None, None
    if spots_file is not None:
        spots, spot_names = read_spots_file(spots_file)
        check_spot_count(f"{spots_file} (spots of {slides[0]})", len(spots),
                         options.max_spots, "gives", given=True)
    elif features is not None:
        store = open_feature_store(features)
        check_spot_count(f"{store.path} (spots of {slides[0]})", store.n_spots,
                         options.max_spots, "holds", given=True)
    model = DeployedModel(model_dir, options, store)
    results = []
    for i, path in enumerate(slides):
        result = predict_slide(path, model, out_dir, name=names[i] if names else None,
                               um_per_px=um_per_px, spots=spots, spot_names=spot_names,
                               features=store, options=options)
        log.info("%s: %d spots written to %s (%s)", result.name, result.n_spots, result.h5ad,
                 ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items()))
        results.append(result)
    return results

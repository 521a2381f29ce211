"""Train one model on one fold, and predict that fold's test sections.

These two stages join the upstream artifacts (splits, genes, ingested counts, features,
graph) into :class:`stflow.data.dataset.Slide` objects and hand them to a registry estimator, so
every model — STFlow, its ablations, the baselines — is trained and written the same way.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from stflow.atomic import atomic_output, read_json
from stflow.data.dataset import Slide, load_slide
from stflow.deploy.deployment import describe_training, write_deployment
from stflow.deploy.slide_anndata import sample_spatial
from stflow.errors import check_finite, check_shape, input_error
from stflow.models.registry import (
    build_estimator,
    load_estimator,
    save_estimator,
    trained_model_name,
)
from stflow.models.search import check_space, search_fit

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_pearson"]
DEVICES = ("auto", "cpu", "cuda")
FEATURE_KEYS = ("encoder", "weights_sha256")  # zarr attributes that name what made features


def read_fold(splits_path: str | Path, fold: str) -> dict[str, list[str]]:
    """The ``train``/``val``/``test`` sample lists of ``fold`` in a splits.json."""
    splits_path = Path(splits_path)
    try:
        folds = read_json(splits_path, "splits file", "run `stflow splits` first")["folds"]
    except (KeyError, TypeError) as err:
        raise input_error(splits_path, f"not a splits.json ({err})",
                          "re-create it with `stflow splits`") from err
    names = [f.get("name") for f in folds]
    if fold not in names:
        raise input_error(splits_path, f"no fold named '{fold}' (it has {names})",
                          "pass one of the fold names in the file")
    entry = folds[names.index(fold)]
    parts = {key: [str(s) for s in entry.get(key) or []] for key in ("train", "val", "test")}
    if not parts["train"] or not parts["test"]:
        raise input_error(splits_path, f"fold '{fold}' has an empty train or test list",
                          "re-create the splits with at least two patients")
    return parts


def read_genes(genes_path: str | Path) -> list[str]:
    """The ordered target genes of a genes.json."""
    genes_path = Path(genes_path)
    try:
        genes = [str(g) for g in read_json(genes_path, "genes file", "run `stflow genes` first")["genes"]]
    except (KeyError, TypeError) as err:
        raise input_error(genes_path, f"not a genes.json ({err})",
                          "re-create it with `stflow genes`") from err
    if not genes:
        raise input_error(genes_path, "the gene list is empty",
                          "choose genes expressed in every sample")
    return genes


def load_slides(samples: list[str], genes: list[str], st_dir: str | Path,
                features_dir: str | Path, graph_dir: str | Path | None) -> list[Slide]:
    """Load each sample's features, counts of ``genes`` and (optionally) kNN graph."""
    slides = []
    for sample in tqdm(samples, desc="loading slides", disable=len(samples) < 2):
        graph = Path(graph_dir) / f"{sample}.npz" if graph_dir is not None else None
        slides.append(load_slide(sample, Path(features_dir) / f"{sample}.zarr",
                                 Path(st_dir) / f"{sample}.h5ad", genes, graph))
    return slides


def features_identity(features_dir: str | Path, samples: list[str]) -> dict[str, Any]:
    """The encoder and weights checksum of the samples' feature stores (zarr attributes).

    All stores of one training run must agree; a model trained on one encoder's features
    predicts nonsense (or crashes on the width) from another's.
    """
    import zarr

    found: dict[str, Any] | None = None
    for sample in samples:
        path = Path(features_dir) / f"{sample}.zarr"
        try:
            attrs = dict(zarr.open_group(str(path), mode="r").attrs)
        except (zarr.errors.GroupNotFoundError, FileNotFoundError) as err:
            raise input_error(path, "features store does not exist or is not a zarr group",
                              "run the embed stage for this sample") from err
        identity = {key: attrs.get(key) for key in FEATURE_KEYS}
        if found is None:
            found = identity
        elif identity != found:
            raise input_error(path, f"was made by {identity}, other samples by {found}",
                              "re-run embed so every sample uses the same encoder and weights")
    return found or dict.fromkeys(FEATURE_KEYS)


def history_frame(rows: list[dict[str, float]]) -> pd.DataFrame:
    """The estimator's log rows as history.tsv: the contract columns first, extras after."""
    frame = pd.DataFrame(rows if rows else [{}])
    if "epoch" not in frame or frame["epoch"].isna().all():
        frame["epoch"] = np.arange(1, len(frame) + 1)
    for column in HISTORY_COLUMNS:
        if column not in frame:
            frame[column] = np.nan
    extras = [c for c in frame.columns if c not in HISTORY_COLUMNS]
    return frame[HISTORY_COLUMNS + extras]


def train_fold(splits: str | Path, fold: str, genes: str | Path, st_dir: str | Path,
               features_dir: str | Path, graph_dir: str | Path | None, model: str,
               out: str | Path, params: dict[str, Any] | None = None, seed: int = 0,
               device: str = "auto", search: dict[str, Any] | None = None,
               refit: bool = False) -> Path:
    """Fit ``model`` on the fold's train (+val) slides and write its folder atomically.

    ``device`` is where to run, not a model parameter: it goes to the estimators that take
    one and is not recorded in params.json. ``search`` (``{trials, space}``) first searches
    the space on the fold's validation split (:mod:`stflow.models.search`); the chosen values and
    every trial are written next to the model (``search.json``, ``search.tsv``).
    ``refit`` then retrains the selected model on train + validation with what validation
    chose fixed (STFlow: the epoch count; ridge: alpha), for every model that selects
    something; models that select nothing already fit on train + validation.
    """
    parts = read_fold(splits, fold)
    gene_list = read_genes(genes)
    estimator = build_estimator(model, params, seed, device=device)  # refuses bad params early
    if search:
        check_space(model, search.get("space") or {})
    features = features_identity(features_dir, parts["train"] + parts["val"])
    train = load_slides(parts["train"], gene_list, st_dir, features_dir, graph_dir)
    val = load_slides(parts["val"], gene_list, st_dir, features_dir, graph_dir)
    log.info("training %s on %s: %d train, %d val slides", model, fold, len(train), len(val))
    result = None
    if search:
        trials = int(search.get("trials", 8))
        result = search_fit(model, params or {}, search["space"], trials, train, val, seed,
                            device)
        estimator, rows = result.estimator, result.history
    else:
        rows = estimator.fit(train, val)
    chosen = {k: v for k, v in result.chosen.items() if k != "val_pearson"} if result else {}
    refit_with = None
    if refit:
        estimator, rows, refit_with = refit_estimator(model, estimator, rows,
                                                      {**(params or {}), **chosen},
                                                      train + val, seed, device)
    out = Path(out)
    with atomic_output(out) as tmp:
        save_estimator(model, estimator, tmp)
        (tmp / "params.json").write_text(json.dumps(
            {"model": model, "params": params or {}, "chosen": chosen, "refit": refit_with,
             "seed": seed,
             "fold": fold, "train": parts["train"], "val": parts["val"], "genes": gene_list,
             "features": features}, indent=2))
        history_frame(rows).to_csv(tmp / "history.tsv", sep="\t", index=False)
        if result is not None:
            (tmp / "search.json").write_text(json.dumps(
                {"space": search["space"], "trials": trials,
                 "chosen": result.chosen, "selected_on": parts["val"] or "held-out region "
                 "of the training samples"}, indent=2))
            pd.DataFrame(result.trials).to_csv(tmp / "search.tsv", sep="\t", index=False)
        # deployment records the settings the kept model was trained with (searched, refit)
        effective = {**(params or {}), **chosen, **(refit_with or {})}
        write_deployment(tmp, describe_training(model, gene_list, features, train + val,
                                                features_dir, graph_dir, effective, fold))
    return out


def refit_estimator(model: str, estimator: Any, rows: list[dict[str, float]],
                    params: dict[str, Any], slides: list[Slide], seed: int, device: str
                    ) -> tuple[Any, list[dict[str, float]], dict[str, Any] | None]:
    """Retrain on ``slides`` (train + validation) with the validated choice fixed.

    Returns the estimator to keep, its log rows and the fixed settings (None when the model
    selected nothing, or cannot refit, and is kept as it is).
    """
    refit_params = getattr(estimator, "refit_params", None)
    fixed = refit_params(rows) if refit_params is not None else None
    if not fixed:
        log.info("refit: %s selects nothing on validation (or cannot refit); kept as fitted",
                 model)
        return estimator, rows, None
    log.info("refit: %s on train + validation with %s", model, fixed)
    refitted = build_estimator(model, {**params, **fixed}, seed, device=device)
    return refitted, refitted.fit(slides, []), fixed


def prediction_anndata(slide: Slide, prediction: np.ndarray, genes: list[str],
                       st_path: str | Path, model: str, encoder: str, fold: str):
    """Prediction of one slide as AnnData, carrying the ingested obs/obsm of its spots."""
    import anndata as ad

    where = f"prediction of {model} for sample {slide.sample}"
    prediction = np.asarray(prediction, dtype=np.float32)
    check_shape(prediction, "prediction", (slide.n_spots, len(genes)), where)
    check_finite(prediction, "prediction", where)
    source = ad.read_h5ad(st_path, backed="r")  # obs and obsm only: the counts stay on disk
    try:
        index = source.obs_names.get_indexer(slide.barcodes)
        if (index < 0).any():
            raise input_error(st_path, "some feature barcodes are not in the ingested sample",
                              "re-run patches and embed for this sample")
        obs = source.obs.iloc[index].copy()
        obsm = {key: np.asarray(source.obsm[key])[index]
                for key in ("spatial", "spatial_um") if key in source.obsm}
        image_path, mpp = source.uns.get("image_path"), source.uns.get("mpp")
    finally:
        source.file.close()
    result = ad.AnnData(X=prediction, obs=obs, var=pd.DataFrame(index=pd.Index(genes)),
                        obsm=obsm)
    if slide.targets is not None:
        result.layers["truth"] = slide.targets.astype(np.float32)
    result.uns.update({"model": model, "encoder": encoder, "fold": fold,
                       "sample": slide.sample})
    spatial = sample_spatial(image_path, mpp, obsm.get("spatial", np.zeros((0, 2))), slide.sample)
    if spatial is not None:  # scanpy's layout: sc.pl.spatial draws it over the H&E
        result.uns["spatial"] = spatial
    return result


def predict_fold(model_dir: str | Path, splits: str | Path, fold: str, genes: str | Path,
                 st_dir: str | Path, features_dir: str | Path, graph_dir: str | Path | None,
                 out_dir: str | Path, encoder: str | None = None, device: str = "auto"
                 ) -> list[Path]:
    """Predict each test sample of ``fold`` into ``{out_dir}/{sample}.h5ad`` (folder written atomically).

    Refuses a genes.json or feature stores other than those the model was trained with.
    """
    model_dir = Path(model_dir)
    gene_list = read_genes(genes)
    test_samples = read_fold(splits, fold)["test"]
    check_trained_with(model_dir, genes, gene_list, features_dir, test_samples)
    estimator = load_estimator(model_dir, device=device)
    model = trained_model_name(model_dir)
    encoder = encoder or Path(features_dir).name
    test = load_slides(test_samples, gene_list, st_dir, features_dir, graph_dir)
    predictions = estimator.predict(test)
    if len(predictions) != len(test):
        raise input_error(model_dir, f"the model returned {len(predictions)} predictions for "
                          f"{len(test)} slides", "fix the estimator's predict()")
    out_dir = Path(out_dir)
    with atomic_output(out_dir) as tmp:
        tmp.mkdir()
        for slide, prediction in zip(test, predictions, strict=True):
            st_path = Path(st_dir) / f"{slide.sample}.h5ad"
            adata = prediction_anndata(slide, prediction, gene_list, st_path, model, encoder,
                                       fold)
            adata.write_h5ad(tmp / f"{slide.sample}.h5ad")
    return [out_dir / f"{slide.sample}.h5ad" for slide in test]


def check_trained_with(model_dir: Path, genes_path: str | Path, genes: list[str],
                       features_dir: str | Path, samples: list[str]) -> None:
    """Refuse to predict with other genes or other features than the model was trained on."""
    params_path = model_dir / "params.json"
    trained = read_json(params_path, "model parameters", "re-run the train stage")
    if not isinstance(trained, dict):
        raise input_error(params_path, "is not a JSON object", "re-run the train stage")
    if "genes" in trained and [str(g) for g in trained["genes"]] != genes:
        raise input_error(genes_path, f"lists {len(genes)} genes that differ from the "
                          f"{len(trained['genes'])} the model was trained on ({params_path})",
                          "re-run train with this genes.json, or predict with the genes.json "
                          "the model was trained on")
    if "features" in trained:
        found = features_identity(features_dir, samples)
        if found != trained["features"]:
            raise input_error(features_dir, f"features made by {found}, but the model was "
                              f"trained on {trained['features']} ({params_path})",
                              "re-run train on these features, or predict from the features "
                              "the model was trained on")


def _params(text: str | None, option: str = "--params") -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise input_error(option, f"not valid JSON ({err})",
                          "pass a JSON object, e.g. '{\"epochs\": 5}'") from err
    if not isinstance(value, dict):
        raise input_error(option, "is not a JSON object", "pass e.g. '{\"epochs\": 5}'")
    return value


def _add_inputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--splits", required=True, help="splits.json")
    parser.add_argument("--fold", required=True, help="fold name, e.g. fold0")
    parser.add_argument("--genes", required=True, help="genes.json")
    parser.add_argument("--st-dir", required=True, help="folder of st/{sample}.h5ad")
    parser.add_argument("--features-dir", required=True,
                        help="folder of features/{encoder}/{sample}.zarr")
    parser.add_argument("--graph-dir", default=None, help="folder of graph/{sample}.npz")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="where torch models run (not a model parameter: a model trained "
                        "on cuda predicts on cpu)")


def _run_train(args: argparse.Namespace) -> None:
    train_fold(args.splits, args.fold, args.genes, args.st_dir, args.features_dir,
               args.graph_dir, args.model, args.out, _params(args.params, "--params"),
               args.seed, args.device, _params(args.search, "--search") or None,
               args.refit)


def _run_predict(args: argparse.Namespace) -> None:
    predict_fold(args.model_dir, args.splits, args.fold, args.genes, args.st_dir,
                 args.features_dir, args.graph_dir, args.out_dir, args.encoder, args.device)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``stflow train`` and ``stflow predict``."""
    train = subparsers.add_parser("train", help="fit a model on one fold")
    _add_inputs(train)
    train.add_argument("--model", required=True, help="registry name, e.g. stflow, ridge")
    train.add_argument("--params", default=None, help="model parameters as a JSON object")
    train.add_argument("--search", default=None,
                       help='hyper-parameter search as JSON: {"trials": 8, "space": '
                       '{"dropout": [0, 0.2, 0.5], "lr": {"low": 1e-4, "high": 1e-3, '
                       '"log": true}}}')
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--refit", action="store_true",
                       help="retrain on train + validation with the validated choice fixed")
    train.add_argument("--out", required=True, help="models/{encoder}/{model}/seed{seed}/{fold}")
    train.set_defaults(func=_run_train)

    predict = subparsers.add_parser("predict", help="predict a fold's test samples")
    predict.add_argument("--model-dir", required=True, help="a folder written by train")
    _add_inputs(predict)
    predict.add_argument("--encoder", default=None,
                         help="encoder name for uns (default: the features folder's name)")
    predict.add_argument("--out-dir", required=True,
                         help="predictions/{encoder}/{model}/seed{seed}/{fold}")
    predict.set_defaults(func=_run_predict)

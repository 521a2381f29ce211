"""Commands of the models: ``stflow models`` (the registry and each model's parameters),
``stflow train`` and ``stflow predict`` (the cross-validation stages)."""

from __future__ import annotations

import argparse
from pathlib import Path

from stflow.cli.arguments import add_device, json_object


def _add_inputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--splits", required=True, help="splits.json")
    parser.add_argument("--fold", required=True, help="fold name, e.g. fold0")
    parser.add_argument("--genes-json", required=True,
                        help="genes.json (or genes/{fold}.json under genes.scope fold)")
    parser.add_argument("--st-dir", required=True, help="folder of st/{sample}.h5ad")
    parser.add_argument("--features-dir", required=True,
                        help="folder of features/{encoder}/{sample}.zarr")
    parser.add_argument("--graph-dir", default=None, help="folder of graph/{sample}.npz")
    add_device(parser)


def progress_path(out: str | Path, progress: str | None) -> Path:
    """Where training appends its per-epoch rows: ``--progress``, else ``{out}.progress.tsv``
    beside the model folder (the folder itself appears only when training is done)."""
    return Path(progress) if progress else Path(f"{Path(out)}.progress.tsv")


def _run_train(args: argparse.Namespace) -> None:
    from stflow.crossval.train import train_fold

    train_fold(splits=args.splits, fold=args.fold, genes=args.genes_json, st_dir=args.st_dir,
               features_dir=args.features_dir, graph_dir=args.graph_dir, model=args.model,
               out=args.out, params=json_object(args.params, "--params"), seed=args.seed,
               device=args.device, search=json_object(args.search, "--search") or None,
               refit=args.refit, progress=progress_path(args.out, args.progress))


def _run_predict(args: argparse.Namespace) -> None:
    from stflow.crossval.predict import predict_fold

    predict_fold(args.model_dir, splits=args.splits, fold=args.fold, genes=args.genes_json,
                 st_dir=args.st_dir, features_dir=args.features_dir, graph_dir=args.graph_dir,
                 out_dir=args.out, encoder=args.encoder, device=args.device, level=args.level)


def _run_models(args: argparse.Namespace) -> None:
    from stflow.models.model_specs import describe, parameter_rows

    print(describe() if args.model is None else parameter_rows(args.model))


def add_training(parser: argparse.ArgumentParser) -> None:
    """The options that choose and fit a model, the same in ``train`` and ``train-final``."""
    parser.add_argument("--model", required=True, help="registry name, e.g. stflow, ridge")
    parser.add_argument("--params", default=None, help="model parameters as a JSON object")
    parser.add_argument("--search", default=None,
                        help='hyper-parameter search as JSON, run on the validation split: '
                        '{"trials": 8, "space": {"dropout": [0, 0.2, 0.5], "lr": {"low": '
                        '1e-4, "high": 1e-3, "log": true}}}')
    parser.add_argument("--refit", action="store_true",
                        help="retrain on train + validation with the validated choice fixed")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--progress", default=None,
                        help="TSV to which each epoch's row is appended as it ends "
                        "(default: {out}.progress.tsv)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``stflow models``, ``stflow train`` and ``stflow predict``."""
    models = subparsers.add_parser(
        "models", help="list the models, or one model's parameters",
        description="Without a name, every registry model with what it is; with one, its "
        "parameters (the keys of model_params and of a search space): type, default, allowed "
        "values and meaning, read from the model's settings, and the values its entry fixes.")
    models.add_argument("model", nargs="?", default=None, help="a registry name, e.g. stflow")
    models.set_defaults(func=_run_models)

    train = subparsers.add_parser(
        "train", help="fit a model on one fold",
        description="Fit a registry model on one fold's training samples, choosing epochs, "
        "searched settings and the interval calibration on its validation samples, and "
        "write the model folder (history.tsv, params.json, deployment record) atomically.")
    _add_inputs(train)
    add_training(train)
    train.add_argument("--out", required=True, help="models/{encoder}/{model}/seed{seed}/{fold}")
    train.set_defaults(func=_run_train)

    predict = subparsers.add_parser(
        "predict", help="predict a fold's test samples",
        description="Predict the test samples of a fold with the model trained on it: one "
        "h5ad per sample with log1p expression in X and calibrated intervals in layers.")
    predict.add_argument("--model-dir", required=True, help="a folder written by train")
    _add_inputs(predict)
    predict.add_argument("--encoder", default=None,
                         help="encoder name for uns (default: the features folder's name)")
    predict.add_argument("--out", required=True,
                         help="folder predictions/{encoder}/{model}/seed{seed}/{fold}")
    predict.add_argument("--level", type=float, default=0.9,
                         help="coverage of the calibrated intervals (layers lower/upper)")
    predict.set_defaults(func=_run_predict)

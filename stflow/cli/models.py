"""Commands of the cross-validation stages: ``stflow train`` and ``stflow predict``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from stflow.crossval.predict import predict_fold
from stflow.crossval.train import train_fold
from stflow.errors import input_error

DEVICES = ("auto", "cpu", "cuda")  # where torch models run (not a model setting)


def json_object(text: str | None, option: str = "--params") -> dict[str, Any]:
    """A JSON object given on the command line (``{}`` when absent)."""
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
               args.graph_dir, args.model, args.out, json_object(args.params, "--params"),
               args.seed, args.device, json_object(args.search, "--search") or None,
               args.refit)


def _run_predict(args: argparse.Namespace) -> None:
    predict_fold(args.model_dir, args.splits, args.fold, args.genes, args.st_dir,
                 args.features_dir, args.graph_dir, args.out_dir, args.encoder, args.device,
                 args.level)


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
    predict.add_argument("--level", type=float, default=0.9,
                         help="coverage of the calibrated intervals (layers lower/upper)")
    predict.set_defaults(func=_run_predict)

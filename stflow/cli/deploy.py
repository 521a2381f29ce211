"""Commands of deployment: ``stflow train-final`` and ``stflow predict-slide``."""

from __future__ import annotations

import argparse
from dataclasses import replace

from stflow import deploy
from stflow.cli.models import DEVICES, json_object
from stflow.deploy import final_model
from stflow.deploy.predict_slide import SlideOptions, predict_slides


def _run_train_final(args: argparse.Namespace) -> None:
    final_model.train_final(args.samples_tsv, args.genes, args.st_dir, args.features_dir,
                            args.graph_dir, args.model, args.out, json_object(args.params),
                            args.seed, args.device, args.patches_dir,
                            search=json_object(args.search, "--search") or None,
                            refit=args.refit)


def _register_train_final(subparsers: argparse._SubParsersAction) -> None:
    """Add ``stflow train-final``."""
    parser = subparsers.add_parser("train-final", help="fit a deployable model on all samples",
                                   description=final_model.__doc__)
    parser.add_argument("--samples-tsv", required=True,
                        help="samples.tsv: every sample of the study and its patient")
    parser.add_argument("--genes", required=True, help="genes.json")
    parser.add_argument("--st-dir", required=True, help="folder of st/{sample}.h5ad")
    parser.add_argument("--features-dir", required=True,
                        help="folder of features/{encoder}/{sample}.zarr")
    parser.add_argument("--graph-dir", default=None, help="folder of graph/{sample}.npz")
    parser.add_argument("--patches-dir", default=None,
                        help="folder of patches/{sample}.h5 (default: beside features/)")
    parser.add_argument("--model", required=True, help="registry name, e.g. stflow, ridge")
    parser.add_argument("--params", default=None, help="model parameters as a JSON object")
    parser.add_argument("--search", default=None, help="the study's search as JSON, run on "
                        "the final model's own validation split (as `stflow train --search`)")
    parser.add_argument("--refit", action="store_true",
                        help="retrain on train + validation with the validated choice fixed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--out", required=True, help="models/{encoder}/{model}/final")
    parser.set_defaults(func=_run_train_final)


def _run_predict_slide(args: argparse.Namespace) -> None:
    options = SlideOptions(n_samples=args.n_samples, pitch_um=args.pitch_um, layout=args.layout,
                           min_tissue=args.min_tissue, genes=tuple(args.genes or ()),
                           batch_size=args.batch_size, workers=args.workers, device=args.device,
                           seed=args.seed, weights=args.weights, encoder=args.encoder,
                           level=args.level)
    options = replace(options, spatialdata=args.spatialdata)
    predict_slides(args.slides, args.model, args.out, names=args.name,
                   um_per_px=args.um_per_px, spots_file=args.spots, options=options)


def _register_predict_slide(subparsers: argparse._SubParsersAction) -> None:
    """Add ``stflow predict-slide``."""
    parser = subparsers.add_parser(
        "predict-slide", help="predict expression maps with calibrated intervals for new H&E slides",
        description=deploy.__doc__)
    parser.add_argument("slides", nargs="+", help="slide files: any OpenSlide format, or a plain "
                        "JPEG/PNG/TIFF with --um-per-px")
    parser.add_argument("--model", required=True,
                        help="a trained model folder, e.g. models/{encoder}/{model}/final")
    parser.add_argument("--out", required=True, help="output folder ({name}.h5ad, {name}_maps/)")
    parser.add_argument("--um-per-px", type=float, default=None,
                        help="microns per level-0 pixel (needed for plain images)")
    parser.add_argument("--name", action="append", default=None,
                        help="output name of each slide, in order (default: the file's stem)")
    parser.add_argument("--spots", default=None, help="predict at these level-0 centres "
                        "instead of a virtual lattice: CSV/TSV with x, y[, barcode] or an h5ad "
                        "with obsm['spatial'] (one slide only)")
    parser.add_argument("--n-samples", type=int, default=8,
                        help="flow samples per slide: their mean is the prediction, their std "
                        "(layers sample_std) an uncalibrated spread")
    parser.add_argument("--level", type=float, default=0.9,
                        help="coverage of the calibrated intervals (layers lower/upper)")
    parser.add_argument("--pitch-um", type=float, default=None,
                        help="virtual spot pitch in µm (default: the training data's)")
    parser.add_argument("--layout", choices=("square", "hex"), default=None,
                        help="virtual spot lattice (default: the training data's)")
    parser.add_argument("--min-tissue", type=float, default=None,
                        help="least tissue fraction of a spot's window (default: training's)")
    parser.add_argument("--genes", nargs="+", default=None,
                        help="genes to draw as PNG maps (default ERBB2 GATA3, else the first two)")
    parser.add_argument("--batch-size", type=int, default=32, help="patches per encoder batch")
    parser.add_argument("--workers", type=int, default=None, help="patch reader threads")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0, help="seed of the flow samples")
    parser.add_argument("--weights", default=None,
                        help="local encoder checkpoint (offline foundation models)")
    parser.add_argument("--encoder", default=None,
                        help="expected encoder name: refused unless it is the model's")
    parser.add_argument("--spatialdata", action="store_true",
                        help="also write {name}.zarr: SpatialData (H&E, spots, table) in µm")
    parser.set_defaults(func=_run_predict_slide)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train-final`` and ``predict-slide``."""
    for add in (_register_train_final, _register_predict_slide):
        add(subparsers)

"""Commands of deployment: ``stflow train-final`` and ``stflow predict-slide``."""

from __future__ import annotations

import argparse

from stflow.catalogue import DEFAULT_BIOMARKERS
from stflow.choices import DEFAULT_MAX_SPOTS
from stflow.cli.arguments import add_device, json_object
from stflow.cli.models import add_training, progress_path


def _run_train_final(args: argparse.Namespace) -> None:
    from stflow.deploy import final_model

    final_model.train_final(samples_tsv=args.samples_tsv, genes=args.genes_json,
                            st_dir=args.st_dir, features_dir=args.features_dir,
                            graph_dir=args.graph_dir, model=args.model, out=args.out,
                            params=json_object(args.params), seed=args.seed, device=args.device,
                            patches_dir=args.patches_dir,
                            search=json_object(args.search, "--search") or None, refit=args.refit,
                            progress=progress_path(args.out, args.progress),
                            out_of_fold=[tuple(pair) for pair in args.fold_run_dir or ()])


def _register_train_final(subparsers: argparse._SubParsersAction) -> None:
    """Add ``stflow train-final``."""
    parser = subparsers.add_parser(
        "train-final", help="fit a deployable model on all samples",
        description="Fit the deployable model on every sample of the study (validation "
        "from a held-out share of the training patients), with its calibration and the "
        "record predict-slide reads.")
    parser.add_argument("--samples-tsv", required=True,
                        help="samples.tsv: every sample of the study and its patient")
    parser.add_argument("--genes-json", required=True, help="genes.json")
    parser.add_argument("--st-dir", required=True, help="folder of st/{sample}.h5ad")
    parser.add_argument("--features-dir", required=True,
                        help="folder of features/{encoder}/{sample}.zarr")
    parser.add_argument("--graph-dir", default=None, help="folder of graph/{sample}.npz")
    parser.add_argument("--patches-dir", default=None,
                        help="folder of patches/{sample}.h5 (default: beside features/)")
    add_training(parser)
    add_device(parser)
    parser.add_argument("--out", required=True, help="models/{encoder}/{model}/final")
    parser.add_argument("--fold-run-dir", nargs=2, action="append",
                        metavar=("PREDICTIONS", "MODEL"),
                        help="a fold's prediction folder and model folder (repeat per fold): "
                        "the intervals are then calibrated across patients on these "
                        "out-of-fold predictions, else within the training patients")
    parser.set_defaults(func=_run_train_final)


def _run_predict_slide(args: argparse.Namespace) -> None:
    from stflow.deploy.predict_slide import SlideOptions, predict_slides

    options = SlideOptions(n_samples=args.n_samples, pitch_um=args.pitch_um, layout=args.layout,
                           min_tissue=args.min_tissue, genes=tuple(args.genes or ()),
                           batch_size=args.batch_size, workers=args.threads, device=args.device,
                           seed=args.seed, weights=args.weights, encoder=args.encoder,
                           level=args.level, spatialdata=args.spatialdata,
                           chunk_spots=args.chunk_spots or None, max_spots=args.max_spots or None)
    predict_slides(args.slides, args.model_dir, out_dir=args.out, names=args.name,
                   um_per_px=args.um_per_px, spots_file=args.spots, features=args.features,
                   options=options)


def _register_predict_slide(subparsers: argparse._SubParsersAction) -> None:
    """Add ``stflow predict-slide``."""
    parser = subparsers.add_parser(
        "predict-slide", help="predict expression maps with calibrated intervals for new H&E slides",
        description="Predict spatial expression for new H&E slides with a trained model "
        "folder: patches on a virtual spot lattice (or given spots), the model's encoder, "
        "flow samples, calibrated intervals and a shift score, into one h5ad per slide and "
        "PNG maps.")
    parser.add_argument("slides", nargs="+", help="slide files: any OpenSlide format, or a plain "
                        "JPEG/PNG/TIFF with --um-per-px")
    parser.add_argument("--model-dir", required=True,
                        help="a trained model folder, e.g. models/{encoder}/{model}/final")
    parser.add_argument("--out", required=True, help="output folder ({name}.h5ad, {name}_maps/)")
    parser.add_argument("--um-per-px", type=float, default=None,
                        help="microns per level-0 pixel (needed for plain images)")
    parser.add_argument("--name", action="append", default=None,
                        help="output name of each slide, in order (default: the file's stem)")
    parser.add_argument("--spots", default=None, help="predict at these level-0 centres "
                        "instead of a virtual lattice: CSV/TSV with x, y[, barcode] or an h5ad "
                        "with obsm['spatial'] (one slide only)")
    parser.add_argument("--features", default=None, help="predict the spots of this features "
                        "store (`stflow embed`'s {sample}.zarr, from the model's encoder and "
                        "weights) with its features, instead of a virtual lattice and embedding "
                        "(one slide only)")
    parser.add_argument("--max-spots", type=int, default=DEFAULT_MAX_SPOTS,
                        help="refuse a slide with more spots than this before any work "
                        "(0: no limit)")
    parser.add_argument("--chunk-spots", type=int, default=100_000,
                        help="spots per piece of the row-wise work (standardising, intervals, "
                        "writing): bounds its memory; 0: all at once")
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
                        help="genes to draw as PNG maps (default "
                        f"{' '.join(DEFAULT_BIOMARKERS)}, else the first two)")
    parser.add_argument("--batch-size", type=int, default=32, help="patches per encoder batch")
    parser.add_argument("--threads", type=int, default=None,
                        help="patch readers: worker processes on CUDA for large pyramids, "
                        "else threads (default: on CUDA all CPUs but one, up to 16; else up "
                        "to 4)")
    add_device(parser)
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

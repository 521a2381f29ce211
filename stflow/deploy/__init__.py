"""Apply a trained model to new H&E slides: ``stflow predict-slide SLIDE... --model DIR --out DIR``.

Virtual spots over the detected tissue (the training pitch and lattice), patches with the
training window, features from the model's own encoder, a kNN graph and several flow samples:
their mean is the prediction (``X``), their standard deviation the uncertainty
(``layers["std"]``) of ``{out}/{name}.h5ad``, which ``sc.pl.spatial`` draws over the H&E;
PNG maps of chosen genes go to ``{out}/{name}_maps/``.
"""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> None:
    from stflow.deploy.predict_slide import SlideOptions, predict_slides

    options = SlideOptions(n_samples=args.n_samples, pitch_um=args.pitch_um, layout=args.layout,
                           min_tissue=args.min_tissue, genes=tuple(args.genes or ()),
                           batch_size=args.batch_size, workers=args.workers, device=args.device,
                           seed=args.seed, weights=args.weights, encoder=args.encoder)
    predict_slides(args.slides, args.model, args.out, names=args.name,
                   um_per_px=args.um_per_px, spots_file=args.spots, options=options)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``stflow predict-slide``."""
    parser = subparsers.add_parser(
        "predict-slide", help="predict expression maps (mean and spread) for new H&E slides",
        description=__doc__)
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
                        help="flow samples per slide: mean = prediction, std = uncertainty")
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
    parser.set_defaults(func=_run)

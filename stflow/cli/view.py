"""The view command: ``stflow view`` (a zoomable view of a slide in the browser)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _run_view(args: argparse.Namespace) -> None:
    from stflow.view.build import write_view
    from stflow.view.serve import open_view, serve_view

    out = write_view(args.prediction, out=args.out, image=args.image, threads=args.threads)
    if args.serve is not None:
        serve_view(Path(out), args.serve)
    elif args.open:
        open_view(Path(out))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``view``."""
    parser = subparsers.add_parser(
        "view", help="a zoomable view of a prediction over its H&E, for the browser",
        description="Write a folder that opens offline in a web browser (index.html): the "
        "full-resolution H&E as a Deep Zoom pyramid shown by OpenSeadragon, the spots over it "
        "coloured by a gene chosen from a searchable list (predicted mean, interval bounds "
        "and width, measured where the file has it), shifted spots ringed, a colour bar.")
    parser.add_argument("prediction", help="slides/{name}.h5ad or predictions/.../{sample}.h5ad")
    parser.add_argument("--image", default=None, help="the full-resolution H&E (default: the "
                        "image the file names)")
    parser.add_argument("--out", default=None, help="the view folder (default: {name}.view "
                        "beside the h5ad)")
    parser.add_argument("--threads", type=int, default=4, help="threads writing the tiles")
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--open", action="store_true", help="open it in the default browser")
    shown.add_argument("--serve", type=int, default=None, metavar="PORT",
                       help="serve it on http://127.0.0.1:PORT/ until Ctrl-C")
    parser.set_defaults(func=_run_view)

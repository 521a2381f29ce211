"""Export commands: ``stflow export-features`` and ``stflow export-spatialdata``."""

from __future__ import annotations

import argparse


def _run_export_features(args: argparse.Namespace) -> None:
    from stflow.data.export import export_features_hest

    export_features_hest(args.store, args.out)


def _run_export_spatialdata(args: argparse.Namespace) -> None:
    from stflow.deploy.spatialdata_export import export_spatialdata

    export_spatialdata(args.prediction, args.out, image_path=args.image)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``export-features`` and ``export-spatialdata``."""
    parser = subparsers.add_parser(
        "export-features", help="a features zarr in HEST-bench's embedding h5 layout",
        description="Write a features store (features/{encoder}/{sample}.zarr) as HEST-bench's "
        "embedding h5 (datasets embeddings, coords in level-0 pixels, barcodes), so HEST's "
        "probe code reads stflow's embeddings.")
    parser.add_argument("store", help="features/{encoder}/{sample}.zarr")
    parser.add_argument("--format", choices=("hest",), default="hest",
                        help="hest: embeddings, coords (level-0 px), barcodes")
    parser.add_argument("--out", required=True, help="the h5 to write, e.g. {sample}.h5")
    parser.set_defaults(func=_run_export_features)

    parser = subparsers.add_parser(
        "export-spatialdata", help="a prediction h5ad and its H&E as a SpatialData .zarr",
        description="Write a prediction (fold or new slide) as a SpatialData store: the H&E "
        "as a multiscale image, the spots as circles in µm, the predictions as a table "
        "annotating them; opens in napari-spatialdata and spatialdata-plot.")
    parser.add_argument("--prediction", required=True,
                        help="predictions/.../{sample}.h5ad or slides/{name}.h5ad")
    parser.add_argument("--image", default=None, help="the H&E (default: the image the file "
                        "names, else the thumbnail inside it)")
    parser.add_argument("--out", required=True, help="the .zarr to write")
    parser.set_defaults(func=_run_export_spatialdata)

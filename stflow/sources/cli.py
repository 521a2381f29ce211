"""The ``download``, ``ingest`` and ``samples`` subcommands (pipeline stages download/ingest)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from stflow.errors import input_error
from stflow.sources import SOURCES, get_source, write_samples_tsv, write_st
from stflow.sources.download import write_manifest

log = logging.getLogger(__name__)


def run_download(args: argparse.Namespace) -> None:
    """Fill RAW_DIR with the source's files, then write RAW_DIR/MANIFEST.tsv last."""
    out = Path(args.out)
    if args.source == "her2st":
        from stflow.sources import her2st

        her2st.download(out, mirror=args.mirror, samples=args.samples)
    elif args.source == "hest":
        from stflow.sources import hest

        hest.download(out, repo_id=args.repo_id, samples=args.samples, task=args.task,
                      mirror=args.mirror)
    elif args.source == "synthetic":
        from stflow.sources import synthetic

        synthetic.download(out, patients=args.patients, sections=args.sections, grid=args.grid,
                           genes=args.genes, mpp=args.mpp, seed=args.seed)
    else:
        from stflow.sources.download import link_tree

        if args.mirror is None:
            raise input_error("--mirror", "visium has no public download",
                              "pass --mirror DIR holding one Space Ranger outs/ folder per sample")
        link_tree(Path(args.mirror), out, [f"{s}/*" for s in args.samples or []] or None)
    manifest = write_manifest(out)
    log.info("download complete: %s", manifest)


def run_ingest(args: argparse.Namespace) -> None:
    """Read one sample and write st/{sample}.h5ad."""
    source = get_source(args.source)
    options: dict = {}
    if args.source == "visium":
        config = {"patients": {args.sample: args.patient}} if args.patient else None
        options = {"image": args.image, "config": config}
    elif args.source == "hest":
        options = {"config": {"task": args.task, "mpp": args.mpp_override,
                              "inter_spot_um": args.inter_spot_um}}
    elif args.image or args.patient or args.mpp_override:
        raise input_error("stflow ingest", f"--image/--patient/--mpp do not apply to {args.source}",
                          "drop them; this source knows its image, patient and µm/px")
    write_st(source.read_sample(Path(args.raw), args.sample, **options), args.out)


def run_samples(args: argparse.Namespace) -> None:
    """Write samples.tsv from the ingested h5ad files."""
    write_samples_tsv(args.st, args.out)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``download``, ``ingest`` and ``samples`` to the stflow command."""
    download = subparsers.add_parser("download", help="fetch a data source into RAW_DIR, "
                                     "checksummed, and write RAW_DIR/MANIFEST.tsv last")
    download.add_argument("--source", choices=SOURCES, required=True)
    download.add_argument("--out", required=True, help="RAW_DIR")
    download.add_argument("--mirror", help="local folder with the published files (no network)")
    download.add_argument("--samples", nargs="+", help="only these samples (default: all)")
    download.add_argument("--repo-id", default="MahmoodLab/hest",
                          help="hest: HF dataset (MahmoodLab/hest or MahmoodLab/hest-bench)")
    download.add_argument("--task", help="hest-bench: task folder, e.g. IDC")
    simulated = download.add_argument_group("synthetic")
    simulated.add_argument("--patients", type=int, default=3)
    simulated.add_argument("--sections", type=int, default=2, help="sections per patient")
    simulated.add_argument("--grid", type=int, default=16, help="spot grid side")
    simulated.add_argument("--genes", type=int, default=80)
    simulated.add_argument("--mpp", type=float, default=2.0, help="µm per pixel of the images")
    simulated.add_argument("--seed", type=int, default=0)
    download.set_defaults(func=run_download)

    ingest = subparsers.add_parser("ingest", help="one sample of RAW_DIR -> st/{sample}.h5ad")
    ingest.add_argument("--source", choices=SOURCES, required=True)
    ingest.add_argument("--raw", required=True, help="RAW_DIR filled by `stflow download`")
    ingest.add_argument("--sample", required=True)
    ingest.add_argument("--out", required=True, help="st/{sample}.h5ad")
    ingest.add_argument("--image", help="visium: full-resolution H&E image")
    ingest.add_argument("--patient", help="visium: patient id (default: the sample id)")
    ingest.add_argument("--task", help="hest-bench: task folder under RAW_DIR")
    ingest.add_argument("--mpp", dest="mpp_override", type=float,
                        help="hest: µm/px, overriding the metadata")
    ingest.add_argument("--inter-spot-um", type=float, default=100.0,
                        help="hest-bench without metadata: spot pitch used to estimate µm/px")
    ingest.set_defaults(func=run_ingest)

    samples = subparsers.add_parser("samples", help="st/*.h5ad -> samples.tsv")
    samples.add_argument("--st", nargs="+", required=True, help="ingested st/{sample}.h5ad files")
    samples.add_argument("--out", required=True, help="samples.tsv")
    samples.set_defaults(func=run_samples)

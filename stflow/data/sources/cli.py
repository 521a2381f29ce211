"""The ``download``, ``ingest`` and ``samples`` subcommands (pipeline stages download/ingest)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from stflow.data.sources import SOURCES, get_source, write_samples_tsv, write_st
from stflow.data.sources.download import write_manifest
from stflow.errors import input_error

log = logging.getLogger(__name__)


def run_download(args: argparse.Namespace) -> None:
    """Fill RAW_DIR with the source's files, then write RAW_DIR/MANIFEST.tsv last."""
    out = Path(args.out)
    if args.source == "her2st":
        from stflow.data.sources import her2st

        her2st.download(out, mirror=args.mirror, samples=args.samples)
    elif args.source == "hest":
        from stflow.data.sources import hest

        hest.download(out, repo_id=args.repo_id, samples=args.samples, task=args.task,
                      mirror=args.mirror)
    elif args.source == "synthetic":
        from stflow.data.sources import synthetic

        synthetic.download(out, patients=args.patients, sections=args.sections, grid=args.grid,
                           genes=args.genes, mpp=args.mpp, seed=args.seed)
    else:
        from stflow.data.sources.download import copy_tree

        if args.mirror is None:
            raise input_error("--mirror", "visium has no public download",
                              "pass --mirror DIR holding one Space Ranger outs/ folder per sample")
        copy_tree(Path(args.mirror), out, [f"{s}/*" for s in args.samples or []] or None,
                  "one Space Ranger outs/ folder per sample")
    manifest = write_manifest(out)
    log.info("download complete: %s", manifest)


def run_ingest(args: argparse.Namespace) -> None:
    """Read one sample and write st/{sample}.h5ad."""
    source = get_source(args.source)
    options: dict = {}
    if args.source == "visium":
        config = {"patients": {args.sample: args.patient}} if args.patient else None
        options = {"image": args.image, "config": config}
        if args.require_patient and not args.patient:
            raise input_error(f"stflow ingest --sample {args.sample}", "visium sections carry "
                              "no patient id, so patient-stratified folds could leak",
                              "map the sample to its patient (dataset.patients in the config, "
                              "--patient here)")
    elif args.source == "hest":
        if args.image:
            raise input_error("stflow ingest", "--image does not apply to hest",
                              "drop it; the sample's image comes with the download")
        options = {"config": {"task": args.task, "mpp": args.mpp_override,
                              "inter_spot_um": args.inter_spot_um,
                              "patients": {args.sample: args.patient} if args.patient else {},
                              "require_patient": args.require_patient}}
    elif args.image or args.patient or args.mpp_override:
        raise input_error("stflow ingest", f"--image/--patient/--mpp do not apply to {args.source}",
                          "drop them; this source knows its image, patient and µm/px")
    write_st(source.read_sample(Path(args.raw), args.sample, **options), args.out)


def run_bench_genes(args: argparse.Namespace) -> None:
    """HEST-bench's published gene list as genes.json, checked against the ingested samples."""
    import anndata as ad

    from stflow.atomic import write_json
    from stflow.data.sources import hest

    genes = hest.read_bench_genes(args.bench)
    for path in args.st or []:
        adata = ad.read_h5ad(path, backed="r")
        try:
            missing = [g for g in genes["genes"] if g not in set(adata.var_names)]
        finally:
            adata.file.close()
        if missing:
            raise input_error(path, f"lacks {len(missing)} of HEST-bench's genes, e.g. "
                              f"{missing[:5]}", "ingest the bench task's own samples, or set "
                              "genes.source: config")
    write_json(genes, args.out)
    log.info("%d HEST-bench genes -> %s", len(genes["genes"]), args.out)


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
    ingest.add_argument("--patient", help="visium, hest: patient id (visium default: the "
                        "sample id; hest default: the metadata's)")
    ingest.add_argument("--require-patient", action="store_true",
                        help="refuse a sample whose patient is unknown (patient-stratified "
                        "folds would treat the section as its own patient)")
    ingest.add_argument("--task", help="hest-bench: task folder under RAW_DIR")
    ingest.add_argument("--mpp", dest="mpp_override", type=float,
                        help="hest: µm/px, overriding the metadata")
    ingest.add_argument("--inter-spot-um", type=float, default=100.0,
                        help="hest-bench without metadata: spot pitch used to estimate µm/px")
    ingest.set_defaults(func=run_ingest)

    bench = subparsers.add_parser("bench-genes", help="HEST-bench var_50genes.json -> genes.json")
    bench.add_argument("--bench", required=True, help="the bench task folder (raw/{task})")
    bench.add_argument("--st", nargs="*", help="ingested samples that must hold every gene")
    bench.add_argument("--out", required=True, help="genes.json")
    bench.set_defaults(func=run_bench_genes)

    samples = subparsers.add_parser("samples", help="st/*.h5ad -> samples.tsv")
    samples.add_argument("--st", nargs="+", required=True, help="ingested st/{sample}.h5ad files")
    samples.add_argument("--out", required=True, help="samples.tsv")
    samples.set_defaults(func=run_samples)

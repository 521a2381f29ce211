"""Commands of the data-in stages: simulate, download, ingest, samples, splits, genes,
bench-genes, patches, embed, encoders, graph. Each parses its options and calls one library
function, imported when the command runs (so ``--help`` stays quick)."""

from __future__ import annotations

import argparse
from pathlib import Path

from stflow.choices import (
    ALL_PATIENTS,
    CALIBRATIONS,
    HEST_REPO,
    MIN_FRACTION,
    MIN_TISSUE,
    PATCH_SIZE_PX,
    PATCH_SIZE_UM,
    SCHEMES,
    SOURCES,
)
from stflow.cli.arguments import add_device
from stflow.errors import input_error


def _run_download(args: argparse.Namespace) -> None:
    from stflow.data.download import download_source

    download_source(args.source, args.out, mirror=args.mirror_dir, samples=args.samples,
                    repo_id=args.repo_id, task=args.task, patients=args.n_patients,
                    sections=args.n_sections, grid=args.grid, genes=args.n_genes,
                    mpp=args.um_per_px, seed=args.seed, expression_shift=args.expression_shift,
                    stain_shift=args.stain_shift, sheet=args.sheet)


def _run_ingest(args: argparse.Namespace) -> None:
    from stflow.data.ingest import ingest_sample

    ingest_sample(args.source, args.raw_dir, sample=args.sample, out=args.out, image=args.image,
                  patient=args.patient, require_patient=args.require_patient, task=args.task,
                  mpp=args.um_per_px, inter_spot_um=args.inter_spot_um)


def _run_bench_genes(args: argparse.Namespace) -> None:
    from stflow.data.genes import write_bench_genes

    write_bench_genes(args.bench_dir, args.st or [], args.out)


def _run_samples(args: argparse.Namespace) -> None:
    from stflow.data.ingest import write_samples_tsv

    write_samples_tsv(args.st, args.out)


def _run_simulate(args: argparse.Namespace) -> None:
    from stflow.data import simulator

    simulator.simulate(Path(args.out), n_patients=args.n_patients,
                       sections_per_patient=args.n_sections, grid=args.grid,
                       n_genes=args.n_genes, mpp=args.um_per_px, seed=args.seed,
                       interactions=not args.no_interactions,
                       expression_shift=args.expression_shift, stain_shift=args.stain_shift)


def _add_synthetic(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The simulator's settings, the same in ``simulate`` and ``download --source synthetic``."""
    parser.add_argument("--n-patients", type=int, default=3, help="number of patients")
    parser.add_argument("--n-sections", type=int, default=2, help="sections per patient")
    parser.add_argument("--grid", type=int, default=16, help="spot grid side (200 µm steps)")
    parser.add_argument("--n-genes", type=int, default=80, help="genes in the count tables")
    parser.add_argument("--um-per-px", type=float, default=2.0, help="microns per image pixel")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--expression-shift", type=float, default=1.0,
                        help="scale of the patients' expression batch shift (1: default, "
                        "0: none)")
    parser.add_argument("--stain-shift", type=float, default=1.0,
                        help="scale of the patients' stain shift (1: default, 0: none)")


def _register_simulate(subparsers: argparse._SubParsersAction) -> None:
    """Add ``stflow simulate``."""
    parser = subparsers.add_parser(
        "simulate", help="write synthetic sections with known truth in the her2st layout",
        description="Write synthetic H&E sections and spot counts whose expression is a "
        "known function of the image and of the neighbours, in the her2st layout, with the "
        "truth beside them: a study whose right answer is known.")
    parser.add_argument("--out", required=True, help="output folder (replaced whole)")
    _add_synthetic(parser)
    parser.add_argument("--no-interactions", action="store_true",
                        help="switch the neighbour ligand → receiver effect off (a control)")
    parser.set_defaults(func=_run_simulate)


def _run_splits(args: argparse.Namespace) -> None:
    from stflow.data.splits import read_folds_json, write_splits

    folds = read_folds_json(args.folds_json) if args.folds_json else None
    write_splits(args.samples_tsv, args.out, n_folds=args.n_folds, folds=folds, seed=args.seed,
                 hest_bench=args.hest_bench_dir, scheme=args.scheme,
                 folds_source=args.folds_json or "splits.folds", calibration=args.calibration,
                 calibration_patients=args.calibration_patients)


def _patients(value: str) -> int | str:
    """``--calibration-patients``: 'all' or a whole number."""
    return value if value == ALL_PATIENTS else int(value)


def _register_splits(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``splits`` subcommand."""
    p = subparsers.add_parser(
        "splits", help="patient-stratified train/val/test folds",
        description="Group the samples into cross-validation folds (splits.json): per fold "
        "the test samples, and validation samples from the training patients only.")
    p.add_argument("--scheme", choices=SCHEMES, default="patient",
                   help="patient: no patient on both sides; section: leave one section out "
                   "(not patient-stratified, optimistic; logged as a warning)")
    p.add_argument("--samples-tsv", required=True, help="samples.tsv from the ingest stage")
    p.add_argument("--out", required=True, help="splits.json to write")
    p.add_argument("--n-folds", type=int, help="group patients into this many folds "
                   "(default: one fold per patient)")
    p.add_argument("--folds-json", help="explicit folds to validate instead")
    p.add_argument("--hest-bench-dir", help="a HEST-bench task folder: use its published "
                   "splits/ (checked against --n-folds when given)")
    p.add_argument("--seed", type=int, default=0, help="seed of the patients' grouping")
    p.add_argument("--calibration", choices=CALIBRATIONS, default="auto",
                   help="patient: validate (and calibrate) on one whole training patient, "
                   "refused where a fold has one; within: a training section or region; auto: "
                   "patient where a fold has two training patients")
    p.add_argument("--calibration-patients", type=_patients, default=ALL_PATIENTS,
                   help="under patient calibration, how many training patients calibrate a "
                   "fold: the validation patient and up to N-1 more, each predicted by one "
                   f"more fit without it ({ALL_PATIENTS!r}, the default: every one; 1: no "
                   "extra fit)")
    p.set_defaults(func=_run_splits)


def _run_genes(args: argparse.Namespace) -> None:
    from stflow.data.genes import select_fold_genes, write_target_genes

    if (args.splits is None) != (args.fold is None):
        raise input_error("--splits/--fold", "only one of the two is given",
                          "give both to choose one fold's genes from its training samples, "
                          "or neither for the whole study")
    if args.fold is None:
        write_target_genes(args.st, args.out, n_top=args.n_top, min_fraction=args.min_fraction,
                           listed=args.list, include=args.include or (),
                           biomarkers=args.biomarkers or ())
        return
    if args.list:
        raise input_error("--list", f"a listed gene set is the same for every fold, so --fold "
                          f"{args.fold} would change nothing", "drop --splits and --fold")
    select_fold_genes(args.st, splits_path=args.splits, fold=args.fold, out=args.out,
                      n_top=args.n_top, min_fraction=args.min_fraction, include=args.include or (),
                      biomarkers=args.biomarkers or ())


def _register_genes(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``genes`` subcommand."""
    p = subparsers.add_parser(
        "genes", help="choose the target genes (HEST protocol or a list)",
        description="Choose the genes to predict (genes.json): HEST's highly variable genes "
        "expressed in enough spots of every sample, or an explicit list; for the whole "
        "study, or from one fold's training samples.")
    p.add_argument("--st", nargs="+", required=True, help="ingested st/{sample}.h5ad files")
    p.add_argument("--n-top", type=int, default=50, help="highly variable genes to keep")
    p.add_argument("--min-fraction", type=float, default=MIN_FRACTION,
                   help="a gene must be expressed in this fraction of spots of every sample")
    p.add_argument("--list", nargs="+", help="explicit genes instead of the HEST protocol")
    p.add_argument("--include", nargs="+", help="genes added to the benchmark genes (they "
                   "count in the mean)")
    p.add_argument("--biomarkers", nargs="+", help="genes to predict too where the protocol "
                   "leaves them out, scored apart from the benchmark (e.g. ERBB2 GATA3)")
    p.add_argument("--splits", help="splits.json: with --fold, choose from that fold's "
                   "training and validation samples among --st only (genes.scope: fold)")
    p.add_argument("--fold", help="the fold whose genes to choose (with --splits)")
    p.add_argument("--out", required=True, help="genes.json (or genes/{fold}.json) to write")
    p.set_defaults(func=_run_genes)


def _run_patches(args: argparse.Namespace) -> None:
    from stflow.data import patches

    patches.patches_from_h5ad(args.st, args.out, size_um=args.size_um, size_px=args.size_px,
                              min_tissue=args.min_tissue, qc_png=args.qc, workers=args.threads)


def _register_patches(subparsers: argparse._SubParsersAction) -> None:
    """Add ``stflow patches``."""
    parser = subparsers.add_parser(
        "patches", help="cut one patch per spot into patches/{sample}.h5",
        description="Cut a square image patch of a fixed size in microns around every spot "
        "of an ingested sample into a HEST-compatible h5, dropping patches with too little "
        "tissue.")
    parser.add_argument("--st", required=True, help="ingested st/{sample}.h5ad")
    parser.add_argument("--out", required=True, help="output patches/{sample}.h5")
    parser.add_argument("--qc", default=None, help="QC thumbnail PNG (kept green, dropped red)")
    parser.add_argument("--size-um", type=float, default=float(PATCH_SIZE_UM),
                        help="patch side in microns")
    parser.add_argument("--size-px", type=int, default=PATCH_SIZE_PX, help="patch side in pixels")
    parser.add_argument("--min-tissue", type=float, default=MIN_TISSUE,
                        help="drop patches with a smaller tissue fraction")
    parser.add_argument("--threads", type=int, default=None,
                        help="image reader threads (default: up to 4, from the CPUs)")
    parser.set_defaults(func=_run_patches)


def _run_embed(args: argparse.Namespace) -> None:
    from stflow.data import embedding

    embedding.embed(args.patches, encoder=args.encoder, out_zarr=args.out, weights=args.weights,
                    batch_size=args.batch_size, device=args.device, num_workers=args.threads)


def _run_encoders(args: argparse.Namespace) -> None:
    from stflow.data.encoders import describe_encoders

    print("\n".join(describe_encoders()))


def _register_embed(subparsers: argparse._SubParsersAction) -> None:
    """Add ``stflow embed`` and ``stflow encoders``."""
    parser = subparsers.add_parser(
        "embed", help="embed patches with a frozen encoder (zarr)",
        description="Run a frozen image encoder over a sample's patches and write one "
        "feature vector per spot to features/{encoder}/{sample}.zarr, with the encoder's "
        "identity (weights checksum, transform, precision) in its attributes.")
    parser.add_argument("--patches", required=True, help="patches/{sample}.h5")
    parser.add_argument("--encoder", required=True, help="registry name (see stflow encoders)")
    parser.add_argument("--weights", default=None,
                        help="local checkpoint file or folder (no network needed)")
    parser.add_argument("--out", required=True, help="features/{encoder}/{sample}.zarr")
    parser.add_argument("--batch-size", type=int, default=64, help="patches per encoder batch")
    add_device(parser)
    parser.add_argument("--threads", type=int, default=None,
                        help="patch reader processes (default: some on CUDA, none on CPU)")
    parser.set_defaults(func=_run_embed)
    listing = subparsers.add_parser(
        "encoders", help="list the registered encoders",
        description="List the image encoders the registry knows, with their feature size "
        "and where their weights come from.")
    listing.set_defaults(func=_run_encoders)


def _run_graph(args: argparse.Namespace) -> None:
    from stflow.data.graph import write_graph

    write_graph(args.patches, args.out, k=args.k)


def _register_graph(subparsers: argparse._SubParsersAction) -> None:
    """Add ``stflow graph``."""
    parser = subparsers.add_parser(
        "graph", help="k-nearest-neighbour graph of a sample's spots",
        description="Find each spot's k nearest neighbours in microns (a KD-tree) and write "
        "their indices and offsets to graph/{sample}.npz.")
    parser.add_argument("--patches", type=Path, required=True, help="patches/{sample}.h5")
    parser.add_argument("--k", type=int, default=8, help="neighbours per spot")
    parser.add_argument("--out", type=Path, required=True, help="graph/{sample}.npz")
    parser.set_defaults(func=_run_graph)


def _register_sources(subparsers: argparse._SubParsersAction) -> None:
    """Add ``download``, ``ingest``, ``bench-genes`` and ``samples``."""
    download = subparsers.add_parser(
        "download", help="fetch a data source into RAW_DIR",
        description="Fetch a data source as published into RAW_DIR, checksummed, and write "
        "RAW_DIR/MANIFEST.tsv last (from a local mirror folder where there is no network).")
    download.add_argument("--source", choices=SOURCES, required=True, help="the data source")
    download.add_argument("--out", required=True, help="RAW_DIR")
    download.add_argument("--mirror-dir",
                          help="local folder with the published files (no network)")
    download.add_argument("--samples", nargs="+", help="only these samples (default: all)")
    download.add_argument("--repo-id", default=HEST_REPO,
                          help="hest: HF dataset (MahmoodLab/hest or MahmoodLab/hest-bench)")
    download.add_argument("--task", help="hest-bench: task folder, e.g. IDC")
    download.add_argument("--sheet", help="sheet: the sample sheet (TSV; README, 'Your own "
                          "data'); validated and written to RAW_DIR/sheet.tsv")
    _add_synthetic(download.add_argument_group("synthetic"))
    download.set_defaults(func=_run_download)

    ingest = subparsers.add_parser(
        "ingest", help="one sample of RAW_DIR -> st/{sample}.h5ad",
        description="Read one sample of RAW_DIR into the common form: raw integer counts, "
        "spot centres in level-0 pixels and microns, and the image's µm/px.")
    ingest.add_argument("--source", choices=SOURCES, required=True, help="the data source")
    ingest.add_argument("--raw-dir", required=True, help="RAW_DIR filled by `stflow download`")
    ingest.add_argument("--sample", required=True, help="the sample id")
    ingest.add_argument("--out", required=True, help="st/{sample}.h5ad")
    ingest.add_argument("--image", help="visium: full-resolution H&E image")
    ingest.add_argument("--patient", help="visium, hest: patient id (visium default: the "
                        "sample id; hest default: the metadata's)")
    ingest.add_argument("--require-patient", action="store_true",
                        help="refuse a sample whose patient is unknown (patient-stratified "
                        "folds would treat the section as its own patient)")
    ingest.add_argument("--task", help="hest-bench: task folder under RAW_DIR")
    ingest.add_argument("--um-per-px", type=float, help="hest: µm/px, overriding the metadata")
    ingest.add_argument("--inter-spot-um", type=float, default=100.0,
                        help="hest-bench without metadata: spot pitch used to estimate µm/px")
    ingest.set_defaults(func=_run_ingest)

    bench = subparsers.add_parser(
        "bench-genes", help="HEST-bench var_50genes.json -> genes.json",
        description="Take a HEST-bench task's published 50 target genes as genes.json, "
        "checking that every ingested sample holds them.")
    bench.add_argument("--bench-dir", required=True, help="the bench task folder (raw/{task})")
    bench.add_argument("--st", nargs="*", help="ingested samples that must hold every gene")
    bench.add_argument("--out", required=True, help="genes.json")
    bench.set_defaults(func=_run_bench_genes)

    samples = subparsers.add_parser(
        "samples", help="st/*.h5ad -> samples.tsv",
        description="List the ingested samples with their patient, image and µm/px in "
        "samples.tsv, the table the splits are built from.")
    samples.add_argument("--st", nargs="+", required=True, help="ingested st/{sample}.h5ad files")
    samples.add_argument("--out", required=True, help="samples.tsv")
    samples.set_defaults(func=_run_samples)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the data-in subcommands."""
    for add in (_register_simulate, _register_sources, _register_splits, _register_genes,
                _register_patches, _register_embed, _register_graph):
        add(subparsers)

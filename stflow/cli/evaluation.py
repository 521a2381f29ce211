"""Commands of the evaluation stages: evaluate, aggregate, coverage, tables, figures."""

from __future__ import annotations

import argparse
from pathlib import Path

from stflow.catalogue import DEFAULT_BIOMARKERS


def _run_evaluate(args: argparse.Namespace) -> None:
    from stflow.evaluation.bootstrap import BootstrapSettings
    from stflow.evaluation.fold_scores import write_fold_scores

    write_fold_scores(args.predictions, splits=args.splits, encoder=args.encoder, model=args.model,
                      fold=args.fold, seed=args.seed, out=args.out,
                      bootstrap=BootstrapSettings(args.bootstrap, args.block_um, args.bootstrap_seed))


def _run_aggregate(args: argparse.Namespace) -> None:
    from stflow.evaluation.summary import write_summary

    write_summary(args.metrics, out_dir=args.out)


def _register_scores(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` and ``aggregate`` subcommands."""
    p = subparsers.add_parser(
        "evaluate", help="score one fold's predictions (HEST metric)",
        description="Score one fold's test predictions: Pearson per gene and sample (the "
        "HEST metric), with a spatial block bootstrap interval of the fold score, into a "
        "metrics JSON.")
    p.add_argument("--predictions", nargs="+", required=True, help="prediction h5ad files")
    p.add_argument("--encoder", required=True, help="encoder name (a table column)")
    p.add_argument("--model", required=True, help="registry model name (a table column)")
    p.add_argument("--fold", required=True, help="fold name, e.g. fold0")
    p.add_argument("--seed", type=int, default=0, help="the training seed (a table column)")
    p.add_argument("--splits", required=True, help="splits.json: the fold's test samples "
                   "and the split scheme (a table column)")
    p.add_argument("--out", required=True, help="metrics JSON to write")
    p.add_argument("--bootstrap", type=int, default=1000,
                   help="spatial block bootstrap replicates of the fold score (>= 100)")
    p.add_argument("--block-um", type=float, default=None,
                   help="block side in microns (default: 4 x each slide's median spot distance)")
    p.add_argument("--bootstrap-seed", type=int, default=0,
                   help="seed of the block draws (the same for every model of a fold)")
    p.set_defaults(func=_run_evaluate)

    a = subparsers.add_parser(
        "aggregate", help="fold metrics → tables/*.tsv and summary.md",
        description="Gather the fold metrics JSONs into tables (per gene, sample, fold) and "
        "a summary of mean ± std over folds and seeds, with differences to the baselines.")
    a.add_argument("--metrics", nargs="+", required=True, help="fold metrics JSONs")
    a.add_argument("--out", required=True, help="folder for the tables")
    a.set_defaults(func=_run_aggregate)


def _run_coverage(args: argparse.Namespace) -> None:
    from stflow import layout
    from stflow.evaluation.coverage import write_coverage
    from stflow.evaluation.fold_scores import prediction_files

    out = Path(args.out)
    write_coverage([path for folder in args.predictions_dir for path in prediction_files(folder)],
                   splits=args.splits, table=out / Path(layout.COVERAGE_TABLE).name,
                   markdown=out / Path(layout.COVERAGE_MD).name,
                   risk=out / Path(layout.RISK_TABLE).name, figure=args.figure)


def _register_coverage(subparsers: argparse._SubParsersAction) -> None:
    """Add ``stflow coverage``."""
    p = subparsers.add_parser(
        "coverage", help="coverage of the calibrated intervals and how well they rank errors",
        description="From the fold prediction folders: how often the calibrated intervals "
        "hold the truth, whether narrow intervals mark small errors (the selective mean "
        "absolute error against the share of spots kept, and its area), and the share of "
        "shift-flagged spots.")
    p.add_argument("--predictions-dir", nargs="+", required=True,
                   help="predictions/{encoder}/{model}/seed{seed}/{fold} folders")
    p.add_argument("--splits", required=True, help="splits.json (the scheme column)")
    p.add_argument("--out", required=True,
                   help="folder for coverage.tsv, coverage.md and risk_coverage.tsv")
    p.add_argument("--figure", required=True, help="risk-coverage PNG to write")
    p.set_defaults(func=_run_coverage)


def _run_tables(args: argparse.Namespace) -> None:
    from stflow.evaluation.paper_tables import write_paper_tables_of_run

    write_paper_tables_of_run(args.metrics_tsv, splits=args.splits, benchmarks=args.benchmarks_dir,
                              out_dir=args.out)


def _register_tables(subparsers: argparse._SubParsersAction) -> None:
    """Add ``stflow tables``."""
    p = subparsers.add_parser(
        "tables", help="the paper's tables from a run's metrics",
        description="The paper's tables (methods, priors, denoisers, ablations, inference "
        "time) from a run's metrics and job times, as TSV and Markdown.")
    p.add_argument("--metrics-tsv", required=True, help="tables/metrics.tsv of the run")
    p.add_argument("--splits", required=True, help="splits.json (each fold's test samples)")
    p.add_argument("--benchmarks-dir", required=True,
                   help="the run's benchmarks/ folder (predict/ and embed/ job times)")
    p.add_argument("--out", required=True, help="folder for {name}.tsv and {name}.md")
    p.set_defaults(func=_run_tables)


def _run_figures(args: argparse.Namespace) -> None:
    from stflow import layout
    from stflow.evaluation.figures import figure_inputs, make_figures

    results = Path(args.results_dir)
    inputs = figure_inputs(results, encoders=args.encoders, models=args.models,
                           folds=args.folds, seeds=args.seeds)
    make_figures(inputs, encoders=args.encoders, models=args.models, genes=args.genes,
                 comparison=results / layout.COMPARISON, curves=results / layout.CURVES,
                 biomarkers=results / layout.BIOMARKERS)


def _register_figures(subparsers: argparse._SubParsersAction) -> None:
    """Add ``stflow figures``."""
    parser = subparsers.add_parser(
        "figures", help="biomarker maps, training curves, model comparison of a finished run",
        description="Draw a finished run's figures into its figures/ folder: biomarker maps "
        "(truth beside prediction), training curves from history.tsv, and the model "
        "comparison.")
    parser.add_argument("--results-dir", required=True, help="results/{dataset} folder")
    parser.add_argument("--encoders", nargs="+", required=True, help="encoder names")
    parser.add_argument("--models", nargs="+", required=True, help="registry model names")
    parser.add_argument("--folds", nargs="+", required=True, help="e.g. fold0 fold1")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0],
                        help="training seeds (models/{encoder}/{model}/seed{seed}/{fold}); "
                        "biomarker maps show the first")
    parser.add_argument("--genes", nargs="+", default=list(DEFAULT_BIOMARKERS),
                        help="genes to map (those not among the targets are skipped)")
    parser.set_defaults(func=_run_figures)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``evaluate``, ``aggregate``, ``coverage``, ``tables`` and ``figures``."""
    for add in (_register_scores, _register_coverage, _register_tables, _register_figures):
        add(subparsers)

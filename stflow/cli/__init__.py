"""The ``stflow`` command. Each subcommand mirrors a pipeline stage.

Each module of this package registers its subcommands with ``register(subparsers)``; a
subcommand parses its options and calls one library function, nothing else.

Naming: one option name per concept in every subcommand. ``--out`` is every output path
(file or folder); an input folder is ``--<thing>-dir`` (``--model-dir``, ``--st-dir``); a
file named after its format is ``--<thing>-<format>`` where the bare name means something
else (``--samples-tsv`` vs ``--samples`` ids, ``--genes-json`` vs ``--genes`` names); a plural
is a list of names (``--samples``, ``--genes``, ``--models``); a count is ``--n-<things>``;
parallel readers, threads or processes, are ``--threads`` (what a Snakemake job's
``threads:`` grants); microns per pixel is ``--um-per-px``. Modules import only
argparse-level code at import time; their command functions import the library, so
``stflow --help`` is quick.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from stflow import __version__
from stflow.cli.arguments import Commands
from stflow.errors import StflowError

COMMAND_MODULES = [
    "stflow.cli.data",        # simulate, download, ingest, samples, splits, genes,
                              # bench-genes, patches, embed, encoders, graph
    "stflow.cli.models",      # models, train, predict
    "stflow.cli.evaluation",  # evaluate, aggregate, coverage, tables, figures
    "stflow.cli.deploy",      # train-final, predict-slide
    "stflow.cli.interop",      # export-features, export-spatialdata
    "stflow.cli.integrity",      # verify
    "stflow.cli.view",        # view
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stflow", description="Predict spatial gene expression from H&E histology with "
        "STFlow. Each subcommand is one stage of the pipeline; `stflow COMMAND --help` shows "
        "its options and their defaults.")
    parser.add_argument("--version", action="version", version=f"stflow {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.register("action", "parsers", Commands)  # every subcommand shows its defaults
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except StflowError as err:
        print(f"stflow {args.command}: error: {err}", file=sys.stderr)
        return err.exit_status
    return 0


if __name__ == "__main__":
    sys.exit(main())

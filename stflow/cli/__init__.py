"""The ``stflow`` command. Each subcommand mirrors a pipeline stage.

A stage module registers its own subcommand with ``register(subparsers)``; this file only
lists the modules, so adding a stage is one line here.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from stflow import __version__
from stflow.errors import StflowError

COMMAND_MODULES = [
    "stflow.data.simulator",      # simulate
    "stflow.data.sources.cli",   # download, ingest
    "stflow.data.splits",        # splits
    "stflow.data.genes",         # genes
    "stflow.data.patches",       # patches
    "stflow.data.embedding",         # embed, encoders
    "stflow.data.graph",         # graph
    "stflow.crossval.train",          # train, predict
    "stflow.deploy.final_model",         # train-final
    "stflow.deploy",         # predict-slide
    "stflow.evaluation.metrics",      # evaluate, aggregate
    "stflow.evaluation.paper_tables",        # tables (the paper's experiments)
    "stflow.evaluation.figures",         # figures
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stflow", description=__doc__)
    parser.add_argument("--version", action="version", version=f"stflow {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
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
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

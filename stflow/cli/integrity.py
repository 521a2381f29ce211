"""``stflow verify``: is a results folder (here or copied elsewhere) as it was written?"""

from __future__ import annotations

import argparse

from stflow.errors import input_error


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "verify", help="check every artifact of a results folder against its recorded "
        "checksum; list each damaged or missing file with the command that redoes it",
        description="Check every artifact of a results folder (where it was made, or a copy) "
        "against the SHA-256 recorded beside it when it was written ({name}.sha256; raw/ "
        "against raw/MANIFEST.tsv), several files at a time. Each damaged or missing file "
        "is listed with the Snakemake command that redoes it; the exit status is 2 if any.")
    parser.add_argument("results", help="a results folder, e.g. results/tiny")
    parser.add_argument("--threads", type=int, default=4, help="files checked at a time")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from stflow.verify import verify_results

    checked, damaged = verify_results(args.results, threads=args.threads)
    for damage in damaged:
        print(damage.line())
    if damaged:
        raise input_error(args.results, f"{len(damaged)} of {checked} files are damaged or "
                          "missing (listed above)", "redo each with the command given")
    print(f"{args.results}: all {checked} recorded files are as written")

"""What every stage script of the workflow needs before it calls the library.

A rule's ``script:`` runs with the job's Python (the one running Snakemake, or the conda
environment's with ``--use-conda``), whose PYTHONPATH may be cleared and where the project need
not be installed; the working directory (``--directory``, or a project that uses this workflow
as a module) need not hold it either. So the library is taken from this file's repository, put
first on ``sys.path``. The job's output (Python's and any library's, warnings and progress
bars included) goes to the rule's log, and bad input ends the job with the library's message
and no traceback, as the ``stflow`` command does.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[2]


@contextmanager
def stage(snakemake: Any) -> Iterator[None]:
    """Run the body as the job of ``snakemake.rule``, logging to ``snakemake.log[0]``."""
    sys.path.insert(0, str(REPOSITORY))
    with open(snakemake.log[0], "w") as log:
        os.dup2(log.fileno(), sys.stdout.fileno())
        os.dup2(log.fileno(), sys.stderr.fileno())
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from stflow.errors import StflowError

    try:
        yield
    except StflowError as err:
        print(f"stflow {snakemake.rule}: error: {err}", file=sys.stderr)
        sys.exit(err.exit_status)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def device() -> str:
    """Where torch runs: the config's device, handed over by rules/common.smk in the
    environment so that switching cpu and cuda reruns no job (params are rerun triggers)."""
    return os.environ["STFLOW_DEVICE"]


def progress_file(snakemake: Any) -> Path:
    """Where a training job appends each epoch's row as it ends: beside its log
    (``logs/train/.../{fold}.progress.tsv``), since the model folder appears only when done."""
    return Path(snakemake.log[0]).with_suffix(".progress.tsv")

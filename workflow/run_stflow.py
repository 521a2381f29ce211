"""Run the stflow library of this repository: every rule calls ``python <here> <stage> ...``.

The rules must find the library by design, not by accident: with ``--use-conda`` Snakemake's
shell clears PYTHONPATH, the job's environment does not install the project, and the working
directory (``--directory``, or the project using this workflow as a module) need not hold it.
So the library is taken from this file's own repository, put first on ``sys.path``; nothing
else is needed but its dependencies (envs/stflow.yaml).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stflow.cli import main  # noqa: E402  (after the path is set)

sys.exit(main())

"""The long fuzz of the readers users feed (issue 28): tests/test_fuzz_readers.py with
``--examples`` generated inputs per reader, random (not the derandomised short run of
``make test``), so each run tries inputs the last did not.

    .venv/bin/python benchmarks/fuzz_readers.py --examples 10000 [-k sheet]

Exit status 0: no reader raised anything but the project's error; else pytest's report
names the reader and the smallest input that broke it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    """Run the fuzz tests as one pytest process with the example count in the environment
    (hypothesis reads its settings when the test module is imported)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000,
                        help="generated inputs per reader (default 10000)")
    parser.add_argument("-k", default=None, help="only the readers matching this pytest -k")
    args = parser.parse_args(argv)
    env = {**os.environ, "STFLOW_FUZZ_EXAMPLES": str(args.examples)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "--durations=0", str(REPO / "tests" / "test_fuzz_readers.py")]
    if args.k:
        command += ["-k", args.k]
    return subprocess.call(command, cwd=REPO, env=env)


if __name__ == "__main__":
    sys.exit(main())

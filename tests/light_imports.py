"""What a piece of code imports, run in a fresh interpreter: the parse-time modules (config
checks, study, catalogues, sheet, the command's parsers) must stay light to import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = frozenset({"torch", "numpy", "pandas", "anndata", "scanpy", "sklearn", "scipy",
                   "zarr", "matplotlib", "spatialdata", "h5py", "openslide", "timm"})


def top_level_modules_after(code: str) -> set[str]:
    """The top-level packages ``code`` loads (run in the repository; those the interpreter
    loads at start do not count), e.g. {'stflow', 'yaml', 'csv', ...}."""
    script = ("import sys, json\nbefore = set(sys.modules)\n"
              f"{code}\n"
              "print(json.dumps(sorted({m.split('.')[0] for m in set(sys.modules) - before})))")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))

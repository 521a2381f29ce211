"""One tiny end-to-end run of the Snakemake workflow, shared by the workflow tests.

The fixture is registered once, in tests/conftest.py, so the session runs the workflow once
for tests/test_workflow.py and tests/test_artifacts_doc.py (a fixture imported into each
module would be two fixtures, and two runs).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from stflow import catalogue

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "dataset": {"name": "tiny", "source": "synthetic", "mirror": None, "samples": None},
    "simulate": {"patients": 2, "sections": 2, "grid": 8, "genes": 60, "seed": 0},
    "genes": {"n_top": 12, "list": None},
    "patches": {"size_um": 112, "size_px": 64, "min_tissue": 0.5},
    "encoders": ["efficientnet_lite0"],
    "embed": {"batch_size": 32},
    "models": ["stflow", "ridge"],
    "model_params": {"stflow": {"epochs": 2, "patience": 2}},
    "graph": {"k": 4},
    "device": "cpu",
    "threads": 1,
    "seeds": [0, 1],
}
SAMPLES = ["P1S1", "P1S2", "P2S1", "P2S2"]
FOLDS = ["fold0", "fold1"]
SEEDS = [0, 1]
PAPER_TABLES = list(catalogue.PAPER_TABLES)
# set by tests/conftest.py for each test: only tests marked `workflow` may spawn Snakemake
SPAWN_ALLOWED = True


@dataclass
class Run:
    """A finished tiny run: its working folder, config file and results folder."""

    workdir: Path
    configfile: Path

    @property
    def results(self) -> Path:
        return self.workdir / "results" / "tiny"

    def snakemake(self, *args: str, configfile: Path | None = None,
                  timeout: int = 600) -> subprocess.CompletedProcess:
        return snakemake(self.workdir, configfile or self.configfile, *args, timeout=timeout)


def snakemake(workdir: Path, configfile: Path, *args: str,
              timeout: int = 600) -> subprocess.CompletedProcess:
    """Run Snakemake on the repository's Snakefile in ``workdir``, as a user would: the venv
    is not activated, so the workflow itself must find the `stflow` command."""
    if not SPAWN_ALLOWED:
        pytest.fail("this test spawns Snakemake: mark it @pytest.mark.workflow "
                    "(or put pytestmark = pytest.mark.workflow in its module)")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
               "--directory", str(workdir), "--configfile", str(configfile), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=workdir)


def write_config(path: Path, **changes) -> Path:
    config = {**TINY, **changes}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _failure(result: subprocess.CompletedProcess, workdir: Path) -> str:
    logs = sorted((workdir / "results").rglob("*.log"))
    tails = "\n".join(f"--- {p.relative_to(workdir)}\n{p.read_text()[-1500:]}"
                      for p in logs if p.stat().st_size)
    return f"snakemake failed ({result.returncode}):\n{result.stderr[-4000:]}\n{tails[-6000:]}"


@pytest.fixture(scope="session", name="tiny_run")
def tiny_run_fixture(tmp_path_factory) -> Run:
    """Run the whole workflow once on 2 patients x 2 simulated sections."""
    workdir = tmp_path_factory.mktemp("tiny_run")
    run = Run(workdir, write_config(workdir / "tiny.yaml"))
    result = run.snakemake("--cores", "2", timeout=900)
    if result.returncode != 0:
        pytest.fail(_failure(result, workdir))
    return run

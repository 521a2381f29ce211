"""Jobs find the library by design: run as `--use-conda` runs them (PYTHONPATH cleared, the
project not installed in the job's environment), from another working directory, and with
the workflow used as a module of another. Conda itself cannot be installed here, so the job
environment is a venv that sees the dependencies but not the project."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import anndata as ad
import pytest
import yaml
from workflow_fixtures import REPO, TINY

pytestmark = pytest.mark.workflow  # every test here spawns Snakemake

DECOY = "raise ImportError('a stflow package of the working directory was imported')\n"


@pytest.fixture(scope="module")
def job_python(tmp_path_factory) -> Path:
    """A Python whose environment holds stflow's dependencies (and Snakemake) but not stflow:
    a venv whose .pth lists the test venv's site-packages as a plain path, so the editable
    install hook there is not run. Its `python`, which the jobs call, clears PYTHONPATH
    first, as Snakemake's shell does inside a conda environment."""
    root = tmp_path_factory.mktemp("jobenv")
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(root / "env")],
                   check=True)
    python = root / "env" / "bin" / "python"
    real = python.with_name(f"python{sys.version_info.major}.{sys.version_info.minor}")
    python.unlink()
    python.write_text(f'#!/bin/sh\nunset PYTHONPATH PYTHONHOME\nexec "{real}" "$@"\n')
    python.chmod(0o755)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = subprocess.run([str(python), "-c", "import numpy, snakemake, anndata; import stflow"],
                           capture_output=True, text=True, env=job_env(), cwd=root)
    assert "No module named 'stflow'" in probe.stderr, probe.stderr  # not installed there
    return python


def job_env() -> dict[str, str]:
    """The environment as --use-conda leaves it: no PYTHONPATH (nor PYTHONHOME)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return {**env, "OMP_NUM_THREADS": "1"}


def with_decoy(folder: Path) -> Path:
    """A folder holding a `stflow` package that must never be imported."""
    (folder / "stflow").mkdir(parents=True)
    (folder / "stflow" / "__init__.py").write_text(DECOY)
    return folder


def check_ingested(results: Path) -> None:
    adata = ad.read_h5ad(results / "st" / "P1S1.h5ad")
    assert adata.n_obs > 0 and adata.uns["sample"] == "P1S1"


def test_a_job_runs_with_pythonpath_cleared_elsewhere_and_the_project_not_installed(
        tmp_path, job_python):
    work = with_decoy(tmp_path / "work")
    elsewhere = with_decoy(tmp_path / "elsewhere")
    config = work / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    result = subprocess.run(
        [str(job_python), "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
         "--directory", str(work), "--configfile", str(config), "--cores", "1",
         "results/tiny/st/P1S1.h5ad"],
        cwd=elsewhere, env=job_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    check_ingested(work / "results" / "tiny")
    assert "working directory was imported" not in result.stderr


def test_the_workflow_runs_as_a_module_of_another(tmp_path, job_python):
    outer = with_decoy(tmp_path / "outer")
    (outer / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    (outer / "Snakefile").write_text(
        'configfile: "tiny.yaml"\n\n\n'
        f'module stflow:\n    snakefile:\n        "{REPO / "Snakefile"}"\n'
        "    config:\n        config\n\n\n"
        "use rule * from stflow as stflow_*\n")
    result = subprocess.run(
        [str(job_python), "-m", "snakemake", "--cores", "1", "results/tiny/st/P1S1.h5ad"],
        cwd=outer, env=job_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    check_ingested(outer / "results" / "tiny")

"""profiles/slurm submits the stflow DAG to a real Slurm cluster.

Starts a private one-node Slurm (tests/slurm_cluster.py) and runs the first stages of the
project's own Snakefile (download -> 4 x ingest -> samples table -> splits) on the tiny
synthetic config through `--profile profiles/slurm`, unchanged but for keeping the job logs.
Each job must have run as a Slurm job on the node, in the profile's partition, with the
rule's memory request. Needs root and `.ci/install-slurm.sh`; skips without them, except in
CI, where it fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import IN_CI
from slurm_cluster import missing_binaries, slurm_cluster
from workflow_fixtures import REPO, SAMPLES, write_config

TARGET = "results/tiny/splits.json"
RULES = {"download": 1, "ingest": len(SAMPLES), "samples_table": 1, "splits": 1}
SNAKEMAKE_TIMEOUT = 420  # s; the plugin can wait forever when status checks fail


def _require_slurm() -> None:
    problems = []
    if missing := missing_binaries():
        problems.append(f"Slurm/munge programs missing ({', '.join(missing)}): "
                        "run .ci/install-slurm.sh")
    if os.geteuid() != 0:
        problems.append("a private Slurm cluster needs root (it writes /etc/slurm/slurm.conf)")
    if problems:
        message = "; ".join(problems)
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def _run_snakemake(workdir: Path, configfile: Path, *args: str) -> subprocess.CompletedProcess:
    """Snakemake on the repository's Snakefile, with the venv on PATH for the job scripts
    (sbatch exports the environment), under `timeout -k` so a hang cannot stall the suite."""
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("SLURM_CONF", None)  # the cluster's file is /etc/slurm/slurm.conf
    command = ["timeout", "-k", "10", str(SNAKEMAKE_TIMEOUT),
               sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
               "--directory", str(workdir), "--configfile", str(configfile), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=workdir)


def _job_logs(workdir: Path) -> dict[str, list[str]]:
    """Rule -> Slurm job ids, from the plugin's per-job logs (.snakemake/slurm_logs/rule_*)."""
    jobs: dict[str, list[str]] = {}
    for log in (workdir / ".snakemake" / "slurm_logs").rglob("*.log"):
        rule = next(p.name.removeprefix("rule_") for p in log.parents
                    if p.name.startswith("rule_"))
        jobs.setdefault(rule, []).append(log.stem)
    return jobs


def test_the_slurm_profile_runs_the_first_stages_as_slurm_jobs(tmp_path):
    _require_slurm()
    workdir = tmp_path / "run"
    workdir.mkdir()
    configfile = write_config(workdir / "tiny.yaml")
    started = time.monotonic()
    with slurm_cluster(tmp_path / "slurm") as cluster:
        result = _run_snakemake(workdir, configfile, "--profile", str(REPO / "profiles" / "slurm"),
                                "--slurm-keep-successful-logs", TARGET)
        finished = cluster.finished_jobs()
        daemon_logs = cluster.log_tail()
    elapsed = time.monotonic() - started
    detail = (f"snakemake exit {result.returncode} after {elapsed:.0f} s\n"
              f"{result.stderr[-5000:]}\n{daemon_logs}")
    assert result.returncode == 0, detail

    results = workdir / "results" / "tiny"
    assert (results / "raw" / "MANIFEST.tsv").stat().st_size > 0
    for sample in SAMPLES:
        assert (results / "st" / f"{sample}.h5ad").stat().st_size > 0
    assert (results / "samples.tsv").stat().st_size > 0
    assert (results / "splits.json").stat().st_size > 0

    # Each rule's jobs went through sbatch: one plugin log per Slurm job id.
    by_rule = _job_logs(workdir)
    assert {rule: len(ids) for rule, ids in by_rule.items()} == RULES, detail
    # ... and Slurm itself ran each of them to completion on the node, in the profile's
    # partition, with the rule's own memory request (ingest asks for 4000 MB).
    by_id = {job["JobId"]: job for job in finished}
    for rule, ids in by_rule.items():
        for job_id in ids:
            job = by_id.get(job_id)
            assert job is not None, f"Slurm has no record of {rule} job {job_id}\n{detail}"
            assert (job["JobState"], job["ExitCode"]) == ("COMPLETED", "0:0"), job
            assert (job["Partition"], job["NodeList"]) == ("debug", "localhost"), job
    for job_id in by_rule["ingest"]:
        assert "mem=4000M" in by_id[job_id]["Tres"], by_id[job_id]

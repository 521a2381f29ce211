"""profiles/slurm runs the whole tiny study on a real Slurm, survives a killed training job,
and gives the tables a local run gives.

Starts a private one-node Slurm (tests/slurm_cluster.py) and runs the project's own Snakefile
end to end on the tiny config of the local run (tests/workflow_fixtures.py) through
`--profile profiles/slurm`, unchanged but for keeping the job logs and naming the partition
in the config. Mid-run, a training job on the node is killed (SIGKILL of its Python
process): the profile's retry runs it again with twice the memory, the run completes, no
half-written file is left, and the tables equal the local run's. Each job ran as a Slurm job
on the node, in the configured partition, with its rule's memory; the download ran on the
submit host (compute nodes may have no network). Needs root and `.ci/install-slurm.sh`;
skips without them, except in CI, where it fails. Bounded by `timeout -k`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import IN_CI
from slurm_cluster import Cluster, missing_binaries, slurm_cluster
from workflow_fixtures import FOLDS, REPO, SAMPLES, SEEDS, write_config

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

N_TRAIN = 2 * len(SEEDS) * len(FOLDS)  # models x seeds x folds
# genes.scope fold (the default): each fold's genes from its training samples
RULES = {"ingest": len(SAMPLES), "samples_table": 1, "splits": 1, "fold_genes": len(FOLDS),
         "patches": len(SAMPLES), "embed": len(SAMPLES), "graph": len(SAMPLES),
         "train": N_TRAIN + 1,  # one killed, run again
         "predict": N_TRAIN, "evaluate": N_TRAIN, "aggregate": 1, "paper_tables": 1,
         "figures": 1, "interval_coverage": 1,
         "section_views": 2 * len(FOLDS)}  # models x folds of the first seed
SNAKEMAKE_TIMEOUT = 1500  # s; the plugin can wait forever when status checks fail
TRAIN_MEM_MB = 16000  # rules/train.smk; the retry asks for twice as much


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


def _start_snakemake(workdir: Path, configfile: Path, *args: str) -> subprocess.Popen:
    """Snakemake on the repository's Snakefile, with the venv on PATH for the job scripts
    (sbatch exports the environment), under `timeout -k` so a hang cannot stall the suite.
    Its output goes to files (a pipe nobody reads while the test waits would block it)."""
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("SLURM_CONF", None)  # the cluster's file is /etc/slurm/slurm.conf
    command = ["timeout", "-k", "10", str(SNAKEMAKE_TIMEOUT),
               sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
               "--directory", str(workdir), "--configfile", str(configfile), *args]
    with open(workdir / "snakemake.out", "w") as out, open(workdir / "snakemake.err", "w") as err:
        return subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=workdir)


def _kill_a_training_job(cluster: Cluster, run: subprocess.Popen, workdir: Path) -> str:
    """SIGKILL the Python process of the first training job seen running on the node, a
    moment after it started; return its command line."""
    deadline = time.monotonic() + SNAKEMAKE_TIMEOUT
    while time.monotonic() < deadline and run.poll() is None:
        for pid in cluster.job_processes(".train.py", workdir):  # workflow/scripts/train.py
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                time.sleep(1.0)  # mid-run: imports done, training under way
                os.kill(pid, signal.SIGKILL)
                return command.decode()
            except (OSError, ProcessLookupError):  # finished meanwhile: take the next one
                continue
        time.sleep(0.2)
    raise AssertionError("no training job was seen running on the node")


def _job_logs(workdir: Path) -> dict[str, list[str]]:
    """Rule -> Slurm job ids, from the plugin's per-job logs (.snakemake/slurm_logs/rule_*)."""
    jobs: dict[str, list[str]] = {}
    for log in (workdir / ".snakemake" / "slurm_logs").rglob("*.log"):
        rule = next(p.name.removeprefix("rule_") for p in log.parents
                    if p.name.startswith("rule_"))
        jobs.setdefault(rule, []).append(log.stem)
    return jobs


def _table(path: Path, keys: list[str]) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t").sort_values(keys).reset_index(drop=True)


def test_the_slurm_profile_runs_the_tiny_study_end_to_end_and_survives_a_killed_job(
        tmp_path, tiny_run):
    _require_slurm()
    workdir = tmp_path / "run"
    workdir.mkdir()
    configfile = write_config(workdir / "tiny.yaml", slurm={"partition": "debug",
                                                             "gpu_partition": "gpu"})
    started = time.monotonic()
    with slurm_cluster(tmp_path / "slurm") as cluster:
        run = _start_snakemake(workdir, configfile, "--profile", str(REPO / "profiles" / "slurm"),
                               "--slurm-keep-successful-logs")
        try:
            killed = _kill_a_training_job(cluster, run, workdir)
        finally:
            run.wait()
            stderr = (workdir / "snakemake.err").read_text()
        finished = cluster.finished_jobs()
        daemon_logs = cluster.log_tail()
    elapsed = time.monotonic() - started
    detail = (f"snakemake exit {run.returncode} after {elapsed:.0f} s\n{stderr[-5000:]}\n"
              f"{daemon_logs}")
    assert run.returncode == 0, detail

    # the killed job ran again (every training folder is complete, the killed one's too: a
    # script job's command line names no output), and nothing half-written is left anywhere
    results = workdir / "results" / "tiny"
    assert ".train.py" in killed, killed
    trained = [p.parent for p in (results / "models").glob("*/*/seed*/fold*/manifest.json")]
    assert len(trained) == N_TRAIN, detail
    for out in trained:
        assert (out / "params.json").is_file() and (out / "history.tsv").is_file()
    assert not [p for p in results.rglob("*") if ".tmp-" in p.name], detail

    # the same tables as the local run of the same config
    keys = ["encoder", "model", "seed", "fold"]
    pd.testing.assert_frame_equal(_table(results / "tables" / "metrics.tsv", keys),
                                  _table(tiny_run.results / "tables" / "metrics.tsv", keys),
                                  check_exact=False, rtol=1e-5)
    pd.testing.assert_frame_equal(
        _table(results / "tables" / "summary.tsv", ["encoder", "model"]),
        _table(tiny_run.results / "tables" / "summary.tsv", ["encoder", "model"]),
        check_exact=False, rtol=1e-5)
    for name in ("comparison.png", "training_curves.png"):
        assert (results / "figures" / name).read_bytes()[:4] == b"\x89PNG"

    # Each rule's jobs went through sbatch (one plugin log per Slurm job id), but the
    # download, which needs the network, ran on the submit host.
    by_rule = _job_logs(workdir)
    assert {rule: len(ids) for rule, ids in by_rule.items()} == RULES, detail
    assert (results / "raw" / "MANIFEST.tsv").stat().st_size > 0
    # ... and Slurm ran each of them on the node, in the configured partition, with the
    # rule's own memory request (ingest asks for 4000 MB): all completed but the killed
    # training job, whose retry asked for twice the memory.
    by_id = {job["JobId"]: job for job in finished}
    states = []
    for rule, ids in by_rule.items():
        for job_id in ids:
            job = by_id.get(job_id)
            assert job is not None, f"Slurm has no record of {rule} job {job_id}\n{detail}"
            assert (job["Partition"], job["NodeList"]) == ("debug", "localhost"), job
            states.append((rule, job["JobState"], re.search(r"mem=(\d+)M", job["Tres"])[1]))
    failed = [s for s in states if s[1] != "COMPLETED"]
    assert failed == [("train", "FAILED", str(TRAIN_MEM_MB))], states
    train_mem = sorted(int(mem) for rule, state, mem in states
                       if rule == "train" and state == "COMPLETED")
    assert train_mem == [TRAIN_MEM_MB] * (N_TRAIN - 1) + [2 * TRAIN_MEM_MB], states
    for job_id in by_rule["ingest"]:
        assert "mem=4000M" in by_id[job_id]["Tres"], by_id[job_id]

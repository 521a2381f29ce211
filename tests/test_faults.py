"""Faults a new user meets: a bad sample added to a finished study, a run killed outright.
Finished work survives both, and the README says how to go on."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from workflow_fixtures import REPO, snakemake, write_config

from stflow.atomic import TEMPORARY
from stflow.data.dataset import read_features

pytestmark = pytest.mark.workflow  # every test here spawns Snakemake

NOTHING = "Nothing to be done"


def jobs_of(dry_run_stdout: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    table = dry_run_stdout.split("Job stats:")[-1]
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


def her2st_subset(mirror: Path, to: Path, sections: list[str]) -> Path:
    """A mirror holding only ``sections`` of the real her2st mirror."""
    for path in mirror.rglob("*"):
        rel = path.relative_to(mirror)
        if path.is_file() and any(s in rel.as_posix() for s in sections):
            (to / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, to / rel)
    return to


def test_a_failed_download_of_a_new_sample_keeps_the_finished_study(tmp_path, her2st_mirror):
    """B4 is ingested; C2 is added, but the mirror lacks it, so the download fails. The
    manifest is put back, and nothing already done is planned again."""
    mirror = her2st_subset(her2st_mirror, tmp_path / "mirror", ["B4"])
    dataset = {"name": "h", "source": "her2st", "mirror": str(mirror), "samples": ["B4"]}
    one = write_config(tmp_path / "one.yaml", dataset=dataset)
    done = snakemake(tmp_path, one, "--cores", "1", "results/h/st/B4.h5ad")
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = tmp_path / "results" / "h" / "raw" / "MANIFEST.tsv"
    before = manifest.read_text()

    two = write_config(tmp_path / "two.yaml", dataset={**dataset, "samples": ["B4", "C2"]})
    failed = snakemake(tmp_path, two, "--cores", "1", "results/h/st/C2.h5ad")
    assert failed.returncode != 0
    assert "C2.tsv.gz: file is missing" in (tmp_path / "results/h/logs/download.log").read_text()
    assert manifest.read_text() == before  # restored, not removed

    # the user drops C2 again: B4 is not ingested again, nor anything after it
    done = "results/h/raw/DOWNLOAD_DONE"  # what `all` asks of the download
    back = snakemake(tmp_path, one, "-n", done, "results/h/st/B4.h5ad")
    assert back.returncode == 0, back.stderr[-3000:]
    assert "ingest" not in jobs_of(back.stdout)
    # ... or adds C2 to the mirror: the download runs again (although Snakemake recorded the
    # failed job's parameters) and C2 alone is ingested
    her2st_subset(her2st_mirror, mirror, ["C2"])
    fixed = snakemake(tmp_path, two, "-n", done, "results/h/st/B4.h5ad", "results/h/st/C2.h5ad")
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    jobs = jobs_of(fixed.stdout)
    assert (jobs["download"], jobs["ingest"]) == (1, 1), jobs
    assert "results/h/st/C2.h5ad" in fixed.stdout and "output: results/h/st/B4.h5ad" not in fixed.stdout


def wait_for_temporary(run: subprocess.Popen, folder: Path, pattern: str) -> Path:
    """The first temporary sibling matching ``pattern`` under ``folder`` (an output being
    written), polled while ``run`` lasts; the run is killed where it hurts, mid-write."""
    deadline = time.monotonic() + 240
    while True:
        found = [p for p in folder.rglob(pattern) if TEMPORARY.match(p.name)]
        if found:
            return found[0]
        assert run.poll() is None and time.monotonic() < deadline, f"no {pattern} appeared"
        time.sleep(0.05)


def test_a_run_killed_mid_write_resumes_after_unlock_and_redoes_that_job(tmp_path):
    """kill -9 of Snakemake and its jobs (a power cut) while embed writes a features store:
    its temporary is left behind and Snakemake's lock with it; the next run stops on the
    lock, `--unlock` lifts it, and the run (`rerun-incomplete`, as the profiles set it, and
    as the README says) redoes that embed, completes and leaves no temporary."""
    config = write_config(tmp_path / "tiny.yaml")
    target = "results/tiny/features/efficientnet_lite0/P1S1.zarr"
    profile = ["--profile", str(REPO / "profiles" / "local"), "--cores", "1"]
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
               "--directory", str(tmp_path), "--configfile", str(config), *profile]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.Popen([*command, target], cwd=tmp_path, env=env, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        temporary = wait_for_temporary(run, tmp_path / "results", ".P1S1.zarr.tmp-*")
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # the group this test started, nothing else
        run.wait()
    assert temporary.exists() and not (tmp_path / target).exists()

    locked = snakemake(tmp_path, config, *profile, target)
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr
    readme = (REPO / "README.md").read_text()
    assert all(words in readme for words in ("--unlock", "kill -9", "rerun-incomplete"))
    unlocked = snakemake(tmp_path, config, *profile, "--unlock", target)
    assert unlocked.returncode == 0, unlocked.stderr[-3000:]
    resumed = snakemake(tmp_path, config, *profile, target)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert re.search(r"rule embed:\n(.*\n)*?\s+output: " + re.escape(target), resumed.stderr)
    features, _, _ = read_features(tmp_path / target)
    assert len(features) > 0
    assert not [p for p in (tmp_path / "results").rglob("*") if TEMPORARY.match(p.name)]

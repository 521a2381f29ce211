"""Cluster settings: where each job is sent, with how many CPUs, and how the report files
are named; all read from a dry run of the real workflow (no cluster needed)."""

from __future__ import annotations

import re

import pytest
from workflow_fixtures import REPO, snakemake, write_config

GPU_RULES = {"embed", "train", "predict"}


def planned_jobs(stdout: str) -> list[dict]:
    """Each job of a dry run: its rule, threads and resources (name -> text)."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", stdout):
        match = re.match(r"(?:local)?rule (\w+):\n", block)
        if not match or match.group(1) == "all":
            continue
        resources = re.search(r"^\s+resources: (.*)$", block, re.M)
        threads = re.search(r"^\s+threads: (\d+)$", block, re.M)
        jobs.append({"rule": match.group(1), "threads": int(threads.group(1)) if threads else 1,
                     "resources": dict(item.split("=", 1) for item in
                                       resources.group(1).split(", ")) if resources else {}})
    return jobs


def dry_run(tmp_path, *config_args: str, **changes) -> list[dict]:
    config = write_config(tmp_path / "cluster.yaml", **changes)
    result = snakemake(tmp_path, config, "-n", "--cores", "4", "--config", *config_args)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result.stdout)
    assert {job["rule"] for job in jobs} >= GPU_RULES | {"download", "ingest", "evaluate"}
    return jobs


@pytest.mark.workflow
def test_every_rule_that_asks_for_a_gpu_goes_to_the_configured_gpu_partition(tmp_path):
    jobs = dry_run(tmp_path, "slurm={partition: cpu, gpu_partition: a100q, account: lab, "
                   "gpu_model: h100}", device="cuda", threads=3)
    for job in jobs:
        resources = job["resources"]
        assert resources["slurm_account"] == "lab", job
        assert resources["cpus_per_task"] == str(job["threads"]), job
        if job["rule"] in GPU_RULES:
            assert job["threads"] == 3
            assert (resources["slurm_partition"], resources["gpu"],
                    resources["gpu_model"]) == ("a100q", "1", "h100"), job
        else:
            assert resources["slurm_partition"] == "cpu" and "gpu" not in resources, job


@pytest.mark.workflow
def test_without_cuda_no_job_asks_for_a_gpu_and_all_share_the_cpu_partition(tmp_path):
    jobs = dry_run(tmp_path, "slurm={partition: cpu, gpu_partition: a100q}", device="cpu")
    assert {job["resources"]["slurm_partition"] for job in jobs} == {"cpu"}
    assert not [job for job in jobs if "gpu" in job["resources"]]


@pytest.mark.workflow
def test_no_partition_or_account_is_sent_unless_configured(tmp_path):
    for job in dry_run(tmp_path, "device=cuda"):
        assert not {"slurm_partition", "slurm_account", "gpu_model"} & set(job["resources"])
        assert ("gpu" in job["resources"]) == (job["rule"] in GPU_RULES)


def test_every_report_entry_has_a_category_and_a_subcategory_per_dataset_with_labels():
    entries = []
    for path in sorted((REPO / "rules").glob("*.smk")):
        text = path.read_text()
        for match in re.finditer(r"report\(", text):
            depth, end = 0, match.end()
            for end in range(match.end() - 1, len(text)):  # the call's closing parenthesis
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                if depth == 0:
                    break
            entries.append((path.name, text[match.start():end + 1]))
    assert len(entries) >= 13
    for name, call in entries:
        assert re.search(r"(?<!sub)category=", call), (name, call)
        assert 'subcategory="{dataset}"' in call, (name, call)
        assert re.search(r'labels=\{"dataset": "\{dataset\}", "\w+": ', call), (name, call)

"""genes.scope in the workflow: `study` chooses the genes once, from every sample (HEST's
protocol); `fold` (the default) gives each fold its own genes/{fold}.json, chosen from its
training and validation samples only, and that fold's train and predict jobs read it."""

from __future__ import annotations

import json
import re

import pytest
from workflow_fixtures import FOLDS, snakemake, write_config

pytestmark = pytest.mark.workflow  # every test here spawns Snakemake

FOLD_SCOPE = "genes={scope: fold}"


def jobs_of(dry_run_stdout: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    table = dry_run_stdout.split("Job stats:")[-1]
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


def genes_read_by(dry_run_stdout: str, rule: str) -> dict[str, str]:
    """Output folder of each planned ``rule`` job → the genes file among its inputs."""
    jobs = re.findall(rf"rule {rule}:\n\s+input: (.*)\n\s+output: (\S+)", dry_run_stdout)
    return {output: re.search(r"results/tiny/genes[^,]*\.json", inputs).group(0)
            for inputs, output in jobs}


def refused(result) -> str:
    """The output of a Snakemake run that must have stopped before any job."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-2000:]
    assert "rule download:" not in output and "Job stats" not in output
    return output


@pytest.fixture()
def tiny(tmp_path):
    return write_config(tmp_path / "tiny.yaml", seeds=[0])


def test_study_scope_chooses_the_genes_once_for_every_fold(tiny, tmp_path):
    dry = snakemake(tmp_path, tiny, "-n", "--config", "genes={scope: study}")
    assert dry.returncode == 0, dry.stderr[-3000:]
    jobs = jobs_of(dry.stdout)
    assert jobs["genes"] == 1 and "fold_genes" not in jobs
    for rule in ("train", "predict"):
        read = genes_read_by(dry.stdout, rule)
        assert len(read) == 2 * len(FOLDS)  # stflow, ridge
        assert set(read.values()) == {"results/tiny/genes.json"}


def test_fold_scope_plans_one_genes_job_per_fold_that_its_jobs_read(tiny, tmp_path):
    dry = snakemake(tmp_path, tiny, "-n", "--config", FOLD_SCOPE)
    assert dry.returncode == 0, dry.stderr[-3000:]
    jobs = jobs_of(dry.stdout)
    assert jobs["fold_genes"] == len(FOLDS) and "genes" not in jobs
    planned = re.findall(r"rule fold_genes:\n(?:\s+\w+: .*\n)*?\s+output: (\S+)", dry.stdout)
    assert sorted(planned) == [f"results/tiny/genes/{f}.json" for f in FOLDS]
    for rule in ("train", "predict"):
        read = genes_read_by(dry.stdout, rule)
        assert len(read) == 2 * len(FOLDS)
        for output, genes in read.items():
            assert genes == f"results/tiny/genes/{output.rsplit('/', 1)[-1]}.json"


def test_a_fold_s_genes_job_reads_its_training_and_validation_samples_only(tiny, tmp_path):
    targets = [f"results/tiny/genes/{f}.json" for f in FOLDS]
    made = snakemake(tmp_path, tiny, "--cores", "1", "--config", FOLD_SCOPE, "--", *targets)
    assert made.returncode == 0, made.stderr[-3000:]
    results = tmp_path / "results" / "tiny"
    folds = json.loads((results / "splits.json").read_text())["folds"]
    for fold in folds:
        chosen = json.loads((results / "genes" / f"{fold['name']}.json").read_text())
        assert chosen["samples"] == sorted(fold["train"] + fold["val"])
        assert not set(chosen["samples"]) & set(fold["test"])
        assert len(chosen["genes"]) == 12  # the tiny study's n_top
    # the final model trains on every sample: it keeps the study-wide genes.json
    final = snakemake(tmp_path, tiny, "-n", "--config", FOLD_SCOPE, "--",
                      "results/tiny/models/efficientnet_lite0/ridge/final")
    assert final.returncode == 0, final.stderr[-3000:]
    assert jobs_of(final.stdout)["genes"] == 1
    assert "results/tiny/genes.json" in re.search(r"rule train_final:\n\s+input: (.*)",
                                                  final.stdout).group(1)


def test_a_bad_scope_is_refused_before_any_job_naming_it(tiny, tmp_path):
    output = refused(snakemake(tmp_path, tiny, "-n", "--config", "genes={scope: folds}"))
    assert "genes.scope: 'folds' is not one of ['study', 'fold']" in output

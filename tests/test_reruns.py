"""No needless reruns: train and predict depend on their own fold's samples, and only the
models that read the kNN graph depend on it and on graph.k.

A finished study is stood up cheaply: the real stages up to the splits (the checkpoint whose
folds the input functions read), then every later output as a placeholder that
`snakemake --touch` records as up to date; the dry runs that follow show what a change
would redo.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from workflow_fixtures import FOLDS, SAMPLES, Run, snakemake, write_config

DIRECTORY_OUTPUTS = re.compile(r"(\.zarr|\.view|/models/.*|/predictions/.*|/views/.*|/figures/biomarkers)$")
CONFIG = {"seeds": [0], "models": ["stflow", "ridge"]}


def jobs_of(dry_run_stdout: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    table = dry_run_stdout.split("Job stats:")[-1]
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


def planned(dry_run_stdout: str, rule: str) -> set[str]:
    """The outputs of the planned jobs of ``rule``."""
    return set(re.findall(rf"rule {rule}:\n(?:\s+\w+: .*\n)*?\s+output: (\S+)", dry_run_stdout))


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Run:
    workdir = tmp_path_factory.mktemp("finished")
    run = Run(workdir, write_config(workdir / "tiny.yaml", **CONFIG))
    real = run.snakemake("--cores", "2", "results/tiny/splits.json")
    assert real.returncode == 0, real.stderr[-3000:]
    summary = run.snakemake("--summary")
    assert summary.returncode == 0, summary.stderr[-3000:]
    for line in summary.stdout.splitlines()[1:]:
        path = workdir / line.split("\t")[0]
        if not line.startswith("results/") or path.exists():
            continue
        if DIRECTORY_OUTPUTS.search(line.split("\t")[0]):
            path.mkdir(parents=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("placeholder\n")
    # the benchmark files that the paper tables read are outputs too
    benchmarks = [f"embed/efficientnet_lite0/{s}.tsv" for s in SAMPLES] + [
        f"predict/efficientnet_lite0/{m}/seed0/{f}.tsv" for m in CONFIG["models"] for f in FOLDS]
    for name in benchmarks:
        path = run.results / "benchmarks" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("s\n1.0\n")
    touched = run.snakemake("--touch", "--cores", "1")
    assert touched.returncode == 0, touched.stderr[-3000:]
    nothing = run.snakemake("-n")
    assert "Nothing to be done" in nothing.stdout + nothing.stderr, nothing.stdout[-3000:]
    return run


def folds_with(run: Run, sample: str, parts: tuple[str, ...]) -> set[str]:
    splits = json.loads((run.results / "splits.json").read_text())
    return {f["name"] for f in splits["folds"] if any(sample in f[p] for p in parts)}


@contextmanager
def remade(*paths: Path) -> Iterator[None]:
    """``paths`` (and what a folder holds) look newly made, with new contents (Snakemake
    compares the checksums it recorded of small files), while the block runs."""
    every = [q for p in paths for q in (p, *(p.iterdir() if p.is_dir() else ()))]
    before = {q: (q.stat().st_atime, q.stat().st_mtime,
                  None if q.is_dir() else q.read_bytes()) for q in every}
    later = time.time() + 60
    for q in every:
        if q.is_file():
            q.write_bytes(q.read_bytes() + b"remade\n")
        os.utime(q, (later, later))
    try:
        yield
    finally:
        for q, (atime, mtime, data) in before.items():
            if data is not None:
                q.write_bytes(data)
            os.utime(q, (atime, mtime))


@pytest.mark.workflow
def test_re_embedding_one_sample_retrains_and_predicts_only_the_folds_that_see_it(finished):
    with remade(finished.results / "features" / "efficientnet_lite0" / "P1S1.zarr"):
        result = finished.snakemake("-n")
    assert result.returncode == 0, result.stderr[-3000:]
    trains = folds_with(finished, "P1S1", ("train", "val"))
    tests = folds_with(finished, "P1S1", ("test",))
    assert trains and tests and not trains & tests
    root = "results/tiny/{kind}/efficientnet_lite0/{model}/seed0/{fold}"
    assert planned(result.stdout, "train") == {
        root.format(kind="models", model=m, fold=f) for m in CONFIG["models"] for f in trains}
    assert planned(result.stdout, "predict") == {
        root.format(kind="predictions", model=m, fold=f) for m in CONFIG["models"]
        for f in trains | tests}
    assert not {"embed", "graph", "ingest", "splits"} & set(jobs_of(result.stdout))


@pytest.mark.workflow
def test_a_remade_graph_retrains_only_the_models_that_read_it(finished):
    """What changing graph.k does: the graph jobs rerun (k is their parameter), and of the
    models only STFlow follows; ridge never reads the graph."""
    graphs = sorted((finished.results / "graph").glob("*.npz"))
    with remade(*graphs):
        result = finished.snakemake("-n")
    assert result.returncode == 0, result.stderr[-3000:]
    assert {p.split("/")[4] for p in planned(result.stdout, "train")} == {"stflow"}
    assert jobs_of(result.stdout)["train"] == len(FOLDS)


@pytest.mark.workflow
def test_models_that_do_not_read_the_graph_are_not_given_it(finished):
    """Only the graph models' jobs take the graph (a script job prints no command line: the
    planned jobs' inputs tell), and graph.k is a parameter of their training only."""
    with remade(finished.results / "features" / "efficientnet_lite0" / "P1S1.zarr"):
        result = finished.snakemake("-n")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = re.findall(r"rule (?:train|predict):\n\s+input: (.*)\n\s+output: (\S+)", result.stdout)
    ridge = [inputs for inputs, output in jobs if "/ridge/" in output]
    stflow = [inputs for inputs, output in jobs if "/stflow/" in output]
    assert ridge and stflow
    assert not [inputs for inputs in ridge if "results/tiny/graph/" in inputs]
    assert all("results/tiny/graph/" in inputs for inputs in stflow)
    # so changing graph.k retrains the graph models only
    other_k = finished.snakemake("-n", "--config", "graph={k: 3}")
    assert other_k.returncode == 0, other_k.stderr[-3000:]
    models = "results/tiny/models/efficientnet_lite0/stflow/seed0/{fold}"
    assert planned(other_k.stdout, "train") == {models.format(fold=f) for f in FOLDS}


@pytest.mark.workflow
def test_the_neighbour_count_is_one_setting(tmp_path):
    config = write_config(tmp_path / "bad.yaml",
                          model_params={"stflow": {"epochs": 2, "patience": 2, "k": 6}})
    result = snakemake(tmp_path, config, "-n")
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Job stats" not in output
    assert "model_params.stflow.k: k is set beside graph.k (4). Fix: remove k" in output


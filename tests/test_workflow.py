"""The Snakemake workflow: runs end to end, resumes, reruns only what a change touches,
and refuses a bad config with a message naming the key."""

from __future__ import annotations

import json
import re
import shutil

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml
from test_sources_visium import make_outs
from workflow_fixtures import (
    FOLDS,
    PAPER_TABLES,
    SAMPLES,
    SEEDS,
    TINY,
    snakemake,
    write_config,
)

pytestmark = pytest.mark.workflow  # every test here spawns Snakemake or reads tiny_run

NOTHING = "Nothing to be done"


def jobs_of(dry_run_stdout: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    table = dry_run_stdout.split("Job stats:")[-1]
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


def test_full_run_writes_the_tables_and_figures(tiny_run):
    results = tiny_run.results
    metrics = pd.read_csv(results / "tables" / "metrics.tsv", sep="\t")
    assert len(metrics) == 2 * len(SEEDS) * len(FOLDS)  # encoders x models x seeds x folds
    assert set(metrics["model"]) == {"stflow", "ridge"}
    assert set(metrics["seed"]) == set(SEEDS) and set(metrics["scheme"]) == {"patient"}
    assert metrics["pearson_mean"].between(-1, 1).all()
    summary = pd.read_csv(results / "tables" / "summary.tsv", sep="\t")
    assert set(summary["model"]) == {"stflow", "ridge"} and (summary["n_folds"] == 2).all()
    assert (summary["n_seeds"] == len(SEEDS)).all()
    for name in ("comparison.png", "training_curves.png"):
        assert (results / "figures" / name).read_bytes()[:4] == b"\x89PNG"
    for fold in FOLDS:
        png = results / "figures" / "biomarkers" / "efficientnet_lite0" / f"{fold}.png"
        assert png.read_bytes()[:4] == b"\x89PNG"
    for sample in SAMPLES:
        assert (results / "figures" / "qc" / f"{sample}.png").exists()
        assert (results / "logs" / "ingest" / f"{sample}.log").exists()
        assert (results / "benchmarks" / "embed" / "efficientnet_lite0" / f"{sample}.tsv").exists()


def test_each_seed_trains_predicts_and_scores_every_fold(tiny_run):
    results = tiny_run.results
    for kind, suffix in (("models", ""), ("predictions", ""), ("metrics", ".json")):
        for seed in SEEDS:
            for fold in FOLDS:
                for model in ("stflow", "ridge"):
                    assert (results / kind / "efficientnet_lite0" / model / f"seed{seed}" /
                            f"{fold}{suffix}").exists(), (kind, model, seed, fold)
    seeds = [json.loads((results / "models" / "efficientnet_lite0" / "stflow" / f"seed{s}" /
                         "fold0" / "params.json").read_text())["seed"] for s in SEEDS]
    assert seeds == SEEDS
    metrics = pd.read_csv(results / "tables" / "metrics.tsv", sep="\t")
    stflow = metrics[metrics["model"] == "stflow"].pivot(index="fold", columns="seed",
                                                         values="pearson_mean")
    summary = pd.read_csv(results / "tables" / "summary.tsv", sep="\t").set_index("model")
    assert summary.loc["stflow", "seed_std"] > 0  # training randomness moves the score
    assert summary.loc["stflow", "seed_std"] == pytest.approx(stflow.mean(axis=0).std(ddof=0),
                                                              abs=1e-5)
    assert summary.loc["stflow", "fold_std"] == pytest.approx(stflow.mean(axis=1).std(ddof=0),
                                                              abs=1e-5)


def test_each_training_job_appended_its_epochs_beside_its_log(tiny_run):
    """A train job's rows reach logs/train/.../{fold}.progress.tsv as each epoch ends (the
    model folder appears only at the end); the kept fit's rows are its history.tsv."""
    for seed in SEEDS:
        for fold in FOLDS:
            where = f"efficientnet_lite0/stflow/seed{seed}/{fold}"
            rows = pd.read_csv(tiny_run.results / "logs" / "train" / f"{where}.progress.tsv",
                               sep="\t")
            history = pd.read_csv(tiny_run.results / "models" / where / "history.tsv",
                                  sep="\t")
            fits = [list(fit["epoch"]) for _, fit in rows.groupby("stage", sort=False)]
            assert list(history["epoch"]) in fits, (seed, fold)  # the kept fit, or trial
            assert "epoch 1/" in (tiny_run.results / "logs" / "train" /
                                  f"{where}.log").read_text()


def test_the_paper_tables_are_written(tiny_run):
    tables = tiny_run.results / "tables"
    for name in PAPER_TABLES:
        frame = pd.read_csv(tables / f"{name}.tsv", sep="\t")
        assert set(frame["scheme"]) <= {"patient"}, name
        assert (tables / f"{name}.md").read_text().startswith("## Table"), name
    assert set(pd.read_csv(tables / "methods.tsv", sep="\t")["model"]) == {"stflow", "ridge"}
    assert "_Not run: stflow_nofm, stflow_nofa" in (tables / "ablations.md").read_text()
    times = pd.read_csv(tables / "inference_time.tsv", sep="\t")
    assert len(times) == 2 * len(SEEDS) * len(FOLDS)
    assert (times["predict_s"] > 0).all() and (times["embed_s"] > 0).all()
    np.testing.assert_allclose(times["total_s"], times["predict_s"] + times["embed_s"],
                               rtol=1e-5)


def test_folds_are_patient_stratified(tiny_run):
    splits = json.loads((tiny_run.results / "splits.json").read_text())
    assert [f["name"] for f in splits["folds"]] == FOLDS
    for fold in splits["folds"]:
        test_patients = {s[:2] for s in fold["test"]}
        assert not test_patients & {s[:2] for s in fold["train"] + fold["val"]}


def test_a_second_run_has_nothing_to_do(tiny_run):
    result = tiny_run.snakemake("-n")
    assert result.returncode == 0, result.stderr
    assert NOTHING in result.stdout + result.stderr


def test_a_changed_model_setting_reruns_only_training_and_what_follows(tiny_run):
    changed = write_config(tiny_run.workdir / "changed.yaml",
                           model_params={"stflow": {"epochs": 3, "patience": 2}})
    result = tiny_run.snakemake("-n", configfile=changed)
    assert result.returncode == 0, result.stderr
    jobs = jobs_of(result.stdout)
    assert jobs.get("train") == len(FOLDS) * len(SEEDS)  # stflow only; ridge keeps its models
    assert set(jobs) <= {"train", "predict", "evaluate", "aggregate", "paper_tables", "figures",
                         "interval_coverage", "section_views", "all"}


def test_an_added_sample_is_ingested_and_embedded_alone(tiny_run):
    """One more section per patient (P1S3, P2S3): the download reruns, but the samples
    already ingested keep their st/, patches and features (ingest depends on an ancient
    manifest); the genes, folds and models that see every sample are redone."""
    more = write_config(tiny_run.workdir / "more.yaml",
                        simulate={"patients": 2, "sections": 3, "grid": 8, "genes": 60, "seed": 0})
    result = tiny_run.snakemake("-n", configfile=more)
    assert result.returncode == 0, result.stderr
    jobs = jobs_of(result.stdout)
    assert jobs["download"] == 1
    assert jobs["ingest"] == jobs["patches"] == jobs["embed"] == jobs["graph"] == 2
    ingested = re.findall(r"rule ingest:\n(?:\s+\w+: .*\n)*?\s+output: \S+/st/(\w+)\.h5ad",
                          result.stdout)
    embedded = re.findall(r"rule embed:\n(?:\s+\w+: .*\n)*?\s+output: \S+/(\w+)\.zarr",
                          result.stdout)
    assert sorted(ingested) == sorted(embedded) == ["P1S3", "P2S3"]


def test_section_scheme_leaves_one_section_out_with_a_warning_in_the_splits_log(tiny_run):
    """Its own dataset (the tiny run's results stay untouched): the splits job runs and
    warns; the DAG has one fold per sample."""
    section = write_config(tiny_run.workdir / "section.yaml",
                           dataset={**TINY["dataset"], "name": "tiny_section"},
                           splits={"scheme": "section"})
    dry = tiny_run.snakemake("-n", configfile=section)
    assert dry.returncode == 0, dry.stderr
    assert jobs_of(dry.stdout)["train"] == len(SAMPLES) * 2 * len(SEEDS)
    result = tiny_run.snakemake("--cores", "2", "results/tiny_section/splits.json",
                                configfile=section)
    assert result.returncode == 0, result.stderr[-3000:]
    root = tiny_run.workdir / "results" / "tiny_section"
    splits = json.loads((root / "splits.json").read_text())
    assert splits["scheme"] == "section"
    assert [f["test"] for f in splits["folds"]] == [[s] for s in SAMPLES]
    for fold in splits["folds"]:
        assert fold["test"][0] not in fold["train"] + fold["val"]
        # not patient-stratified: the test patient's other section is on the training side
        assert any(s[:2] == fold["test"][0][:2] for s in fold["train"] + fold["val"])
    log = (root / "logs" / "splits.log").read_text()
    assert "WARNING" in log and "NOT patient-stratified" in log


def test_section_scheme_refuses_fold_settings(tmp_path):
    config = write_config(tmp_path / "bad.yaml", splits={"scheme": "section", "n_folds": 2})
    result = snakemake(tmp_path, config, "-n")
    assert result.returncode != 0
    assert "splits.scheme: section leaves one section out" in result.stdout + result.stderr
    assert "splits.n_folds set" in result.stdout + result.stderr


def test_the_first_seed_names_the_model_folders_and_draws_the_folds(tmp_path):
    config = tmp_path / "seed3.yaml"
    config.write_text(yaml.safe_dump({**TINY, "seeds": [3]}, sort_keys=False))
    result = snakemake(tmp_path, config, "-n", "-p")
    assert result.returncode == 0, result.stderr
    assert "models/efficientnet_lite0/stflow/seed3/fold0" in result.stdout
    assert "seed0" not in result.stdout
    # the folds are drawn with that seed (a script job prints no command line: its log tells)
    made = snakemake(tmp_path, config, "--cores", "1", "results/tiny/splits.json")
    assert made.returncode == 0, made.stderr[-3000:]
    assert "seed 3" in (tmp_path / "results" / "tiny" / "logs" / "splits.log").read_text()


def test_switching_the_device_reruns_nothing(tiny_run):
    result = tiny_run.snakemake("-n", "--config", "device=cuda")
    assert result.returncode == 0, result.stderr
    assert NOTHING in result.stdout + result.stderr


def test_a_deleted_features_store_redoes_only_what_depends_on_it(tiny_run):
    store = tiny_run.results / "features" / "efficientnet_lite0" / "P1S1.zarr"
    aside = store.with_name("aside.zarr")
    shutil.move(store, aside)
    try:
        result = tiny_run.snakemake("-n")
    finally:
        shutil.move(aside, store)
    assert result.returncode == 0, result.stderr
    jobs = jobs_of(result.stdout)
    assert jobs.get("embed") == 1
    assert not set(jobs) & {"download", "ingest", "patches", "graph", "genes", "splits"}


def test_an_unknown_config_key_is_refused_naming_it(tmp_path):
    config = write_config(tmp_path / "bad.yaml", graph={"k": 4, "neighbours": 3})
    result = snakemake(tmp_path, config, "-n")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "graph.neighbours: unknown key. Fix: correct the spelling or remove it; graph " \
           "takes ['k']" in output


def test_a_wrongly_typed_config_value_is_refused_naming_it(tmp_path):
    config = write_config(tmp_path / "bad.yaml", graph={"k": "eight"})
    result = snakemake(tmp_path, config, "-n")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "graph.k: 'eight' is not of type 'integer'" in output


def test_a_fold_name_the_workflow_cannot_use_is_refused_naming_it(tmp_path):
    folds = [{"name": "first", "train": ["P1S1", "P1S2"], "test": ["P2S1", "P2S2"]}]
    config = write_config(tmp_path / "bad.yaml", splits={"folds": folds})
    result = snakemake(tmp_path, config, "-n")
    assert result.returncode != 0
    assert "'first' does not match '^fold\\\\d+$'" in result.stdout + result.stderr


def test_visium_without_patients_is_refused_before_it_can_leak(tmp_path):
    visium = {"name": "vis", "source": "visium", "mirror": str(tmp_path), "samples": ["A", "B"]}
    config = write_config(tmp_path / "vis.yaml", dataset=visium)
    result = snakemake(tmp_path, config, "-n")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "visium samples ['A', 'B']" in output and "dataset.patients" in output
    # mapped, the ingest job of A gets its patient (a script job prints no command line: the
    # ingested sample tells)
    mirror = tmp_path / "mirror"
    for sample in ("A", "B"):
        make_outs(tmp_path / "outs")
        shutil.move(tmp_path / "outs" / "S1", mirror / sample)
    mapped = write_config(tmp_path / "mapped.yaml", dataset={
        **visium, "mirror": str(mirror), "patients": {"A": "p1", "B": "p2"}})
    result = snakemake(tmp_path, mapped, "--cores", "1", "results/vis/st/A.h5ad")
    assert result.returncode == 0, result.stderr[-3000:]
    assert ad.read_h5ad(tmp_path / "results" / "vis" / "st" / "A.h5ad").uns["patient"] == "p1"


def test_the_dag_builds_without_conda_and_lint_is_clean(tmp_path):
    config = write_config(tmp_path / "tiny.yaml")
    dry = snakemake(tmp_path, config, "-n")
    assert dry.returncode == 0, dry.stderr
    assert jobs_of(dry.stdout)["embed"] == len(SAMPLES)
    lint = snakemake(tmp_path, config, "--lint")
    assert lint.returncode == 0 and "Congratulations" in lint.stdout + lint.stderr, lint.stdout


def test_the_html_report_builds(tiny_run):
    report = tiny_run.workdir / "report.html"
    result = tiny_run.snakemake("--report", str(report))
    assert result.returncode == 0, result.stderr[-3000:]
    assert report.stat().st_size > 10_000

"""`stflow tables`: the paper's experiments (Tables 1–5) from a run's metrics and job times."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from stflow.cli.evaluation import register
from stflow.errors import StflowError
from stflow.evaluation.paper_tables import TABLE_NAMES, inference_times, paper_tables

ENCODERS = ["uni", "ciga"]
FOLDS = {"fold0": ["A1", "A2"], "fold1": ["B1"]}
SECONDS = {"A1": 10.0, "A2": 20.0, "B1": 5.0}  # embedding time of each section
BENCHMARK_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time"


def score(encoder: str, model: str, seed: int, fold: str) -> float:
    """A distinct, reproducible score per run."""
    return round(0.1 * (1 + len(model) % 5) + 0.01 * int(fold[-1]) + 0.001 * seed
                 + (0.05 if encoder == "uni" else 0.0), 6)


def write_run(root, models, seeds=(0,), scheme="patient", gene_scope="fold"):
    """metrics.tsv, splits.json and the predict/embed benchmark files of a small run
    (``gene_scope`` None: a metrics.tsv without the gene scope column)."""
    scope = {} if gene_scope is None else {"gene_scope": gene_scope}
    rows = [{"scheme": scheme, "encoder": e, "model": m, "seed": s, "fold": f, **scope,
             "n_test_spots": 100 * len(FOLDS[f]), "n_genes": 50, "n_constant_genes": 0,
             "pearson_mean": score(e, m, s, f)}
            for e in ENCODERS for m in models for s in seeds for f in FOLDS]
    metrics = root / "tables" / "metrics.tsv"
    metrics.parent.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(metrics, sep="\t", index=False)
    splits = root / "splits.json"
    splits.write_text(json.dumps({"scheme": scheme, "folds": [
        {"name": f, "train": ["C1"], "val": [], "test": t} for f, t in FOLDS.items()]}))
    for row in rows:
        path = (root / "benchmarks" / "predict" / row["encoder"] / row["model"] /
                f"seed{row['seed']}" / f"{row['fold']}.tsv")
        path.parent.mkdir(parents=True, exist_ok=True)
        seconds = 1.0 + int(row["fold"][-1]) + row["seed"]
        path.write_text(f"{BENCHMARK_HEADER}\n{seconds}\t0:00:01\t1\t1\t1\t1\t0\t0\t0\t1\n")
    for encoder in ENCODERS:
        for sample, seconds in SECONDS.items():
            path = root / "benchmarks" / "embed" / encoder / f"{sample}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            factor = 2 if encoder == "uni" else 1
            path.write_text(f"{BENCHMARK_HEADER}\n{seconds * factor}\t0:00:10\t1\t1\t1\t1\t0"
                            "\t0\t0\t1\n")
    return metrics, splits, root / "benchmarks"


def test_every_table_holds_only_its_models_present_in_the_run(tmp_path):
    models = ["ridge", "stflow_gaussian", "stflow", "stflow_egnn", "stflow_zero"]
    tables = paper_tables(*write_run(tmp_path, models))
    assert list(tables) == TABLE_NAMES

    methods, markdown = tables["methods"]
    assert len(methods) == len(models) * len(ENCODERS)
    assert list(methods.columns) == ["scheme", "encoder", "model", "gene_scope", "pearson_mean",
                                     "fold_std", "seed_std", "n_folds", "n_seeds"]
    assert markdown.splitlines()[2].startswith("Split scheme: **patient**. Gene scope: **fold**")
    assert markdown.splitlines()[4] == "| scheme | model | uni | ciga |"
    assert len([line for line in markdown.splitlines() if line.startswith("| patient |")]) == 5

    priors, markdown = tables["priors"]
    assert list(priors.columns[:4]) == ["scheme", "prior", "encoder", "model"]
    uni = priors[priors["encoder"] == "uni"]
    assert list(uni["model"]) == ["stflow", "stflow_zero", "stflow_gaussian"]  # paper order
    assert list(uni["prior"]) == ["ZINB", "zero", "Gaussian"]
    folds = [score("uni", "stflow_zero", 0, f) for f in FOLDS]
    zero = uni.set_index("model").loc["stflow_zero"]
    assert zero["pearson_mean"] == pytest.approx(np.mean(folds))
    assert zero["fold_std"] == pytest.approx(np.std(folds))
    assert (f"| patient | zero | stflow_zero | {np.mean(folds):.3f} ± {np.std(folds):.3f} "
            "(sd over folds), 1 seed (no seed sd) |") in markdown
    assert "_Not run: stflow_zinb_fitted" in markdown

    denoisers, _ = tables["denoisers"]
    assert sorted(set(denoisers["denoiser"])) == ["EGNN", "frame-averaging transformer"]
    assert len(denoisers) == 2 * len(ENCODERS)

    ablations, markdown = tables["ablations"]
    assert set(ablations["model"]) == {"stflow"}
    assert "_Not run: stflow_nofm, stflow_nofa" in markdown


def test_a_table_none_of_whose_models_ran_is_written_with_a_note(tmp_path):
    tables = paper_tables(*write_run(tmp_path, ["ridge"]))
    priors, markdown = tables["priors"]
    assert priors.empty and "prior" in priors.columns and "scheme" in priors.columns
    assert "none of its models (stflow, stflow_zinb_fitted, stflow_zero, stflow_gaussian)" \
        in markdown
    assert len(tables["methods"][0]) == len(ENCODERS)


def test_inference_time_separates_the_image_encoder_from_prediction(tmp_path):
    metrics, splits, benchmarks = write_run(tmp_path, ["stflow", "ridge"], seeds=(0, 1))
    tables = paper_tables(metrics, splits, benchmarks)
    times, markdown = tables["inference_time"]
    assert len(times) == len(ENCODERS) * 2 * 2 * len(FOLDS)
    assert "scheme" in times.columns and "seed" in times.columns
    row = times.set_index(["encoder", "model", "seed", "fold"]).loc[("uni", "stflow", 1, "fold0")]
    assert row["predict_s"] == 2.0                       # 1 + fold 0 + seed 1
    assert row["embed_s"] == 2 * (10.0 + 20.0)           # the fold's two test sections
    assert row["total_s"] == row["predict_s"] + row["embed_s"]
    assert (row["n_test_samples"], row["n_test_spots"]) == (2, 200)
    ciga = times[(times["encoder"] == "ciga") & (times["model"] == "ridge")]
    predict, embed = ciga["predict_s"].mean(), ciga["embed_s"].mean()
    assert f"| patient | ridge | ciga | {predict:.2f} | {embed:.2f} | {predict + embed:.2f} |" \
        in markdown
    assert "2 fold(s) and 2 seed(s)" in markdown


def test_a_missing_benchmark_file_is_named(tmp_path):
    metrics, splits, benchmarks = write_run(tmp_path, ["stflow"])
    missing = benchmarks / "embed" / "ciga" / "B1.tsv"
    missing.unlink()
    with pytest.raises(StflowError, match=f"{missing}: benchmark file does not exist"):
        inference_times(pd.read_csv(metrics, sep="\t"), splits, benchmarks)


def test_every_paper_table_carries_the_gene_scope(tmp_path):
    tables = paper_tables(*write_run(tmp_path / "study", ["stflow", "ridge"], gene_scope="study"))
    for name, (frame, _) in tables.items():
        assert set(frame["gene_scope"]) == {"study"}, name
    assert "Gene scope: **study**" in tables["methods"][1]
    with pytest.raises(StflowError, match=r"metrics.tsv: lacks the columns \['gene_scope'\]"):
        paper_tables(*write_run(tmp_path / "none", ["stflow"], gene_scope=None))


def test_section_results_are_marked_in_the_paper_tables(tmp_path):
    tables = paper_tables(*write_run(tmp_path, ["stflow", "stflow_zero"], scheme="section"))
    for name, (frame, markdown) in tables.items():
        assert set(frame["scheme"]) == {"section"}, name
        assert "NOT patient-stratified" in markdown, name


def test_cli_writes_every_table_as_tsv_and_markdown(tmp_path):
    metrics, splits, benchmarks = write_run(tmp_path, ["stflow", "stflow_nofa"])
    parser = argparse.ArgumentParser(prog="stflow")
    register(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "tables"
    args = parser.parse_args(["tables", "--metrics-tsv", str(metrics), "--splits", str(splits),
                              "--benchmarks-dir", str(benchmarks), "--out", str(out)])
    args.func(args)
    for name in TABLE_NAMES:
        assert "scheme" in pd.read_csv(out / f"{name}.tsv", sep="\t").columns, name
        assert (out / f"{name}.md").read_text().startswith("## Table"), name
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]
    bad = tmp_path / "bad.tsv"
    pd.read_csv(metrics, sep="\t").drop(columns="seed").to_csv(bad, sep="\t", index=False)
    with pytest.raises(StflowError, match=r"lacks the columns \['seed'\]"):
        paper_tables(bad, splits, benchmarks)

"""Target genes: HEST's expressed-everywhere filter + top highly variable, or a checked list."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from stflow.cli.data import register
from stflow.crossval.inputs import read_fold
from stflow.data.genes import (
    check_gene_list,
    expressed_genes,
    gene_scope,
    hest_genes,
    select_fold_genes,
)
from stflow.data.loading import read_biomarkers, read_genes
from stflow.errors import StflowError

BACKGROUND = [f"BG{i:03d}" for i in range(200)]
VARIABLE = ["VAR1", "VAR2", "VAR3"]


def write_sample(path, rng: np.random.Generator, n: int = 200, rare_fraction: float = 0.5):
    """Poisson background genes, three over-dispersed genes, one gene rare in some samples."""
    means = np.geomspace(0.5, 60, len(BACKGROUND))
    background = rng.poisson(means, size=(n, len(BACKGROUND)))
    # Over-dispersed: zero in 80% of the spots, large in the rest (same mean range).
    variable = rng.poisson([10, 40, 160], size=(n, 3)) * (rng.random((n, 3)) < 0.2)
    rare = rng.poisson(30, size=(n, 1)) * (rng.random((n, 1)) < rare_fraction)
    blank = rng.poisson(40, size=(n, 1)) * (rng.random((n, 1)) < 0.5)
    counts = np.hstack([background, variable, rare, blank]).astype(np.int32)
    genes = BACKGROUND + VARIABLE + ["RARE", "BLANK_0001"]
    adata = ad.AnnData(X=sp.csr_matrix(counts), var=pd.DataFrame(index=genes),
                       obs=pd.DataFrame(index=[f"s{i}" for i in range(n)]))
    adata.write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    folder = tmp_path_factory.mktemp("st")
    rng = np.random.default_rng(0)
    return [write_sample(folder / "A.h5ad", rng),
            write_sample(folder / "B.h5ad", rng, rare_fraction=0.05)]


def test_expressed_genes_counts_nonzero_spots_against_ceil_of_ten_percent():
    counts = sp.csr_matrix(np.array([[1, 0, 0]] * 2 + [[1, 1, 0]] * 2 + [[0, 1, 5]] * 16))
    # 20 spots → at least ceil(2.0) = 2 expressing spots.
    assert list(expressed_genes(counts, np.array(["a", "b", "c"]))) == ["a", "b", "c"]
    counts = sp.csr_matrix(np.array([[1, 0, 0]] + [[0, 1, 5]] * 20))
    # 21 spots → ceil(2.1) = 3: one expressing spot is not enough.
    assert list(expressed_genes(counts, np.array(["a", "b", "c"]))) == ["b", "c"]


def test_hest_protocol_picks_variable_genes_expressed_in_every_sample(samples):
    genes = hest_genes(samples, n_top=3)
    # RARE is the most variable gene but below 10% of spots in sample B; BLANK probes are
    # dropped as HEST drops them.
    assert genes == VARIABLE


def test_too_few_passing_genes_says_how_many_and_what_to_do(samples):
    with pytest.raises(StflowError, match=r"only 203 genes .* lower --n-top to at most 203"):
        hest_genes(samples, n_top=250)


def test_explicit_list_must_exist_in_every_sample(samples, tmp_path):
    assert check_gene_list(["VAR2", "BG001"], samples) == ["VAR2", "BG001"]
    other = tmp_path / "C.h5ad"
    ad.AnnData(X=sp.csr_matrix(np.ones((3, 1), dtype=np.int32)),
               var=pd.DataFrame(index=["VAR2"])).write_h5ad(other)
    with pytest.raises(StflowError, match=r"BG001 \(missing in C\)") as err:
        check_gene_list(["VAR2", "BG001", "NOPE"], [*samples, other])
    assert "NOPE (missing in A, B, C)" in str(err.value)


def run_cli(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="stflow")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)


def test_cli_writes_genes_json(samples, tmp_path):
    out = tmp_path / "genes.json"
    run_cli(["genes", "--st", *map(str, samples), "--n-top", "3", "--out", str(out)])
    assert json.loads(out.read_text()) == {"genes": VARIABLE, "protocol": "hest-hvg",
                                           "n_top": 3, "scope": "study", "biomarkers": []}
    run_cli(["genes", "--st", *map(str, samples), "--list", "BG005", "VAR1", "--out", str(out)])
    assert json.loads(out.read_text()) == {"genes": ["BG005", "VAR1"], "protocol": "list",
                                           "n_top": 2, "scope": "list", "biomarkers": []}


def test_included_biomarkers_are_appended_once_and_checked(samples, tmp_path):
    out = tmp_path / "genes.json"
    run_cli(["genes", "--st", *map(str, samples), "--n-top", "3", "--include", "BG010", "VAR2",
             "--out", str(out)])
    assert json.loads(out.read_text()) == {"genes": [*VARIABLE, "BG010"],
                                           "protocol": "hest-hvg+include", "n_top": 3,
                                           "scope": "study", "biomarkers": []}
    with pytest.raises(StflowError, match=r"NOPE \(missing in A, B\)"):
        run_cli(["genes", "--st", *map(str, samples), "--include", "NOPE", "--out", str(out)])


def test_biomarkers_are_extra_targets_outside_the_benchmark_genes(samples, tmp_path, caplog):
    out = tmp_path / "genes.json"
    run_cli(["genes", "--st", *map(str, samples), "--n-top", "3", "--biomarkers", "BG010",
             "VAR2", "NOPE", "BG020", "--out", str(out)])
    written = json.loads(out.read_text())
    # the benchmark genes are the protocol's, unchanged; the biomarkers they lack come apart,
    # one already among them is not repeated and one no sample measures is left out, said so
    assert (written["genes"], written["protocol"]) == (VARIABLE, "hest-hvg")
    assert written["biomarkers"] == ["BG010", "BG020"]
    assert "biomarkers not measured in every sample, so not predicted: NOPE" in caplog.text
    assert read_genes(out) == [*VARIABLE, "BG010", "BG020"]  # what a model trains on
    assert read_genes(out, biomarkers=False) == VARIABLE
    assert read_biomarkers(out) == ["BG010", "BG020"]


# genes.scope fold: each fold's genes come from its training and validation samples only.

@pytest.fixture(scope="module")
def rare_in_c(tmp_path_factory):
    """Samples A, B, C; RARE, the most variable gene, is expressed in under 10 % of C's spots."""
    folder = tmp_path_factory.mktemp("results") / "st"  # a results folder's st/
    folder.mkdir()
    rng = np.random.default_rng(1)
    return {name: write_sample(folder / f"{name}.h5ad", rng, rare_fraction=fraction)
            for name, fraction in (("A", 0.5), ("B", 0.5), ("C", 0.05))}


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    """fold0 tests on C (trains on A, validates on B); fold1 tests on A and validates on C."""
    path = tmp_path_factory.mktemp("splits") / "splits.json"
    path.write_text(json.dumps({"scheme": "section", "folds": [
        {"name": "fold0", "train": ["A"], "val": ["B"], "test": ["C"]},
        {"name": "fold1", "train": ["B"], "val": ["C"], "test": ["A"]}]}))
    return path


def test_a_fold_s_genes_are_chosen_without_its_test_samples(rare_in_c, splits, tmp_path):
    paths = list(rare_in_c.values())
    # the study-wide choice sees C, where RARE is too sparse: RARE is not a target anywhere
    assert "RARE" not in hest_genes(paths, n_top=4)
    # fold0 never looks at its test sample C, so RARE is chosen for it
    out = tmp_path / "genes" / "fold0.json"
    assert set(select_fold_genes(paths, splits_path=splits, fold="fold0", out=out, n_top=4)) == {"RARE", *VARIABLE}
    written = json.loads(out.read_text())
    assert written["fold"] == "fold0" and written["samples"] == ["A", "B"]
    assert written["scope"] == "fold"
    assert (written["protocol"], written["n_top"]) == ("hest-hvg", 4)
    # fold1 validates on C: its training samples do count
    assert "RARE" not in select_fold_genes(paths, splits_path=splits, fold="fold1",
                                           out=tmp_path / "f1.json", n_top=4)


def test_a_fold_s_test_counts_do_not_choose_its_genes_but_its_gene_names_do(rare_in_c, splits,
                                                                             tmp_path):
    with_c = select_fold_genes(list(rare_in_c.values()), splits_path=splits, fold="fold0",
                               out=tmp_path / "a.json", n_top=4)
    c = ad.read_h5ad(rare_in_c["C"])
    c.X = c.X[::-1]  # other counts, the same genes measured
    other = tmp_path / "other" / "C.h5ad"
    other.parent.mkdir()
    c.write_h5ad(other)
    changed = [rare_in_c["A"], rare_in_c["B"], other]
    assert select_fold_genes(changed, splits_path=splits, fold="fold0", out=tmp_path / "b.json",
                             n_top=4) == with_c
    # a gene the test sample does not measure at all cannot be a target it is scored on
    unmeasured = tmp_path / "panel" / "C.h5ad"
    unmeasured.parent.mkdir()
    c[:, [g for g in c.var_names if g != "RARE"]].copy().write_h5ad(unmeasured)
    panel = [rare_in_c["A"], rare_in_c["B"], unmeasured]
    assert "RARE" not in select_fold_genes(panel, splits_path=splits, fold="fold0",
                                           out=tmp_path / "c.json", n_top=4)


def test_a_fold_s_biomarkers_must_be_measured_by_its_test_samples_too(rare_in_c, splits,
                                                                       tmp_path):
    c = ad.read_h5ad(rare_in_c["C"])
    unmeasured = tmp_path / "panel" / "C.h5ad"  # test sample C of fold0 lacks BG010
    unmeasured.parent.mkdir()
    c[:, [g for g in c.var_names if g != "BG010"]].copy().write_h5ad(unmeasured)
    out = tmp_path / "fold0.json"
    genes = select_fold_genes([rare_in_c["A"], rare_in_c["B"], unmeasured], splits_path=splits,
                              fold="fold0", out=out, n_top=4, biomarkers=["BG010", "BG011"])
    assert json.loads(out.read_text())["biomarkers"] == ["BG011"]
    assert "BG011" not in genes  # select_fold_genes returns the benchmark genes


def test_a_fold_s_training_sample_must_be_given(rare_in_c, splits, tmp_path):
    with pytest.raises(StflowError, match=r"fold 'fold0' trains on \['B'\], whose st files are "
                                          r"not given. Fix: pass the st/\{sample\}.h5ad file"):
        select_fold_genes([rare_in_c["A"], rare_in_c["C"]], splits_path=splits, fold="fold0",
                          out=tmp_path / "x.json")


def test_cli_chooses_one_fold_s_genes_with_splits_and_fold(rare_in_c, splits, tmp_path):
    out = tmp_path / "fold0.json"
    st = [str(p) for p in rare_in_c.values()]
    run_cli(["genes", "--st", *st, "--n-top", "4", "--include", "BG010", "--splits", str(splits),
             "--fold", "fold0", "--out", str(out)])
    assert json.loads(out.read_text()) == {
        "genes": [*sorted(["RARE", *VARIABLE]), "BG010"], "protocol": "hest-hvg+include",
        "n_top": 4, "scope": "fold", "fold": "fold0", "samples": ["A", "B"], "biomarkers": []}
    with pytest.raises(StflowError, match=r"--splits/--fold: only one of the two is given"):
        run_cli(["genes", "--st", *st, "--fold", "fold0", "--out", str(out)])
    with pytest.raises(StflowError, match=r"--list: a listed gene set is the same for every "
                                          r"fold.* Fix: drop --splits and --fold"):
        run_cli(["genes", "--st", *st, "--list", "VAR1", "--splits", str(splits), "--fold",
                 "fold0", "--out", str(out)])


REPO = Path(__file__).resolve().parents[1]
HER2ST_STUDY = REPO / "benchmarks" / "her2st_study.py"


def test_the_her2st_benchmark_takes_the_genes_scope():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    shown = subprocess.run([sys.executable, str(HER2ST_STUDY), "--help"], capture_output=True,
                           text=True, env=env, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "--genes-scope {study,fold}" in shown.stdout


def test_the_her2st_benchmark_chooses_each_fold_s_genes_as_the_workflow_does(rare_in_c, splits):
    spec = importlib.util.spec_from_file_location("her2st_study", HER2ST_STUDY)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    results = rare_in_c["A"].parents[1]
    parts = {fold: read_fold(splits, fold) for fold in ("fold0", "fold1")}
    everywhere = study.genes_per_fold(results, "hest", "study", ["A", "B", "C"], parts)
    assert everywhere["fold0"] == everywhere["fold1"] and "RARE" not in everywhere["fold0"]
    per_fold = study.genes_per_fold(results, "hest", "fold", ["A", "B", "C"], parts)
    assert "RARE" in per_fold["fold0"] and "RARE" not in per_fold["fold1"]  # C trains fold1
    # --genes json reads the workflow's genes/{fold}.json
    for fold in parts:
        select_fold_genes(list(rare_in_c.values()), splits_path=splits, fold=fold,
                          out=results / "genes" / f"{fold}.json", n_top=50)
    assert study.genes_per_fold(results, "json", "fold", ["A", "B", "C"], parts) == per_fold


def test_a_genes_json_says_how_its_genes_were_chosen_or_is_refused_by_name():
    assert gene_scope({"genes": ["A"], "protocol": "list", "scope": "hest-bench"},
                      "g.json") == "hest-bench"
    with pytest.raises(StflowError, match=r"g.json: records no gene scope.*re-run the genes"):
        gene_scope({"genes": ["A"], "protocol": "hest-hvg", "fold": "fold0"}, "g.json")

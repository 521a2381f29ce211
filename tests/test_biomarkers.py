"""Biomarkers always predicted, on the real her2st sections: ERBB2 is not among their 50 most
variable genes, yet the default her2st study trains it as an extra target (genes.json
"biomarkers") under either genes.scope and draws it, while the benchmark genes stay HEST's
protocol's (issue 26)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from workflow_fixtures import REPO

from stflow.config_checks import with_defaults
from stflow.data.genes import hest_genes, select_fold_genes, select_target_genes
from stflow.data.loading import read_genes
from stflow.data.sources import get_source, her2st, write_st
from stflow.evaluation.shown_genes import choose_genes
from stflow.schema import load_schema
from stflow.study import Study

SECTIONS = ["B4", "C2", "C3", "C4", "C5", "C6"]
# leave one patient out, as config/her2st.yaml's study: test B4, then test patient C
FOLDS = {"fold0": {"train": ["C2", "C3", "C4", "C5"], "val": ["C6"], "test": ["B4"]},
         "fold1": {"train": ["B4"], "val": [], "test": ["C2", "C3", "C4", "C5", "C6"]}}


@pytest.fixture(scope="module")
def st_paths(her2st_mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The six sections downloaded from the mirror and ingested once for the module."""
    root = tmp_path_factory.mktemp("her2st")
    her2st.download(root / "raw", mirror=her2st_mirror)
    source = get_source("her2st")
    return {s: write_st(source.read_sample(root / "raw", s), root / "st" / f"{s}.h5ad")
            for s in source.list_samples(root / "raw")}


def her2st_study(scope: str) -> Study:
    """The study of config/her2st.yaml with ``genes.scope`` set."""
    config = yaml.safe_load((REPO / "config" / "her2st.yaml").read_text())
    config["genes"]["scope"] = scope
    return Study(with_defaults(config, load_schema(REPO / "config" / "schema.yaml")))


def test_the_her2st_config_names_its_biomarkers_for_figures_not_for_the_benchmark():
    study = her2st_study("study")
    assert study.genes_settings("her2st")["include"] == []
    assert study.genes_settings("her2st")["biomarkers"] == ["ERBB2", "GATA3"]
    assert study.fold_genes_settings()["biomarkers"] == ["ERBB2", "GATA3"]


def test_study_scope_draws_erbb2_with_the_benchmark_genes_unchanged(st_paths, tmp_path):
    study = her2st_study("study")
    paths = [st_paths[s] for s in SECTIONS]
    out = tmp_path / "genes.json"
    benchmark = select_target_genes(paths, out, **study.genes_settings("her2st"))
    assert benchmark == hest_genes(paths, n_top=50) and "ERBB2" not in benchmark
    written = json.loads(out.read_text())
    assert written["genes"] == benchmark and "ERBB2" in written["biomarkers"]
    shown, note = choose_genes(study.figure_genes, read_genes(out))
    assert "ERBB2" in shown and "ERBB2" not in note


def test_fold_scope_draws_erbb2_in_every_fold_with_its_benchmark_genes_unchanged(st_paths,
                                                                                 tmp_path):
    study = her2st_study("fold")
    assert study.genes_per_fold()
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"scheme": "patient", "folds": [
        {"name": name, **parts} for name, parts in FOLDS.items()]}))
    for fold, parts in FOLDS.items():
        out = tmp_path / "genes" / f"{fold}.json"
        benchmark = select_fold_genes(list(st_paths.values()), splits_path=splits, fold=fold,
                                      out=out, **study.fold_genes_settings())
        trained = [st_paths[s] for s in sorted(parts["train"] + parts["val"])]
        tested = [st_paths[s] for s in parts["test"]]
        assert benchmark == hest_genes(trained, n_top=50, measured_in=tested)
        written = json.loads(out.read_text())
        assert written["genes"] == benchmark
        assert ("ERBB2" in benchmark) != ("ERBB2" in written["biomarkers"])
        shown, _ = choose_genes(study.figure_genes, read_genes(out))
        assert "ERBB2" in shown, fold

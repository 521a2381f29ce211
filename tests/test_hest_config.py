"""config/hest.yaml names HEST-bench's tasks, samples and fold counts exactly, and uses the
published splits and genes, checked against a fixture in HEST's published layout."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from hest_bench_layout import BENCH_CONFIG_TASKS, TASKS, write_bench_tree

from stflow.config_checks import schema_problems
from stflow.data.sources.hest import read_bench_splits
from stflow.schema import load_schema

REPO = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((REPO / "config" / "hest.yaml").read_text())


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    return write_bench_tree(tmp_path_factory.mktemp("bench_data"))


def split_samples(task_dir: Path) -> tuple[set[str], int]:
    """Every sample id the task's split files name, and the number of train/test pairs."""
    files = sorted((task_dir / "splits").glob("*.csv"))
    ids = {str(s) for path in files for s in pd.read_csv(path)["sample_id"]}
    return ids, len([f for f in files if f.name.startswith("test_")])


def test_the_tasks_are_the_nine_hest_benchmarks_and_hcc_is_left_out_saying_why():
    names = [task["name"] for task in CONFIG["tasks"]]
    assert sorted(names) == sorted(BENCH_CONFIG_TASKS)
    assert "HCC" in TASKS and "HCC" not in names
    text = (REPO / "config" / "hest.yaml").read_text()
    assert "HCC ships in hest-bench's folder too, but is not among the nine tasks" in text


def test_every_task_lists_exactly_the_samples_and_fold_count_of_its_split_files(bench):
    for task in CONFIG["tasks"]:
        ids, n_pairs = split_samples(bench / task["name"])
        assert sorted(task["samples"]) == sorted(ids), task["name"]
        assert len(task["samples"]) == len(set(task["samples"])), task["name"]
        assert task["n_folds"] == n_pairs, task["name"]


def test_prad_has_its_23_sections_and_no_mend155():
    prad = next(t for t in CONFIG["tasks"] if t["name"] == "PRAD")
    assert len(prad["samples"]) == 23
    assert set(prad["samples"]) == {f"MEND{i}" for i in range(139, 163)} - {"MEND155"}


def test_the_published_splits_and_genes_are_the_default(bench):
    assert CONFIG["splits"]["source"] == "hest-bench"
    assert CONFIG["genes"]["source"] == "hest-bench"
    assert not CONFIG["splits"]["folds"] and not any(t.get("folds") for t in CONFIG["tasks"])
    # what the splits stage reads from each task folder agrees with the configured count
    for task in CONFIG["tasks"]:
        folds = read_bench_splits(bench / task["name"])["folds"]
        assert len(folds) == task["n_folds"], task["name"]
        assert (bench / task["name"] / "var_50genes.json").is_file()


def test_the_config_is_valid_against_the_schema():
    config = yaml.safe_load((REPO / "config" / "hest.yaml").read_text())
    assert schema_problems(config, load_schema(REPO / "config" / "schema.yaml")) == []

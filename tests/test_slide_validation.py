"""The slide-validation benchmark's comparison (benchmarks/slide_validation.py): slide means,
the nearest-lattice match and the spot agreement of one section, and the tables."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "slide_validation.py"
GENES = ["ERBB2", "KRT19", "MGP"]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("slide_validation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def expression(xy: np.ndarray) -> np.ndarray:
    """A smooth field per gene over the slide (level-0 px)."""
    x, y = xy[:, 0] / 100, xy[:, 1] / 100
    return np.stack([x, y, x * y], axis=1)


def section(rng: np.random.Generator, shift: float = 0.0):
    grid = np.stack(np.meshgrid(np.arange(20), np.arange(20)), -1).reshape(-1, 2) * 10.0
    lattice = ad.AnnData(expression(grid) + shift)
    lattice.obsm["spatial"] = grid
    measured_xy = grid[rng.choice(len(grid), 60, replace=False)] + rng.uniform(-2, 2, (60, 2))
    names = [f"s{i}" for i in range(60)]
    truth = expression(measured_xy) + shift + rng.normal(0, 0.05, (60, 3))
    scored = ad.AnnData(expression(measured_xy) + shift + rng.normal(0, 0.05, (60, 3)),
                        layers={"truth": truth})
    scored.obs_names, scored.obsm["spatial"] = names, measured_xy
    order = rng.permutation(60)  # predict-slide's rows, matched by name
    given = ad.AnnData(scored.X[order] + rng.normal(0, 0.01, (60, 3)))
    given.obs_names = [names[i] for i in order]
    return lattice, given, scored


def test_a_section_agrees_where_the_fields_agree(bench):
    rng = np.random.default_rng(0)
    lattice, given, scored = section(rng)
    row = bench.compare_section(GENES, lattice, given, scored, rng, 200)
    assert row["n_lattice"] == 400 and row["n_measured"] == 60
    assert row["match_distance_px_max"] <= 2 * np.sqrt(2)
    assert min(row["spot_pearson_median"].values()) > 0.9
    means = row["slide_means"]
    assert np.allclose(means["lattice"], np.asarray(lattice.X).mean(0))
    assert np.allclose(means["measured"], scored.layers["truth"].mean(0))
    erbb2 = row["biomarkers"]["ERBB2"]
    low, high = erbb2["slide_mean_ci95"]["measured"]
    assert low < erbb2["slide_mean"]["measured"] < high
    assert row["biomarkers"]["GATA3"] is None  # not among the genes: said, not skipped


def test_across_sections_follows_the_section_shifts_and_the_tables_name_them(bench):
    rng = np.random.default_rng(1)
    sections = []
    for i, shift in enumerate([0.0, 1.0, -0.5, 2.0]):
        lattice, given, scored = section(rng, shift)
        sections.append({"fold": "fold0", "sample": f"S{i}",
                         **bench.compare_section(GENES, lattice, given, scored, rng, 50)})
    groups = bench.across_sections(sections, {"fold0": GENES})
    assert list(groups) == ["all"]  # one fold: no group of its own beside "all"
    across = groups["all"]
    assert across["n_sections"] == 4 and across["n_genes"] == 3
    assert across["lattice_vs_measured"]["median"] > 0.9
    assert "GATA3" not in across["lattice_vs_measured"]
    text = bench.markdown({"model": "ridge", "encoder": "e", "seed": 0, "n_samples": 1,
                           "sections": sections, "across_sections": groups})
    assert "| fold0 | S3 | GATA3 | not among the fold's genes" in text
    assert "| all (4) | lattice | 3 | " in text and "| all (4) | fold | 3 | " in text


def test_reports_of_single_folds_merge_without_predicting_again(bench, tmp_path,
                                                               monkeypatch):
    rng = np.random.default_rng(2)
    monkeypatch.setattr(bench, "training_pseudo_bulk", lambda *a: np.array([0.0, 1.0, 2.0]))
    parts = []
    for fold, shifts in (("fold0", [0.0]), ("fold1", [1.0, -0.5, 2.0])):
        rows = [{"fold": fold, "sample": f"{fold}_{i}",
                 **bench.compare_section(GENES, *section(rng, shift), rng, 20)}
                for i, shift in enumerate(shifts)]
        path = tmp_path / f"{fold}.json"
        path.write_text(bench.json.dumps({"genes": {fold: GENES}, "sections": rows}))
        parts.append(str(path))
    (tmp_path / "splits.json").write_text('{"folds": [{"name": "fold0", "test": ["a"]}, '
                                          '{"name": "fold1", "test": ["b"]}]}')
    args = bench.argparse.Namespace(results=str(tmp_path), model="stflow", encoder="e", seed=0,
                                    n_samples=8, device="cpu", bootstrap=20, folds=None,
                                    reuse=parts)
    report = bench.run(args)  # no model folder exists: nothing is predicted
    assert [s["sample"] for s in report["sections"]] == ["fold0_0", "fold1_0", "fold1_1",
                                                         "fold1_2"]
    assert {k: v["n_sections"] for k, v in report["across_sections"].items()} == {
        "all": 4, "fold1": 3}
    erbb2 = report["sections"][0]["biomarkers"]["ERBB2"]
    assert erbb2["training_mean"] == 0.0  # the training pseudo-bulk beside every section
    assert "| 0.00 |" in bench.markdown(report)


def test_the_section_table_heads_its_columns_in_the_order_it_fills_them(bench):
    header = bench.section_table({"sections": []})[0]
    named = [name.replace("_", " ") for name in bench.SPOT_PAIRS]
    assert " | ".join(named) in header

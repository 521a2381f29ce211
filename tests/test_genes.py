"""Target genes: HEST's expressed-everywhere filter + top highly variable, or a checked list."""

from __future__ import annotations

import argparse
import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from stflow.cli.data import register
from stflow.data.genes import check_gene_list, expressed_genes, hest_genes
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
                                           "n_top": 3}
    run_cli(["genes", "--st", *map(str, samples), "--list", "BG005", "VAR1", "--out", str(out)])
    assert json.loads(out.read_text()) == {"genes": ["BG005", "VAR1"], "protocol": "list",
                                           "n_top": 2}


def test_included_biomarkers_are_appended_once_and_checked(samples, tmp_path):
    out = tmp_path / "genes.json"
    run_cli(["genes", "--st", *map(str, samples), "--n-top", "3", "--include", "BG010", "VAR2",
             "--out", str(out)])
    assert json.loads(out.read_text()) == {"genes": [*VARIABLE, "BG010"],
                                           "protocol": "hest-hvg+include", "n_top": 3}
    with pytest.raises(StflowError, match=r"NOPE \(missing in A, B\)"):
        run_cli(["genes", "--st", *map(str, samples), "--include", "NOPE", "--out", str(out)])

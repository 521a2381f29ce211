"""The HEST-bench metric: pooled per-gene Pearson, constant genes left out, population std."""

from __future__ import annotations

import argparse
import json
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr

from stflow.errors import StflowError
from stflow.evaluate import (
    aggregate,
    evaluate_predictions,
    fold_metrics,
    mean_pearson,
    pearson_per_gene,
    register,
    summary_markdown,
)


def test_pearson_per_gene_equals_scipy_on_a_hand_made_case():
    truth = np.array([[0.0, 1.0], [1.0, 3.0], [2.0, 2.0], [4.0, 0.5]])
    pred = np.array([[0.5, 2.0], [0.7, 1.0], [2.5, 2.5], [3.0, 0.0]])
    got = pearson_per_gene(truth, pred)
    want = [pearsonr(truth[:, g], pred[:, g])[0] for g in range(2)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert mean_pearson(truth, pred) == pytest.approx(np.mean(want))


def test_constant_truth_is_excluded_and_constant_prediction_scores_zero():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(30, 3))
    pred = truth + rng.normal(size=(30, 3))
    truth[:, 1] = 2.3  # constant in the truth: cannot be scored, for any model
    pred[:, 2] = 0.0   # constant in the prediction: explains nothing, r = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = pearson_per_gene(truth, pred)
        assert np.isnan(values[1]) and values[2] == 0.0
        assert mean_pearson(truth, pred) == pytest.approx(
            (pearsonr(truth[:, 0], pred[:, 0])[0] + 0.0) / 2)
    result = fold_metrics([truth], [pred], ["A", "B", "C"], ["s1"])
    assert result["n_constant_genes"] == 1
    assert result["pearson_per_gene"]["B"] is None and result["pearson_per_gene"]["C"] == 0.0
    assert result["pearson_mean"] == pytest.approx((values[0] + 0.0) / 2)


def test_collapsing_a_gene_to_a_constant_lowers_the_mean():
    """Every model is averaged over the same genes: dropping a hard gene is not rewarded."""
    rng = np.random.default_rng(1)
    truth = rng.normal(size=(50, 2))
    honest = truth + rng.normal(size=(50, 2)) * np.array([0.3, 3.0])  # gene 1 is hard
    collapsed = honest.copy()
    collapsed[:, 1] = honest[:, 1].mean()
    assert pearson_per_gene(truth, honest)[1] > 0
    assert mean_pearson(truth, collapsed) < mean_pearson(truth, honest)


def test_fold_score_pools_spots_across_samples_instead_of_averaging_samples():
    # Within each sample the prediction is perfectly anti-correlated, but the samples'
    # levels differ and are predicted right: pooled Pearson is positive, per-sample is -1.
    truth_a, pred_a = np.array([[0.0], [1.0], [2.0]]), np.array([[2.0], [1.0], [0.0]])
    truth_b, pred_b = truth_a + 10, pred_a + 10
    result = fold_metrics([truth_a, truth_b], [pred_a, pred_b], ["G"], ["a", "b"])
    pooled = pearsonr(np.r_[truth_a, truth_b][:, 0], np.r_[pred_a, pred_b][:, 0])[0]
    assert result["pearson_mean"] == pytest.approx(pooled)
    assert result["pearson_mean"] > 0.9
    assert result["pearson_per_sample"] == {"a": pytest.approx(-1.0), "b": pytest.approx(-1.0)}
    assert result["n_test_spots"] == 6


def test_shape_mismatch_is_refused():
    with pytest.raises(StflowError, match="differs from truth"):
        pearson_per_gene(np.zeros((4, 2)), np.zeros((4, 3)))


def main(argv: list[str]) -> int:
    """Run this module's subcommands as `stflow` would (parser built from register())."""
    parser = argparse.ArgumentParser(prog="stflow")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)
    return 0


def _write_prediction(path, sample, truth, pred, genes):
    adata = ad.AnnData(X=pred.astype(np.float32), var=pd.DataFrame(index=genes),
                       obs=pd.DataFrame(index=[f"{sample}_{i}" for i in range(len(pred))]))
    adata.layers["truth"] = truth.astype(np.float32)
    adata.uns["sample"] = sample
    adata.write_h5ad(path)


def _fold_json(tmp_path, model, fold, seed, noise):
    rng = np.random.default_rng(seed)
    paths = []
    for sample in ("s1", "s2"):
        truth = rng.poisson(3, size=(20, 4)).astype(float)
        truth = np.log1p(truth)
        pred = truth + noise * rng.normal(size=truth.shape)
        path = tmp_path / f"{model}_{fold}_{sample}.h5ad"
        _write_prediction(path, sample, truth, pred, ["G1", "G2", "G3", "G4"])
        paths.append(str(path))
    out = tmp_path / "metrics" / "uni" / model / f"{fold}.json"
    assert main(["evaluate", "--predictions", *paths, "--encoder", "uni", "--model", model,
                 "--fold", fold, "--out", str(out)]) == 0
    return out


def test_evaluate_cli_writes_the_fold_json(tmp_path):
    out = _fold_json(tmp_path, "stflow", "fold0", 0, 0.5)
    data = json.loads(out.read_text())
    assert {"encoder": "uni", "model": "stflow", "fold": "fold0", "n_test_spots": 40,
            "n_genes": 4, "n_constant_genes": 0}.items() <= data.items()
    assert set(data["pearson_per_gene"]) == {"G1", "G2", "G3", "G4"}
    assert set(data["pearson_per_sample"]) == {"s1", "s2"}
    assert data["pearson_mean"] == pytest.approx(np.mean(list(data["pearson_per_gene"].values())))


def test_predictions_with_different_genes_are_refused(tmp_path):
    truth = np.ones((3, 2)) * np.arange(3)[:, None]
    _write_prediction(tmp_path / "a.h5ad", "a", truth, truth, ["G1", "G2"])
    _write_prediction(tmp_path / "b.h5ad", "b", truth, truth, ["G1", "G3"])
    with pytest.raises(StflowError, match="genes differ"):
        evaluate_predictions([tmp_path / "a.h5ad", tmp_path / "b.h5ad"], "uni", "m", "fold0")


def test_aggregate_reports_population_std_and_the_papers_table(tmp_path):
    metrics = [_fold_json(tmp_path, model, f"fold{k}", k, noise)
               for model, noise in (("stflow", 0.3), ("ridge", 1.0)) for k in range(3)]
    tables = aggregate(metrics)
    folds = [json.loads(p.read_text())["pearson_mean"] for p in metrics[:3]]
    row = tables["summary"].set_index("model").loc["stflow"]
    assert row["pearson_mean"] == pytest.approx(np.mean(folds))
    assert row["pearson_std"] == pytest.approx(np.std(folds, ddof=0))
    assert row["pearson_std"] != pytest.approx(np.std(folds, ddof=1))
    assert row["n_folds"] == 3
    assert len(tables["genes"]) == 6 * 4

    out = tmp_path / "tables"
    assert main(["aggregate", "--metrics", *map(str, metrics), "--out-dir", str(out)]) == 0
    assert list(pd.read_csv(out / "metrics.tsv", sep="\t").columns) == [
        "encoder", "model", "fold", "n_test_spots", "n_genes", "n_constant_genes",
        "pearson_mean"]
    assert list(pd.read_csv(out / "genes.tsv", sep="\t").columns) == [
        "encoder", "model", "fold", "gene", "pearson"]
    markdown = (out / "summary.md").read_text()
    assert markdown.splitlines()[0] == "| model | uni |"
    assert f"| stflow | {np.mean(folds):.3f} ± {np.std(folds):.3f} |" in markdown
    assert markdown == summary_markdown(tables["summary"])


def test_aggregate_refuses_a_fold_given_twice(tmp_path):
    metric = _fold_json(tmp_path, "stflow", "fold0", 0, 0.5)
    with pytest.raises(StflowError, match="given twice"):
        aggregate([metric, metric])

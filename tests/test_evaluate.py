"""The HEST-bench metric: pooled per-gene Pearson, constant genes left out, population std
over folds and, separately, over seeds, each named where it is shown; every row labelled
with its split scheme and gene scope."""

from __future__ import annotations

import argparse
import json
import logging
import re
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr

from stflow.cli.evaluation import register
from stflow.errors import StflowError
from stflow.evaluation.bootstrap import bca_interval
from stflow.evaluation.fold_scores import evaluate_fold, evaluate_predictions
from stflow.evaluation.hest_metric import fold_metrics, mean_pearson, pearson_per_gene
from stflow.evaluation.summary import aggregate, summary_markdown


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


def _lattice_um(n_spots, pitch_um=100.0):
    """Spot centres five to a row, ``pitch_um`` apart."""
    return np.stack([np.arange(n_spots) % 5, np.arange(n_spots) // 5], axis=1) * pitch_um


def _write_prediction(path, sample, truth, pred, genes, mpp=None, gene_scope="fold",
                      biomarkers=()):
    """A prediction h5ad as predict writes it; with ``mpp``, pixel coordinates and uns["mpp"]
    instead of obsm["spatial_um"]; ``gene_scope`` None: none recorded;
    ``biomarkers``: the genes marked as outside the benchmark."""
    adata = ad.AnnData(X=pred.astype(np.float32), var=pd.DataFrame(index=genes),
                       obs=pd.DataFrame(index=[f"{sample}_{i}" for i in range(len(pred))]))
    adata.layers["truth"] = truth.astype(np.float32)
    adata.uns["sample"] = sample
    if gene_scope is not None:
        adata.uns["stflow"] = {"kind": "prediction", "gene_scope": gene_scope}
        if biomarkers:
            adata.uns["stflow"]["biomarkers"] = list(biomarkers)
    if mpp is None:
        adata.obsm["spatial_um"] = _lattice_um(len(pred))
    else:
        adata.obsm["spatial"] = _lattice_um(len(pred)) / mpp
        adata.uns["mpp"] = mpp
    adata.write_h5ad(path)


def _splits(tmp_path, scheme="patient", test=("s1", "s2")):
    """A splits.json whose folds fold0..fold2 all test ``test``."""
    path = tmp_path / f"splits_{scheme}.json"
    folds = [{"name": f"fold{k}", "train": ["t"], "val": [], "test": list(test)}
             for k in range(3)]
    path.write_text(json.dumps({"scheme": scheme, "folds": folds}))
    return path


def _fold_json(tmp_path, model, fold, seed, noise, train_seed=0, options=(), biomarkers=()):
    """Evaluate a fold of two test samples through the CLI; ``seed`` draws truth and noise;
    ``biomarkers`` are predicted after G1..G4, marked as outside the benchmark."""
    rng = np.random.default_rng(seed)
    paths = []
    for sample in ("s1", "s2"):
        truth = rng.poisson(3, size=(20, 4 + len(biomarkers))).astype(float)
        truth = np.log1p(truth)
        pred = truth + noise * rng.normal(size=truth.shape)
        path = tmp_path / f"{model}_{fold}_{sample}.h5ad"
        _write_prediction(path, sample, truth, pred, ["G1", "G2", "G3", "G4", *biomarkers],
                          biomarkers=biomarkers)
        paths.append(str(path))
    out = tmp_path / "metrics" / "uni" / model / f"seed{train_seed}" / f"{fold}.json"
    assert main(["evaluate", "--predictions", *paths, "--encoder", "uni", "--model", model,
                 "--seed", str(train_seed), "--fold", fold, "--splits", str(_splits(tmp_path)),
                 "--out", str(out), *options]) == 0
    return out


def test_evaluate_cli_writes_the_fold_json(tmp_path):
    out = _fold_json(tmp_path, "stflow", "fold0", 0, 0.5)
    data = json.loads(out.read_text())
    assert {"scheme": "patient", "encoder": "uni", "model": "stflow", "seed": 0,
            "fold": "fold0", "n_test_spots": 40, "n_genes": 4,
            "n_constant_genes": 0}.items() <= data.items()
    assert set(data["pearson_per_gene"]) == {"G1", "G2", "G3", "G4"}
    assert set(data["pearson_per_sample"]) == {"s1", "s2"}
    assert data["pearson_mean"] == pytest.approx(np.mean(list(data["pearson_per_gene"].values())))
    # 4 x the 100 µm spot spacing: each 5 x 4 sample is cut into a 400 µm square and the rest
    boot = data["bootstrap"]
    assert {"n": 1000, "seed": 0, "block_um": {"s1": 400.0, "s2": 400.0},
            "n_blocks": {"s1": 2, "s2": 2}}.items() <= boot.items()
    assert len(boot["replicates"]) == 1000


def test_biomarkers_are_scored_apart_and_never_enter_the_benchmark_mean(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plain = json.loads(_fold_json(tmp_path / "a", "stflow", "fold0", 0, 0.5).read_text())
    marked = json.loads(_fold_json(tmp_path / "b", "stflow", "fold0", 0, 0.5,
                                   biomarkers=["ERBB2"]).read_text())
    # the benchmark genes, their mean and its resamples are those of G1..G4 alone
    assert marked["n_genes"] == 4 and set(marked["pearson_per_gene"]) == {"G1", "G2", "G3", "G4"}
    assert marked["pearson_mean"] == pytest.approx(
        np.mean(list(marked["pearson_per_gene"].values())))
    assert plain["biomarker_pearson"] == {} and set(marked["biomarker_pearson"]) == {"ERBB2"}
    assert -1 <= marked["biomarker_pearson"]["ERBB2"] <= 1
    assert len(marked["bootstrap"]["replicates"]) == len(plain["bootstrap"]["replicates"])
    # aggregate: genes.tsv and the mean hold no biomarker; biomarkers.tsv and summary.md do
    out = tmp_path / "tables"
    assert main(["aggregate", "--metrics", str(tmp_path / "b" / "metrics" / "uni" / "stflow" /
                                               "seed0" / "fold0.json"), "--out", str(out)]) == 0
    assert "ERBB2" not in set(pd.read_csv(out / "genes.tsv", sep="\t")["gene"])
    biomarkers = pd.read_csv(out / "biomarkers.tsv", sep="\t")
    assert list(biomarkers.columns) == ["scheme", "encoder", "model", "seed", "fold", "gene",
                                        "pearson"]
    assert list(biomarkers["gene"]) == ["ERBB2"]
    summary = pd.read_csv(out / "summary.tsv", sep="\t")
    assert summary["pearson_mean"].iloc[0] == pytest.approx(marked["pearson_mean"])
    markdown = (out / "summary.md").read_text()
    assert "Biomarkers (trained beside the genes above, scored apart: not in their mean" in markdown
    erbb2 = marked["biomarker_pearson"]["ERBB2"]
    assert f"| patient | uni | stflow | ERBB2 | {erbb2:.3f} |" in markdown


def test_the_cli_sets_the_bootstrap_and_refuses_too_few_replicates(tmp_path):
    options = ["--bootstrap", "200", "--block-um", "150", "--bootstrap-seed", "3"]
    boot = json.loads(_fold_json(tmp_path, "stflow", "fold0", 0, 0.5,
                                 options=options).read_text())["bootstrap"]
    assert (boot["n"], boot["seed"], boot["block_um"]) == (200, 3, {"s1": 150.0, "s2": 150.0})
    assert len(boot["replicates"]) == 200 and boot["n_blocks"] == {"s1": 9, "s2": 9}
    with pytest.raises(StflowError, match="evaluation.bootstrap .* 99 replicates are too few"):
        _fold_json(tmp_path, "stflow", "fold0", 0, 0.5, options=["--bootstrap", "99"])


def test_pixel_coordinates_are_read_through_the_microns_per_pixel(tmp_path):
    truth = np.log1p(np.random.default_rng(0).poisson(3, size=(20, 2)).astype(float))
    _write_prediction(tmp_path / "um.h5ad", "s1", truth, truth + 0.5, ["G1", "G2"])
    _write_prediction(tmp_path / "px.h5ad", "s1", truth, truth + 0.5, ["G1", "G2"], mpp=0.5)
    in_um, in_px = (evaluate_predictions([tmp_path / f"{name}.h5ad"], "uni", "m", "fold0")
                    for name in ("um", "px"))
    assert in_px["bootstrap"] == in_um["bootstrap"]
    assert in_px["bootstrap"]["block_um"] == {"s1": 400.0}


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
    assert row["fold_std"] == pytest.approx(np.std(folds, ddof=0))
    assert row["fold_std"] != pytest.approx(np.std(folds, ddof=1))
    assert row["n_folds"] == 3
    assert (row["seed_std"], row["n_seeds"], row["scheme"]) == (0.0, 1, "patient")
    assert len(tables["genes"]) == 6 * 4

    out = tmp_path / "tables"
    assert main(["aggregate", "--metrics", *map(str, metrics), "--out", str(out)]) == 0
    assert list(pd.read_csv(out / "metrics.tsv", sep="\t").columns) == [
        "scheme", "encoder", "model", "seed", "fold", "gene_scope", "n_test_spots", "n_genes",
        "n_constant_genes", "pearson_mean"]
    assert list(pd.read_csv(out / "genes.tsv", sep="\t").columns) == [
        "scheme", "encoder", "model", "seed", "fold", "gene", "pearson"]
    assert pd.read_csv(out / "biomarkers.tsv", sep="\t").empty  # no biomarker was marked
    assert list(pd.read_csv(out / "summary.tsv", sep="\t").columns) == [
        "scheme", "encoder", "model", "gene_scope", "pearson_mean", "fold_std", "seed_std",
        "n_folds",
        "n_seeds", "ci_low", "ci_high", "reference", "diff", "diff_low", "diff_high",
        "n_bootstrap", "bootstrap_bias", "ci_low_2x", "ci_high_2x", "ci_low_8x", "ci_high_8x"]
    assert set(pd.read_csv(out / "summary.tsv", sep="\t")["gene_scope"]) == {"fold"}
    markdown = (out / "summary.md").read_text()
    assert markdown.splitlines()[0].startswith("Split scheme: **patient**. Gene scope: **fold** "
                                               "(chosen per fold")
    assert markdown.splitlines()[2] == "| scheme | model | uni | Δ uni |"
    assert (f"| patient | stflow | {np.mean(folds):.3f} ± {np.std(folds):.3f} (sd over folds), "
            f"1 seed (no seed sd), 95 % CI [{row['ci_low']:.2f}, {row['ci_high']:.2f}] | "
            f"{row['diff']:+.3f} [{row['diff_low']:+.3f}, {row['diff_high']:+.3f}] vs ridge |"
            ) in markdown
    assert "| patient | ridge |" in markdown and markdown.rstrip().count("| reference |") == 1
    assert "spatial block bootstrap of the test spots" in markdown
    assert "1000 replicates" in markdown and "paired difference" in markdown
    assert "95 % BCa interval" in markdown and "2× and 8× the block side" in markdown
    assert "Warning" not in markdown and "seed ±" not in markdown
    assert not re.search(r"± [0-9.]+ (?!\(sd over folds\))", markdown)  # no bare ±
    assert markdown == summary_markdown(tables["summary"])


def _resamples(path, side=None):
    """(replicates, jackknife) of a fold JSON, at the block side or a wider one ("2x")."""
    boot = json.loads(path.read_text())["bootstrap"]
    boot = boot["wider"][side] if side else boot
    return (np.array(boot["replicates"], dtype=float), np.array(boot["jackknife"], dtype=float),
            json.loads(path.read_text())["pearson_mean"])


def _model_resamples(paths, model, side=None):
    """Replicate b: mean over folds and seeds of each fold's b; jackknife value of block k of
    fold f: the model score moved by fold f's (leave-k-out − score), averaged over its seeds,
    over the number of folds."""
    runs = {key: _resamples(p, side) for key, p in paths.items() if key[0] == model}
    score = np.mean([s for _, _, s in runs.values()])
    folds = sorted({k for _, k, _ in runs})
    jack = np.concatenate([np.mean([j - s for (_, k, _), (_, j, s) in runs.items() if k == f],
                                   axis=0) / len(folds) for f in folds])
    return np.mean([r for r, _, _ in runs.values()], axis=0), score + jack, score


def test_each_model_is_compared_with_the_best_baseline_over_the_same_replicates(tmp_path):
    noise = {"stflow": 0.5, "stflow_nofm": 0.1, "ridge": 0.7, "rf": 1.5}
    paths = {(model, k, seed): _fold_json(tmp_path, model, f"fold{k}", k, level + 0.1 * seed,
                                          train_seed=seed)
             for model, level in noise.items() for k in range(2) for seed in (0, 1)}
    summary = aggregate(list(paths.values()))["summary"].set_index("model")
    # the best model outside the STFlow family, although stflow_nofm scores higher still
    assert set(summary["reference"]) == {"ridge"}
    assert summary.loc["stflow_nofm", "pearson_mean"] > summary.loc["ridge", "pearson_mean"]
    stflow, stflow_jack, score = _model_resamples(paths, "stflow")
    ridge, ridge_jack, ridge_score = _model_resamples(paths, "ridge")
    row = summary.loc["stflow"]
    assert row["pearson_mean"] == pytest.approx(score)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(
        bca_interval(stflow, score, stflow_jack))
    assert (row["ci_low"], row["ci_high"]) != pytest.approx(tuple(np.percentile(stflow,
                                                                                [2.5, 97.5])))
    assert row["ci_low"] <= row["pearson_mean"] <= row["ci_high"]
    assert row["bootstrap_bias"] == pytest.approx(stflow.mean() - score)
    for side in ("2x", "8x"):
        replicates, jackknife, _ = _model_resamples(paths, "stflow", side)
        assert (row[f"ci_low_{side}"], row[f"ci_high_{side}"]) == pytest.approx(
            bca_interval(replicates, score, jackknife), nan_ok=True)
    assert row["diff"] == pytest.approx(score - ridge_score)
    assert (row["diff_low"], row["diff_high"]) == pytest.approx(
        bca_interval(stflow - ridge, score - ridge_score, stflow_jack - ridge_jack))
    assert row["n_bootstrap"] == 1000
    reference = summary.loc["ridge"]
    assert reference["diff"] == 0.0
    assert np.isnan(reference["diff_low"]) and np.isnan(reference["diff_high"])


def test_perfect_predictions_have_an_interval_collapsed_at_one(tmp_path):
    paths = [_fold_json(tmp_path, "ridge", f"fold{k}", k, 0.0) for k in range(2)]
    row = aggregate(paths)["summary"].iloc[0]
    assert (row["pearson_mean"], row["ci_low"], row["ci_high"]) == pytest.approx((1, 1, 1))
    assert ("| patient | ridge | 1.000 ± 0.000 (sd over folds), 1 seed (no seed sd), 95 % CI "
            "[1.00, 1.00] | reference |") in summary_markdown(
        aggregate(paths)["summary"])


@pytest.mark.parametrize(("options", "settings"), [
    (["--bootstrap-seed", "1"], "1000 replicates, seed 1"),
    (["--block-um", "150"], 'blocks of {"s1": 150.0, "s2": 150.0} µm'),
])
def test_runs_bootstrapped_with_other_settings_are_not_compared(tmp_path, options, settings):
    paths = [_fold_json(tmp_path, "stflow", "fold0", 0, 0.5),
             _fold_json(tmp_path, "ridge", "fold0", 0, 1.0, options=options)]
    with pytest.raises(StflowError, match=re.escape(f"ridge/seed0/fold0.json: bootstrapped "
                                                    f"with {settings}, but ") +
                       r".*stflow/seed0/fold0.json with .*: their replicates are not paired"):
        aggregate(paths)


def _metric(tmp_path, model, seed, fold, score, scheme="patient"):
    """A minimal fold metrics JSON, as `stflow evaluate` writes it."""
    path = tmp_path / "metrics" / scheme / model / f"seed{seed}" / f"{fold}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "scheme": scheme, "encoder": "uni", "model": model, "seed": seed, "fold": fold,
        "gene_scope": "fold", "n_test_spots": 10, "n_genes": 1, "n_constant_genes": 0,
        "pearson_mean": score,
        "pearson_per_gene": {"G1": score}}))
    return path


SCORES = {("fold0", 0): 0.1, ("fold0", 1): 0.3, ("fold1", 0): 0.5, ("fold1", 1): 0.9}


def test_the_fold_spread_and_the_seed_spread_are_reported_separately(tmp_path):
    paths = [_metric(tmp_path, "stflow", seed, fold, v) for (fold, seed), v in SCORES.items()]
    tables = aggregate(paths)
    assert sorted(tables["metrics"]["seed"]) == [0, 0, 1, 1]
    row = tables["summary"].iloc[0]
    assert row["pearson_mean"] == pytest.approx(0.45)          # over folds and seeds
    assert row["fold_std"] == pytest.approx(np.std([0.2, 0.7]))  # seed-averaged folds
    assert row["seed_std"] == pytest.approx(np.std([0.3, 0.6]))  # fold-averaged seeds
    assert (row["n_folds"], row["n_seeds"]) == (2, 2)
    markdown = summary_markdown(tables["summary"])
    assert "| patient | stflow | 0.450 ± 0.250 (sd over folds), seed sd 0.150 | – |" in markdown
    assert "population std over seeds" in markdown and "seed ±" not in markdown
    assert set(tables["metrics"]["gene_scope"]) == set(tables["summary"]["gene_scope"]) == {
        "fold"}
    assert "Gene scope: **fold** (chosen per fold" in markdown


def test_metrics_written_before_the_bootstrap_aggregate_with_nan_intervals(tmp_path, caplog):
    paths = [_metric(tmp_path, model, 0, f"fold{k}", score + k / 10)
             for model, score in (("stflow", 0.5), ("ridge", 0.4)) for k in range(2)]
    with caplog.at_level(logging.WARNING, logger="stflow.evaluation.summary"):
        summary = aggregate(paths)["summary"].set_index("model")
    assert summary[["ci_low", "ci_high", "diff_low", "diff_high", "bootstrap_bias",
                    "ci_low_2x", "ci_high_8x"]].isna().all().all()
    assert list(summary["n_bootstrap"]) == [0, 0]
    assert summary.loc["stflow", "diff"] == pytest.approx(0.1)  # the point difference stays
    assert "no bootstrap replicates in some metrics of patient/uni/stflow, patient/uni/ridge" \
        in caplog.text and "re-run `stflow evaluate`" in caplog.text
    markdown = summary_markdown(summary.reset_index())
    assert ("| patient | stflow | 0.550 ± 0.050 (sd over folds), 1 seed (no seed sd) | "
            "+0.100 vs ridge |") in markdown
    assert "95 % CI" not in markdown


def test_metrics_bootstrapped_without_the_jackknife_aggregate_with_nan_intervals(tmp_path,
                                                                                 caplog):
    paths = [_fold_json(tmp_path, "ridge", f"fold{k}", k, 0.5) for k in range(2)]
    old = json.loads(paths[0].read_text())
    for key in ("jackknife", "wider"):  # as evaluate wrote it before the BCa interval
        del old["bootstrap"][key]
    paths[0].write_text(json.dumps(old))
    with caplog.at_level(logging.WARNING, logger="stflow.evaluation.summary"):
        row = aggregate(paths)["summary"].iloc[0]
    assert np.isnan([row["ci_low"], row["ci_high"], row["ci_low_8x"]]).all()
    assert row["n_bootstrap"] == 0 and "re-run `stflow evaluate`" in caplog.text


def test_a_missing_fold_of_one_seed_is_refused(tmp_path):
    paths = [_metric(tmp_path, "stflow", seed, fold, v) for (fold, seed), v in SCORES.items()
             if (fold, seed) != ("fold1", 1)]
    with pytest.raises(StflowError, match="uni/stflow lacks fold1 with seed 1"):
        aggregate(paths)


def test_section_level_results_are_labelled_in_every_table(tmp_path):
    paths = [_metric(tmp_path, "stflow", 0, f"fold{k}", 0.5 + k / 10, scheme="section")
             for k in range(2)]
    tables = aggregate(paths)
    for name in ("metrics", "summary", "genes"):
        assert set(tables[name]["scheme"]) == {"section"}, name
    markdown = summary_markdown(tables["summary"])
    assert markdown.splitlines()[4].startswith("| section | stflow |")
    assert "NOT patient-stratified" in markdown and "optimistic" in markdown


def test_evaluate_records_the_splits_scheme_and_refuses_other_samples(tmp_path):
    truth = np.log1p(np.arange(12, dtype=float).reshape(6, 2))
    _write_prediction(tmp_path / "s1.h5ad", "s1", truth, truth + 0.1, ["G1", "G2"])
    result = evaluate_fold([tmp_path / "s1.h5ad"], _splits(tmp_path, "section", ["s1"]),
                           "uni", "stflow", "fold1", seed=4)
    assert (result["scheme"], result["seed"], result["fold"]) == ("section", 4, "fold1")
    with pytest.raises(StflowError, match=r"fold fold0 tests \['s1', 's2'\], but the "
                       r"predictions are of \['s1'\]"):
        evaluate_fold([tmp_path / "s1.h5ad"], _splits(tmp_path), "uni", "stflow", "fold0")
    with pytest.raises(StflowError, match="no fold named 'fold7'"):
        evaluate_fold([tmp_path / "s1.h5ad"], _splits(tmp_path), "uni", "stflow", "fold7")


def test_evaluate_records_the_gene_scope_the_predictions_carry(tmp_path):
    truth = np.log1p(np.arange(12, dtype=float).reshape(6, 2))
    for name, scope in (("fold", "fold"), ("study", "study"), ("old", None)):  # old: none
        _write_prediction(tmp_path / f"{name}.h5ad", "s1", truth, truth + 0.1, ["G1", "G2"],
                          gene_scope=scope)
    scored = {name: evaluate_predictions([tmp_path / f"{name}.h5ad"], "uni", "m", "fold0")
              for name in ("fold", "study")}
    assert {n: r["gene_scope"] for n, r in scored.items()} == {"fold": "fold", "study": "study"}
    with pytest.raises(StflowError, match=r"old.h5ad: records no gene scope.*re-run the predict"):
        evaluate_predictions([tmp_path / "old.h5ad"], "uni", "m", "fold0")
    _write_prediction(tmp_path / "s2.h5ad", "s2", truth, truth, ["G1", "G2"], gene_scope="study")
    with pytest.raises(StflowError, match=r"different gene scopes \['fold', 'study'\]"):
        evaluate_predictions([tmp_path / "fold.h5ad", tmp_path / "s2.h5ad"], "uni", "m", "fold0")

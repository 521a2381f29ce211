"""Deployable models in the workflow: per-fold and final models carry deploy.json, a fold's
model predicts its held-out section from the image alone about as well as the workflow scored
it, and the `predict` config section trains a final model and writes one result per slide."""

from __future__ import annotations

import json

import anndata as ad
import matplotlib
import numpy as np
import pytest
import spatialdata
from workflow_fixtures import SAMPLES, SEEDS

from stflow.deploy.predict_slide import DeployedModel, SlideOptions, predict_slide
from stflow.deploy.uncertainty import match_spots
from stflow.evaluation.hest_metric import mean_pearson

matplotlib.use("Agg")
ENCODER = "efficientnet_lite0"
SEED = f"seed{SEEDS[0]}"  # the first seed's models and predictions


def jobs_of(dry_run_stdout: str) -> dict[str, int]:
    import re

    table = dry_run_stdout.split("Job stats:")[-1]
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


def test_fold_models_record_what_deployment_needs(tiny_run):
    record = json.loads((tiny_run.results / "models" / ENCODER / "stflow" / SEED / "fold0" /
                         "deploy.json").read_text())
    genes = json.loads((tiny_run.results / "genes" / "fold0.json").read_text())
    # the benchmark genes, then the biomarkers trained beside them (scored apart)
    assert record["version"] == 1
    assert record["genes"] == genes["genes"] + genes["biomarkers"] and genes["biomarkers"]
    assert record["encoder"] == ENCODER and len(record["weights_sha256"]) == 64
    assert (record["patch_size_um"], record["patch_size_px"], record["graph_k"]) == (112, 64, 4)
    assert record["layout"] == "square" and record["pitch_um"] == pytest.approx(200, rel=0.05)


def held_out(tiny_run, model: str):
    """Fold 0, its model loaded for slides, and (image, mpp, scored predictions) per test
    section."""
    results = tiny_run.results
    fold = json.loads((results / "splits.json").read_text())["folds"][0]
    deployed = DeployedModel(results / "models" / ENCODER / model / SEED / fold["name"],
                             SlideOptions(device="cpu"))
    sections = []
    for sample in fold["test"]:
        st = ad.read_h5ad(results / "st" / f"{sample}.h5ad", backed="r")
        image, mpp = st.uns["image_path"], float(st.uns["mpp"])
        st.file.close()
        scored = ad.read_h5ad(results / "predictions" / ENCODER / model / SEED / fold["name"] /
                              f"{sample}.h5ad")
        sections.append((sample, image, mpp, scored))
    return fold, deployed, sections


def test_a_fold_model_predicts_its_held_out_sections_from_their_images(tiny_run, tmp_path):
    """Virtual spots on the test sections' images alone; scored on the measured spots they
    land on, the Pearson is close to the workflow's score of the fold."""
    fold, deployed, sections = held_out(tiny_run, "stflow")
    truths, preds = [], []
    for sample, image, mpp, scored in sections:
        result = predict_slide(image, deployed, tmp_path, name=sample, um_per_px=mpp)
        new = ad.read_h5ad(result.h5ad)
        ours, theirs = match_spots(new.obsm["spatial"], scored.obsm["spatial"], 50 / mpp)
        assert len(theirs) >= 0.9 * scored.n_obs
        assert (new.layers["sample_std"][ours] > 0).all()
        assert (new.layers["lower"] <= new.X).all() and (new.X <= new.layers["upper"]).all()
        truths.append(scored.layers["truth"][theirs])
        preds.append(new.X[ours])
    slide_score = mean_pearson(np.concatenate(truths), np.concatenate(preds))
    workflow_score = json.loads((tiny_run.results / "metrics" / ENCODER / "stflow" / SEED /
                                 f"{fold['name']}.json").read_text())["pearson_mean"]
    assert abs(slide_score - workflow_score) < 0.1


def test_at_the_measured_spots_a_slide_prediction_repeats_the_workflows(tiny_run, tmp_path):
    """Same windows, encoder, normalisation and graph as patches → embed → graph → predict:
    a deterministic model gives the fold's own predictions."""
    _, deployed, sections = held_out(tiny_run, "ridge")
    sample, image, mpp, scored = sections[0]
    result = predict_slide(image, deployed, tmp_path, name=sample, um_per_px=mpp,
                           spots=scored.obsm["spatial"], spot_names=list(scored.obs_names))
    new = ad.read_h5ad(result.h5ad)
    assert list(new.obs_names) == list(scored.obs_names)
    np.testing.assert_allclose(new.X, scored.X, atol=2e-3)


def test_fold_predictions_carry_the_slide_image_for_scanpy(tiny_run):
    import scanpy as sc

    path = sorted((tiny_run.results / "predictions" / ENCODER / "ridge" / SEED /
                   "fold0").glob("*.h5ad"))[0]
    pred = ad.read_h5ad(path)
    library = pred.uns["spatial"][path.stem]
    assert library["images"]["hires"].ndim == 3
    assert library["scalefactors"]["spot_diameter_fullres"] == pytest.approx(100 / 2.0, rel=0.05)
    ax = sc.pl.spatial(pred, color=pred.var_names[0], show=False)[0]
    assert len(ax.images) == 1
    matplotlib.pyplot.close("all")


def predict_on_command_line(tiny_run) -> tuple[str, str]:
    """The predict section as README "Predicting new slides" writes it, given with --config:
    Snakemake hands the nested pixel size over as the string '2.0'."""
    image = tiny_run.workdir / "results" / "tiny" / "raw" / "data" / "ST-imgs" / "P1" / "P1S1" / \
        "P1S1_HE.jpg"
    return "--config", f"predict={{slides: {{newP1: '{image}'}}, um_per_px: {{newP1: 2.0}}, " \
        "n_samples: 3}"


def test_the_predict_section_trains_a_final_model_and_predicts_each_slide(tiny_run):
    finals = tiny_run.snakemake("-n", "final_models")
    assert finals.returncode == 0, finals.stderr
    # stflow, ridge; genes.scope fold (the default) scored the folds on their own genes, so
    # the study-wide genes.json the final models train on is made now
    assert jobs_of(finals.stdout) == {"genes": 1, "train_final": 2, "final_models": 1}
    predict = predict_on_command_line(tiny_run)
    dry = tiny_run.snakemake("-n", *predict)
    assert dry.returncode == 0, dry.stderr
    assert jobs_of(dry.stdout) == {"genes": 1, "train_final": 1, "slide_check": 1,
                                   "predict_slide": 1, "slide_view": 1, "cohort": 1, "all": 1}
    run = tiny_run.snakemake("--cores", "2", *predict, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    final = tiny_run.results / "models" / ENCODER / "stflow" / "final"
    params = json.loads((final / "params.json").read_text())
    assert params["fold"] == "final" and len(params["val"]) == 1  # as the folds draw it
    assert sorted(params["train"] + params["val"]) == SAMPLES
    assert sorted(json.loads((final / "deploy.json").read_text())["trained_on"]) == SAMPLES
    adata = ad.read_h5ad(tiny_run.results / "slides" / "newP1.h5ad")
    assert adata.uns["stflow"]["n_samples"] == 3 and adata.uns["stflow"]["fold"] == "final"
    assert (adata.layers["sample_std"] > 0).any() and "newP1" in adata.uns["spatial"]
    assert (adata.layers["upper"] > adata.layers["lower"]).all()
    intervals = adata.uns["stflow"]["intervals"]
    # the final model: calibrated on the folds' out-of-fold predictions of both patients
    assert intervals["calibration"] == "patient" and intervals["n_calibration_spots"] > 0
    assert "['P1', 'P2']" in intervals["calibration_spots"]
    assert "new patient" in intervals["calibrated_for"]
    assert (tiny_run.results / "slides" / "newP1_maps").is_dir()
    sdata = spatialdata.read_zarr(tiny_run.results / "slides" / "newP1.zarr")
    assert sdata["table"].n_obs == adata.n_obs  # the spots as SpatialData, beside the h5ad
    view = tiny_run.results / "slides" / "newP1.view"  # beside the h5ad, opens offline
    assert (view / "index.html").is_file() and (view / "data" / "spots.js").is_file()
    assert (tiny_run.results / "slides" / "newP1.view.sha256").is_file()
    cohort = ad.read_h5ad(tiny_run.results / "slides" / "cohort.h5ad")  # a cohort of one
    assert list(cohort.obs_names) == ["newP1"] and cohort.n_vars == adata.n_vars
    again = tiny_run.snakemake("-n", *predict)
    assert "Nothing to be done" in again.stdout + again.stderr

"""`stflow figures`: biomarker maps, training curves and the model comparison chart."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stflow.errors import StflowError
from stflow.evaluation.figures import (
    biomarker_figure,
    choose_genes,
    comparison_chart,
    figure_inputs,
    minmax,
    read_histories,
    thumbnail,
    training_curves,
)

PNG = b"\x89PNG"


def test_minmax_follows_the_paper():
    np.testing.assert_allclose(minmax(np.array([2.0, 4.0, 3.0])), [0.0, 1.0, 0.5])
    assert (minmax(np.ones(3)) == 0).all()


def test_genes_not_among_the_targets_are_skipped_with_a_note():
    assert choose_genes(["ERBB2", "GATA3"], ["GATA3", "ACTB"]) == (
        ["GATA3"], "not among the target genes, skipped: ERBB2")
    shown, note = choose_genes(["ERBB2"], ["G1", "G2", "G3"])
    assert shown == ["G1", "G2"] and "showing G1, G2 instead" in note


def test_thumbnail_is_downsampled_with_its_scale(tmp_path):
    path = tmp_path / "he.png"
    Image.new("RGB", (2000, 1000), (200, 100, 150)).save(path)
    image, scale = thumbnail(path, max_px=500)
    assert image.shape == (250, 500, 3) and scale == pytest.approx(4.0)
    assert thumbnail(tmp_path / "missing.jpg") is None


def test_biomarker_map_draws_truth_and_each_model(tmp_path):
    rng = np.random.default_rng(0)
    coords = rng.uniform(0, 1000, size=(30, 2))
    truth = rng.poisson(2, size=(30, 2)).astype(np.float32)
    paths = {}
    for model in ("stflow", "ridge"):
        adata = ad.AnnData(X=truth + rng.normal(size=truth.shape).astype(np.float32),
                           var=pd.DataFrame(index=["ERBB2", "ACTB"]))
        adata.obs_names = [f"s{i}" for i in range(30)]
        adata.layers["truth"] = truth
        adata.obsm["spatial"] = coords
        (tmp_path / model).mkdir()
        adata.write_h5ad(tmp_path / model / "S1.h5ad")
        paths[model] = [tmp_path / model / "S1.h5ad"]
    out = tmp_path / "fig" / "fold0.png"
    biomarker_figure(paths, ["ERBB2", "GATA3"], {}, out)
    assert out.read_bytes()[:4] == PNG
    with pytest.raises(StflowError, match="no prediction files"):
        biomarker_figure({"stflow": []}, ["ERBB2"], {}, tmp_path / "empty.png")


def test_curves_and_comparison_are_written(tmp_path):
    history = pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.5],
                            "val_loss": [1.0, 0.7], "val_pearson": [0.1, 0.2]})
    training_curves({("E", "stflow", "fold0"): history}, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == PNG
    metrics = pd.DataFrame({"encoder": ["E"] * 4, "model": ["stflow", "stflow", "ridge", "ridge"],
                            "fold": ["fold0", "fold1"] * 2, "pearson_mean": [0.3, 0.4, 0.2, 0.1]})
    comparison_chart(metrics, tmp_path / "comparison.png")
    assert (tmp_path / "comparison.png").read_bytes()[:4] == PNG
    with pytest.raises(StflowError, match="lacks columns"):
        comparison_chart(metrics.drop(columns="fold"), tmp_path / "bad.png")


def test_histories_are_read_per_seed_from_the_seed_folders(tmp_path):
    history = pd.DataFrame({"epoch": [1], "train_loss": [1.0], "val_loss": [1.0],
                            "val_pearson": [0.1]})
    for seed in (0, 3):
        folder = tmp_path / "models" / "E" / "stflow" / f"seed{seed}" / "fold0"
        folder.mkdir(parents=True)
        history.to_csv(folder / "history.tsv", sep="\t", index=False)

    def histories(seeds):
        inputs = figure_inputs(tmp_path, encoders=["E"], models=["stflow"], folds=["fold0"],
                               seeds=seeds)
        return read_histories(inputs.histories)

    assert sorted(histories([0, 3])) == [("E", "stflow", "seed0 fold0"),
                                         ("E", "stflow", "seed3 fold0")]
    assert list(histories([3])) == [("E", "stflow", "fold0")]
    with pytest.raises(StflowError, match="seed1/fold0/history.tsv: training history is missing"):
        histories([1])

"""On simulated sections where the truth is known, trained STFlow beats HEST's PCA+Ridge.

The features stand in for a frozen foundation model: a fixed random linear map of each spot's
true morphology (domain fractions, nuclear density) plus noise. Receiver genes depend on the
neighbours' ligand expression, which a spot's own features cannot show, so a model that uses
spatial context must win on them.
"""

from __future__ import annotations

import numpy as np
import pytest

from stflow.data.simulator import simulate
from stflow.data.simulator.oracle import gene_roles, oracle_slides
from stflow.evaluation.hest_metric import mean_pearson, pearson_per_gene
from stflow.models.registry import build_estimator

pytestmark = pytest.mark.slow  # trains STFlow to convergence: minutes on 2 cores


@pytest.fixture(scope="module")
def fold(tmp_path_factory):
    """Test patient P3; validation P2S2 (a training patient); train on the rest."""
    root = tmp_path_factory.mktemp("sim") / "raw"
    simulate(root, n_patients=3, sections_per_patient=2, grid=12, seed=0)
    slides = oracle_slides(root)
    roles = gene_roles(root)
    train = [slides[s] for s in ("P1S1", "P1S2", "P2S1")]
    return train, [slides["P2S2"]], [slides["P3S1"], slides["P3S2"]], roles


def fit_predict(name, params, train, val, test):
    model = build_estimator(name, params, seed=0)
    model.fit(train, val)
    truth = np.concatenate([s.targets for s in test])
    return truth, np.concatenate(model.predict(test))


def test_trained_stflow_beats_pca_ridge_and_uses_spatial_context(fold):
    train, val, test, roles = fold
    truth, ridge_hest = fit_predict("ridge_hest", {}, train, val, test)
    _, ridge = fit_predict("ridge", {}, train, val, test)
    _, stflow = fit_predict("stflow", {"epochs": 40, "patience": 20, "device": "cpu"},
                            train, val, test)
    assert mean_pearson(truth, stflow) > mean_pearson(truth, ridge_hest) + 0.02
    receivers = roles == "receiver"
    assert (np.nanmean(pearson_per_gene(truth, stflow)[receivers])
            > np.nanmean(pearson_per_gene(truth, ridge)[receivers]) + 0.02)

"""Hyper-parameter search: chosen on the fold's validation split, recorded, refused when bad."""

from __future__ import annotations

import json

import pytest
from grid_slides import grid_slide

from stflow.data.dataset import Slide
from stflow.errors import StflowError
from stflow.models.search import check_space, search_fit, validation_score

SMALL = dict(hidden=16, layers=1, heads=2, regions_per_slide=4, regions_per_step=2,
             lr=5e-3, epochs=3, patience=3)


def _slide(name: str, seed: int) -> Slide:
    return grid_slide(name, seed, side=8, dim=6, genes=3)


@pytest.mark.slow
def test_the_best_validation_trial_is_kept_and_every_trial_recorded():
    train, val = [_slide("a", 1), _slide("b", 2)], [_slide("v", 3)]
    space = {"dropout": [0.0, 0.5], "lr": {"low": 1e-3, "high": 1e-2, "log": True}}
    result = search_fit("stflow", SMALL, space, 3, train, val, seed=0, device="cpu")
    assert len(result.trials) == 3
    assert {"trial", "state", "val_pearson", "dropout", "lr"} <= set(result.trials[0])
    finished = [r for r in result.trials if r["state"] == "COMPLETE"]
    assert result.chosen["val_pearson"] == max(r["val_pearson"] for r in finished)
    assert result.chosen["val_pearson"] == validation_score(result.history)
    assert result.estimator.params["dropout"] == result.chosen["dropout"]
    assert 1e-3 <= result.chosen["lr"] <= 1e-2
    json.dumps(result.chosen)  # written to search.json as is


def test_an_ensemble_is_scored_by_its_first_network_not_its_luckiest():
    history = [{"epoch": 1, "val_pearson": 0.3}, {"epoch": 2, "val_pearson": 0.4},
               {"epoch": 1, "val_pearson": 0.9, "member": 1}]
    assert validation_score(history) == 0.4
    assert validation_score([{"epoch": 1, "val_pearson": float("nan")}]) == float("-inf")


def test_a_space_of_few_choices_is_searched_exhaustively():
    train, val = [_slide("a", 1)], [_slide("v", 3)]
    space = {"alpha": ["validation", 10.0], "k": [2, 4]}
    result = search_fit("spatial_ridge", {}, space, 6, train, val, seed=0)
    tried = [(r["alpha"], r["k"]) for r in result.trials]
    assert len(tried) == 4  # the grid is done after four trials, though six were allowed
    assert set(tried) == {("validation", 2), ("validation", 4), (10.0, 2), (10.0, 4)}


@pytest.mark.slow
def test_an_exhaustive_search_trains_every_combination_to_its_own_stop():
    """Halving would judge every value at epoch 5; a grid that is tried whole is not cut."""
    train, val = [_slide("a", 1), _slide("b", 2)], [_slide("v", 3)]
    longer = {**SMALL, "epochs": 12, "patience": 12}
    space = {"weight_decay": [0.0, 3.0, 10.0, 30.0]}
    grid = search_fit("stflow", longer, space, 4, train, val, seed=0, device="cpu")
    assert [(r["state"], r["epochs_run"]) for r in grid.trials] == [("COMPLETE", 12)] * 4
    sampled = search_fit("stflow", longer, space, 3, train, val, seed=0, device="cpu")
    assert "PRUNED" in {r["state"] for r in sampled.trials}  # fewer trials than values


def test_the_same_seed_searches_the_same_way():
    train, val = [_slide("a", 1)], [_slide("v", 3)]
    space = {"alpha": ["validation", 10.0, 1000.0]}
    first = search_fit("spatial_ridge", {}, space, 3, train, val, seed=1)
    second = search_fit("spatial_ridge", {}, space, 3, train, val, seed=1)
    assert first.trials == second.trials and first.chosen == second.chosen


def test_bad_spaces_are_refused_by_key_with_a_fix():
    with pytest.raises(StflowError, match=r"search.stflow.space.layerz: .*no parameter"):
        check_space("stflow", {"layerz": [1, 2]})
    with pytest.raises(StflowError, match=r"space.prior: 'prior' is fixed by"):
        check_space("stflow_zero", {"prior": ["zinb"]})
    with pytest.raises(StflowError, match=r"space.lr: needs numbers low < high"):
        check_space("stflow", {"lr": {"low": 1e-2, "high": 1e-3}})
    with pytest.raises(StflowError, match=r"space.lr: a log range needs low > 0"):
        check_space("stflow", {"lr": {"low": 0.0, "high": 1e-3, "log": True}})
    with pytest.raises(StflowError, match=r"space.dropout: an empty list"):
        check_space("stflow", {"dropout": []})
    with pytest.raises(StflowError, match="at least 1 trial"):
        search_fit("ridge", {}, {"n_components": [8]}, 0, [_slide("a", 1)], [])

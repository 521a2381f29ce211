"""The models' catalogue (what the workflow checks a config against, without torch) says
exactly what the estimators themselves take, so the two cannot drift apart."""

from __future__ import annotations

import pytest

from stflow.models import catalogue
from stflow.models.catalogue import MODELS, Param, check_value, coerce, parameters
from stflow.models.registry import build_estimator, init_parameters


@pytest.mark.parametrize("model", sorted(MODELS))
def test_the_catalogue_lists_each_model_s_parameters_and_defaults(model):
    estimator = MODELS[model].load_class()
    assert {name: p.default for name, p in parameters(model).items()} == \
        init_parameters(estimator)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_each_default_and_each_fixed_value_is_allowed_by_the_catalogue(model):
    for name, param in parameters(model).items():
        assert check_value(name, param.default, param)[1] is None, name
    for name, value in MODELS[model].fixed.items():
        assert check_value(name, value, parameters(model)[name])[1] is None, name


def test_the_choices_are_those_the_model_code_accepts():
    from stflow.data.holdout import VAL_FRACTION
    from stflow.models.stflow import priors
    from stflow.models.stflow.networks import DENOISERS
    from stflow.models.stflow.settings import STFlowSettings

    stflow = parameters("stflow")
    assert stflow["prior"].choices == priors.PRIOR_NAMES
    assert stflow["denoiser"].choices == DENOISERS
    assert stflow["val_fraction"].default == VAL_FRACTION
    for name in ("prior", "denoiser", "target_scaling", "residual_base"):
        for choice in stflow[name].choices:
            STFlowSettings(**{name: choice})  # each accepted
        with pytest.raises(ValueError, match=name):
            STFlowSettings(**{name: "no-such-choice"})
    assert parameters("ridge")["alpha"].choices == catalogue.ALPHA_RULES


def test_the_registry_converts_parameters_with_the_catalogue_s_coercer():
    param = parameters("stflow")["epochs"]
    assert coerce("epochs", "12", param) == 12
    with pytest.raises(ValueError, match=r"epochs='many' should be int"):
        coerce("epochs", "many", param)
    ridge = build_estimator("ridge", {"n_components": "16"})
    assert ridge.n_components == 16
    alpha = Param("hest", (str, float), choices=("hest", "validation"), low=0, low_open=True)
    assert coerce("alpha", "10", alpha) == 10.0 and coerce("alpha", "hest", alpha) == "hest"


def test_ranges_are_refused_with_the_allowed_values():
    value, problem = check_value("dropout", "1.0", parameters("stflow")["dropout"])
    assert value == 1.0
    assert problem == ("1.0 is >= 1", "use a number 0 <= x < 1 (default 0.2)")

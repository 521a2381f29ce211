"""The model registry checks parameters before a long training run can trip over them."""

import pytest

from stflow.errors import StflowError
from stflow.models.baselines.baseline_settings import PCARidgeSettings
from stflow.models.registry import MODELS, build_estimator


def test_every_registered_model_builds_with_its_defaults():
    for name in MODELS:
        assert build_estimator(name, {}, seed=0) is not None


def test_numbers_given_as_strings_are_converted_to_the_parameter_types():
    """Snakemake's --config passes nested values such as model_params as strings."""
    model = build_estimator("stflow", {"epochs": "100", "lr": "5e-4", "dropout": 0,
                                       "flow_matching": "false"})
    assert model.settings.epochs == 100
    assert model.settings.lr == pytest.approx(5e-4)
    assert model.params["dropout"] == 0.0
    assert model.settings.flow_matching is False


def test_unknown_parameters_and_wrong_types_are_refused_by_name():
    with pytest.raises(StflowError, match=r"unknown parameters \['epoch'\].*model_params.stflow"):
        build_estimator("stflow", {"epoch": 10})
    with pytest.raises(StflowError, match=r"epochs='many' should be int"):
        build_estimator("stflow", {"epochs": "many"})
    with pytest.raises(StflowError, match=r"epochs=True should be int"):
        build_estimator("stflow", {"epochs": True})
    with pytest.raises(StflowError, match=r"unknown parameters \['epochs'\]"):
        build_estimator("ridge", {"epochs": 3})


def test_every_registered_model_declares_its_capabilities_in_its_own_classes():
    """Training, the search and predict-slide read the declarations and never probe, so each
    must say what the class really does: a method or keyword exists exactly when declared."""
    import inspect

    from stflow.models.capabilities import CAPABILITIES, Capabilities
    from stflow.models.registry import estimator_class

    for name in MODELS:
        cls = estimator_class(name)
        own = [c for c in cls.__mro__ if c not in (Capabilities, object)]
        for capability in CAPABILITIES:
            assert any(capability in vars(c) for c in own), (name, capability)
        assert cls.reports_epochs == ("on_epoch" in inspect.signature(cls.fit).parameters), name
        assert cls.refits == hasattr(cls, "refit_params"), name
        assert cls.draws == (hasattr(cls, "draw_moments")
                             and hasattr(cls, "distinct_draws")), name


def test_a_class_that_declares_no_capabilities_is_refused_by_name(monkeypatch):
    from stflow.models import registry

    monkeypatch.setitem(registry.MODELS, "plain",
                        registry.ModelSpec("collections:OrderedDict", PCARidgeSettings, {}, "test"))
    with pytest.raises(StflowError, match="'plain'.*does not declare its capabilities"):
        build_estimator("plain", {})

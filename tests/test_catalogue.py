"""The catalogues say what the code does, so no fact drifts: the models' catalogue (what the
workflow checks a config against, without torch) says exactly what the estimators take, and
the project's catalogue (sources, encoders, tables, biomarkers, her2st sections) is what the
schema, the registries and the configs name."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from light_imports import top_level_modules_after

from stflow import catalogue as facts
from stflow.models.baselines.baseline_settings import ALPHA_RULES
from stflow.models.model_specs import GRAPH_MODELS, MODELS, parameters, reads_graph
from stflow.models.parameters import Param, check_value, coerce
from stflow.models.registry import build_estimator
from stflow.schema import load_schema


@pytest.mark.parametrize("model", sorted(MODELS))
def test_each_estimator_is_built_from_the_settings_its_entry_names(model):
    spec = MODELS[model]
    estimator = build_estimator(model, {})
    assert spec.load_class().settings_class is spec.settings
    assert type(estimator.settings) is spec.settings
    defaults = {name: p.default for name, p in parameters(model).items() if name != "device"}
    assert estimator.settings.as_dict() == {"seed": 0, **defaults, **spec.fixed}


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
    assert parameters("ridge")["alpha"].choices == ALPHA_RULES


def test_the_registry_converts_parameters_with_the_catalogue_s_coercer():
    param = parameters("stflow")["epochs"]
    assert coerce("epochs", "12", param) == 12
    with pytest.raises(ValueError, match=r"epochs='many' should be int"):
        coerce("epochs", "many", param)
    ridge = build_estimator("ridge", {"n_components": "16"})
    assert ridge.settings.n_components == 16
    alpha = Param("hest", (str, float), choices=("hest", "validation"), low=0, low_open=True)
    assert coerce("alpha", "10", alpha) == 10.0 and coerce("alpha", "hest", alpha) == "hest"


def test_stflow_models_shows_each_parameter_as_declared_and_the_values_an_entry_fixes(capsys):
    from stflow.cli import main

    assert main(["models", "stflow_egnn"]) == 0
    table = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in table[1:]}
    assert list(rows) == list(parameters("stflow_egnn"))
    assert "'egnn' (fixed)" in rows["denoiser"] and "one of ['fa', 'egnn']" in rows["denoiser"]
    assert rows["lr"].endswith("Adam learning rate") and "0 < x" in rows["lr"]
    assert main(["models"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == list(MODELS)
    assert main(["models", "stflow2"]) == 2


def test_settings_refuse_a_value_their_declaration_does_not_allow():
    from stflow.models.baselines.baseline_settings import RandomForestSettings
    from stflow.models.stflow.settings import STFlowSettings

    with pytest.raises(ValueError, match=r"dropout=1.0: 1.0 is >= 1. Fix: use a number"):
        STFlowSettings(dropout=1.0)
    assert STFlowSettings(epochs="12").epochs == 12  # converted to the declared type
    assert RandomForestSettings(max_features=0.5).max_features == 0.5


def test_ranges_are_refused_with_the_allowed_values():
    value, problem = check_value("dropout", "1.0", parameters("stflow")["dropout"])
    assert value == 1.0
    assert problem == ("1.0 is >= 1", "use a number 0 <= x < 1 (default 0.2)")


# --- the one catalogue of facts: the schema, the registries and the tables agree with it ---

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(REPO / "config" / "schema.yaml")


def test_the_models_that_read_the_graph_are_those_whose_estimator_takes_k():
    takes_k = {name for name in MODELS if "k" in build_estimator(name, {}).settings.as_dict()}
    assert GRAPH_MODELS == takes_k
    assert {name for name in MODELS if reads_graph(name)} == takes_k
    assert "stflow" in GRAPH_MODELS and "ridge" not in GRAPH_MODELS


def test_the_schema_as_loaded_names_exactly_the_catalogue_s_models_encoders_and_sources():
    definitions = SCHEMA["definitions"]
    predict_model = SCHEMA["properties"]["predict"]["properties"]["model"]
    assert definitions["model_name"]["enum"] == predict_model["enum"] == list(MODELS)
    pattern = definitions["encoder_name"]["pattern"]
    alternatives = pattern.removeprefix("^(").removesuffix(")$").split("|")
    assert alternatives == [*facts.ENCODERS, f"{facts.TIMM_PREFIX}[A-Za-z0-9_.-]+"]
    source = SCHEMA["properties"]["dataset"]["properties"]["source"]
    assert sorted(source["enum"]) == sorted(facts.SOURCES)


def test_the_encoder_registry_and_the_sources_hold_exactly_the_catalogue_s_names():
    from stflow.data.encoders import ENCODERS
    from stflow.data.sources import get_source

    assert tuple(ENCODERS) == facts.ENCODERS == tuple(facts.ENCODER_FACTS)
    for name in facts.SOURCES:  # each a module stflow.data.sources.<name> that lists and reads
        source = get_source(name)
        assert callable(source.list_samples) and callable(source.read_sample)


def test_the_paper_tables_are_the_score_tables_then_inference_time():
    from stflow.evaluation.paper_tables import SCORE_TABLES, TABLE_NAMES

    assert facts.PAPER_TABLES == (*SCORE_TABLES, "inference_time")
    assert TABLE_NAMES == list(facts.PAPER_TABLES)


def test_the_default_biomarkers_are_the_config_s_figure_genes():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    figures = SCHEMA["properties"]["figures"]["properties"]["genes"]
    assert tuple(config["figures"]["genes"]) == facts.DEFAULT_BIOMARKERS
    assert tuple(figures["default"]) == facts.DEFAULT_BIOMARKERS


def test_the_her2st_sections_are_the_count_tables_of_the_checksum_list(tmp_path):
    assert facts.her2st_sections() == ["B4", "C2", "C3", "C4", "C5", "C6"]
    listing = tmp_path / "sums.tsv"
    listing.write_text("# a comment naming data/ST-cnts/X1.tsv.gz\n"
                       "ab12\tdata/ST-cnts/A1.tsv.gz\n"
                       "cd34\tdata/ST-spotfiles/A1_selection.tsv\n"
                       "ef56\tdata/ST-cnts/D2.tsv.gz\n")
    assert facts.her2st_sections(listing) == ["A1", "D2"]


def test_the_catalogues_import_only_the_standard_library():
    loaded = top_level_modules_after("import stflow.catalogue, stflow.models.model_specs")
    assert loaded - set(sys.stdlib_module_names) == {"stflow"}

"""A bad config stops the run before any job starts, naming the key, the problem and the fix;
values written on the command line are read as the schema types them."""

from __future__ import annotations

import json
import re

import pytest
from workflow_fixtures import REPO, snakemake, write_config

from stflow.config import load_schema, replace_search_spaces, typed_like_schema

SCHEMA = load_schema(REPO / "config" / "schema.yaml")


def refused(result) -> str:
    """The output of a Snakemake run that must have stopped before any job."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-2000:]
    assert "rule download:" not in output and "Job stats" not in output
    return output


@pytest.mark.parametrize(("written", "typed"), [
    ({"genes": {"n_top": "50", "list": "null"}}, {"genes": {"n_top": 50, "list": None}}),
    ({"seeds": ["0", "1"], "device": "cuda"}, {"seeds": [0, 1], "device": "cuda"}),
    ({"patches": {"size_um": "112.5", "min_tissue": "0.5"}},
     {"patches": {"size_um": 112.5, "min_tissue": 0.5}}),
    ({"refit": "true", "dataset": {"name": "1", "mirror": "null", "samples": ["7"]}},
     {"refit": True, "dataset": {"name": "1", "mirror": None, "samples": ["7"]}}),
    ({"splits": {"folds": [{"train": ["1"], "test": ["2"]}], "n_folds": "3"}},
     {"splits": {"folds": [{"train": ["1"], "test": ["2"]}], "n_folds": 3}}),
    ({"evaluation": {"bootstrap": "500", "block_um": "null", "seed": "2"}},
     {"evaluation": {"bootstrap": 500, "block_um": None, "seed": 2}}),
])
def test_strings_become_the_scalars_the_schema_wants_and_only_those(written, typed):
    assert typed_like_schema(written, SCHEMA) == typed


def test_a_string_that_spells_no_such_value_is_left_for_the_schema_to_refuse():
    assert typed_like_schema({"genes": {"n_top": "fifty"}}, SCHEMA) == {"genes": {"n_top": "fifty"}}
    assert typed_like_schema({"graph": {"k": "8.5"}}, SCHEMA) == {"graph": {"k": "8.5"}}


def test_the_schema_knows_exactly_the_registry_s_encoders_and_models():
    from stflow.data.encoders import ENCODERS
    from stflow.models.registry import MODELS

    pattern = SCHEMA["definitions"]["encoder_name"]["pattern"]
    names = re.fullmatch(r"\^\((.*)\|timm:.*\)\$", pattern).group(1).split("|")
    assert sorted(names) == sorted(ENCODERS)
    assert sorted(SCHEMA["definitions"]["model_name"]["enum"]) == sorted(MODELS)


def test_nested_values_on_the_command_line_are_accepted_as_written(tmp_path):
    config = write_config(tmp_path / "tiny.yaml")
    result = snakemake(tmp_path, config, "-n", "-p", "--config",
                       "genes={n_top: 7, list: null}", "seeds=[0, 3]",
                       "dataset={name: cli, source: synthetic, mirror: null, samples: null}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "seed3/fold0" in result.stdout
    # the genes job gets n_top as the number it is (a script job prints no command line)
    made = snakemake(tmp_path, config, "--cores", "1", "results/cli/genes.json", "--config",
                     "genes={n_top: 7, list: null}",
                     "dataset={name: cli, source: synthetic, mirror: null, samples: null}")
    assert made.returncode == 0, made.stderr[-3000:]
    genes = json.loads((tmp_path / "results" / "cli" / "genes.json").read_text())
    assert genes["n_top"] == 7 and len(genes["genes"]) == 7


def test_a_command_line_value_of_the_wrong_kind_is_refused_naming_it(tmp_path):
    config = write_config(tmp_path / "tiny.yaml")
    output = refused(snakemake(tmp_path, config, "-n", "--config", "genes={n_top: fifty}"))
    assert "'fifty' is not of type 'integer'" in output and "['genes']['n_top']" in output


@pytest.mark.parametrize(("value", "expected"), [
    ("evaluation={bootstrap: 50}", "50 is less than the minimum of 100"),
    ("evaluation={block_um: 0}", "0 is less than or equal to the minimum of 0"),
])
def test_too_few_bootstrap_replicates_or_a_block_side_of_zero_stop_the_run(tmp_path, value,
                                                                           expected):
    config = write_config(tmp_path / "tiny.yaml")
    output = refused(snakemake(tmp_path, config, "-n", "--config", value))
    assert expected in output and "['evaluation']" in output


@pytest.mark.parametrize(("changes", "expected"), [
    ({"encoders": ["efficientnet_lite0", "unii"]}, "'unii' does not match"),
    ({"encoder_weights": {"gigapth": "/models/giga.bin"}}, "'gigapth' does not match"),
    ({"model_params": {"stflw": {"epochs": 3}}}, "'stflw' is not one of ['stflow'"),
    ({"search": {"rigde": {"space": {"alpha": [1, 10]}}}}, "'rigde' is not one of"),
])
def test_unknown_encoder_and_model_names_stop_the_run_before_any_job(tmp_path, changes,
                                                                      expected):
    config = write_config(tmp_path / "bad.yaml", **changes)
    output = refused(snakemake(tmp_path, config, "-n"))
    assert expected in output
    assert "ValidationError" in output


def test_an_unknown_her2st_section_stops_the_run_before_the_download(tmp_path):
    her2st = {"name": "h", "source": "her2st", "mirror": None, "samples": ["B4", "B5"]}
    config = write_config(tmp_path / "bad.yaml", dataset=her2st)
    output = refused(snakemake(tmp_path, config, "-n"))
    assert ("dataset.samples lists her2st sections ['B5'] that the download does not know. "
            "Fix: choose among ['B4', 'C2', 'C3', 'C4', 'C5', 'C6']") in output


def test_a_mirror_folder_that_does_not_exist_is_named_as_a_folder(tmp_path):
    her2st = {"name": "h", "source": "her2st", "mirror": "no/such/mirror", "samples": None}
    config = write_config(tmp_path / "bad.yaml", dataset=her2st)
    output = refused(snakemake(tmp_path, config, "-n"))
    assert (f"dataset.mirror 'no/such/mirror' does not exist (a relative path is read from "
            f"the working directory, {tmp_path})") in output
    assert "Fix: give the folder that holds the pre-downloaded files" in output


def test_a_search_space_given_on_the_command_line_replaces_the_default_one():
    config = {"search": {"stflow": {"trials": 4, "space": {"dropout": [0.0, 0.5],
                                                             "lr": {"low": 1e-4, "high": 1e-3}}},
                         "ridge": {"trials": 2, "space": {"alpha": [1.0, 10.0]}}}}
    her2st = {"search": {"stflow": {"trials": 4, "space": {"weight_decay": [0.0, 10.0]}}}}
    replace_search_spaces(config, her2st)
    assert config["search"]["stflow"] == her2st["search"]["stflow"]  # no dropout, no lr
    assert config["search"]["ridge"]["space"] == {"alpha": [1.0, 10.0]}  # not named: kept
    replace_search_spaces(config, {"genes": {"n_top": 7}})  # no search on the command line
    assert config["search"]["stflow"]["space"] == {"weight_decay": [0.0, 10.0]}
    replace_search_spaces(config, {"search": {"stflow": None}})  # switched off
    assert "stflow" not in config["search"] and config["search"]["ridge"]


def test_a_config_file_can_switch_off_the_default_search_of_a_model(tmp_path):
    config = write_config(tmp_path / "nosearch.yaml", search={"stflow": None})
    result = snakemake(tmp_path, config, "-n")
    assert result.returncode == 0, result.stderr[-3000:]

"""A bad config stops the run before any job starts, listing every mistake at once, each
naming the key, the problem and the fix; values written on the command line are read as the
schema types them. The checks are called directly; three Snakemake runs show the workflow
stops (or plans) as they say."""

from __future__ import annotations

import copy
import json

import pytest
from light_imports import HEAVY, top_level_modules_after
from workflow_fixtures import REPO, TINY, snakemake, write_config

from stflow.config import replace_search_spaces, typed_like_schema
from stflow.config_checks import (
    bench_fold_count_problems,
    check_config,
    encoder_weight_problems,
    fold_count_problems,
    fold_name_problems,
    known_section_problems,
    mirror_problems,
    model_params_problems,
    one_k_problems,
    problems_message,
    sample_map_problems,
    schema_problems,
    search_problems,
    with_defaults,
)
from stflow.schema import load_schema

SCHEMA = load_schema(REPO / "config" / "schema.yaml")


def config_of(**changes) -> dict:
    """The tiny workflow config with ``changes``, the schema's defaults filled in."""
    return with_defaults({**copy.deepcopy(TINY), **changes}, SCHEMA)


def problems(tmp_path, **changes) -> list[str]:
    """Every problem check_config finds in the tiny config with ``changes``."""
    found = check_config({**copy.deepcopy(TINY), **changes}, SCHEMA, cwd=tmp_path)
    return [str(p) for p in found]


# --- values written on the command line ----------------------------------------------------

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


def test_model_parameters_written_on_the_command_line_are_read_as_their_types(tmp_path):
    written = {"stflow": {"epochs": "10", "lr": "5e-4", "flow_matching": "false"},
               "ridge": {"n_components": "64"}}
    assert problems(tmp_path, model_params=written) == []


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


# --- the schema: every error, by key, with a fix -------------------------------------------

def test_the_default_configs_have_no_problem(tmp_path):
    import yaml

    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert check_config(default, SCHEMA, cwd=REPO) == []
    assert problems(tmp_path) == []


def test_a_users_study_chooses_genes_per_fold_and_the_benchmarks_say_study():
    """A user's own study predicts genes fixed before any new slide is seen; the configs that
    reproduce the paper or HEST-bench keep its protocol, explicitly."""
    import yaml

    def scope(*names: str) -> str:
        merged: dict = {}
        for name in names:
            loaded = yaml.safe_load((REPO / "config" / name).read_text())
            merged = {**merged, **loaded, "genes": {**merged.get("genes", {}),
                                                    **loaded.get("genes", {})}}
        return with_defaults(merged, SCHEMA)["genes"]["scope"]

    assert with_defaults({}, SCHEMA)["genes"]["scope"] == "fold"
    assert scope("config.yaml") == scope("config.yaml", "cohort.yaml") == "fold"
    for name in ("hest.yaml", "her2st.yaml", "her2st-benchmark.yaml"):
        assert "scope: study" in (REPO / "config" / name).read_text(), name
    assert scope("hest.yaml") == scope("her2st.yaml") == "study"
    assert scope("her2st.yaml", "her2st-benchmark.yaml") == "study"


@pytest.mark.parametrize(("changes", "expected"), [
    ({"genes": {"n_top": "fifty"}},
     "genes.n_top: 'fifty' is not of type 'integer'. Fix: give genes.n_top a value of type "
     "integer"),
    ({"evaluation": {"bootstrap": 50}},
     "evaluation.bootstrap: 50 is less than the minimum of 100. Fix: replicates per fold"),
    ({"evaluation": {"block_um": 0}},
     "evaluation.block_um: 0 is less than or equal to the minimum of 0. Fix: block side"),
    ({"colour": "blue"},
     "colour: unknown key. Fix: correct the spelling or remove it; the config takes"),
    ({"graph": {"kk": 4}},
     "graph.kk: unknown key. Fix: correct the spelling (the nearest: 'k') or remove it; "
     "graph takes ['k']"),
    ({"encoders": ["efficientnet_lite0", "unii"]},
     "encoders[1]: 'unii' is not a known name. Fix: use one of ['efficientnet_lite0', 'ciga', "
     "'uni',"),
    ({"encoder_weights": {"gigapth": "/models/giga.bin"}},
     "encoder_weights.gigapth: 'gigapth' is not an encoder of the registry. Fix: use one of "),
    ({"model_params": {"stflw": {"epochs": 3}}},
     "model_params.stflw: 'stflw' is not a model of the registry. Fix: use one of ['stflow'"),
    ({"search": {"rigde": {"space": {"alpha": [1, 10]}}}},
     "search.rigde: 'rigde' is not a model of the registry. Fix: use one of"),
    ({"search": {"stflow": {"trails": 3, "space": {"lr": [1e-3]}}}},
     "search.stflow.trails: unknown key. Fix: correct the spelling (the nearest: 'trials')"),
])
def test_each_schema_error_names_its_key_the_problem_and_a_fix(changes, expected):
    found = [str(p) for p in schema_problems({**TINY, **changes}, SCHEMA)]
    assert any(p.startswith(expected) for p in found), found


def test_every_schema_error_is_listed_not_only_the_first():
    found = schema_problems({**TINY, "threads": 0, "device": "tpu", "genes": {"n_top": "x"},
                             "colour": 1}, SCHEMA)
    assert [p.key for p in found] == ["colour", "device", "genes.n_top", "threads"]


def test_defaults_are_filled_in_as_snakemake_s_validate_fills_them():
    filled = with_defaults({"dataset": {"name": "d", "source": "synthetic"}}, SCHEMA)
    assert filled["splits"] == {"scheme": "patient", "source": "config", "folds": None,
                                "n_folds": None}
    assert filled["seeds"] == [0] and filled["dataset"]["mirror"] is None


# --- rules the schema cannot say ------------------------------------------------------------

def test_the_seeds_are_a_list_and_a_lone_seed_key_is_refused_by_name(tmp_path):
    assert problems(tmp_path, seed=3)[0].startswith(
        "seed: unknown key. Fix: correct the spelling (the nearest: 'seeds')")
    assert problems(tmp_path, seeds=[3]) == []


@pytest.mark.parametrize(("dataset", "splits", "genes", "expected"), [
    ({"source": "synthetic", "patients": {"P1S1": "a"}}, {}, {},
     ["dataset.patients: does not apply to source 'synthetic' (it knows its patients)"]),
    ({"source": "her2st", "images": {"B4": "b4.jpg"}}, {}, {},
     ["dataset.images: does not apply to source 'her2st'"]),
    ({"source": "synthetic"}, {}, {"source": "hest-bench"},
     ["genes.source: hest-bench needs dataset.source hest, not 'synthetic'"]),
    ({"source": "visium", "samples": ["a", "b"]}, {"source": "hest-bench",
                                                   "folds": [{"train": ["a"], "test": ["b"]}]},
     {}, ["splits.source: hest-bench takes the folds from HEST-bench, but folds are listed too",
          "splits.source: hest-bench needs dataset.source hest, not 'visium'"]),
    ({"source": "synthetic"}, {"scheme": "section", "n_folds": 2}, {},
     ["splits.scheme: section leaves one section out (one fold per sample), but "
      "splits.n_folds set"]),
])
def test_settings_that_do_not_apply_to_the_source_or_scheme_are_named(dataset, splits, genes,
                                                                       expected):
    config = config_of(dataset={"name": "d", "mirror": None, "samples": None, **dataset},
                       splits=splits, genes=genes)
    assert [str(p).split(". Fix:")[0] for p in sample_map_problems(config)] == expected


def test_an_unknown_her2st_section_is_named_with_the_known_ones():
    her2st = {"name": "h", "source": "her2st", "mirror": None, "samples": ["B4", "B5"]}
    assert [str(p) for p in known_section_problems(config_of(dataset=her2st))] == [
        "dataset.samples: lists her2st sections ['B5'] that the download does not know. "
        "Fix: choose among ['B4', 'C2', 'C3', 'C4', 'C5', 'C6'] (or set samples: null for "
        "all of them)"]


def test_a_mirror_folder_that_does_not_exist_is_named_as_a_folder(tmp_path):
    her2st = {"name": "h", "source": "her2st", "mirror": "no/such/mirror", "samples": None}
    found = [str(p) for p in mirror_problems(config_of(dataset=her2st), tmp_path)]
    assert found == [f"dataset.mirror: 'no/such/mirror' does not exist (a relative path is "
                     f"read from the working directory, {tmp_path}). Fix: give the folder "
                     "that holds the pre-downloaded files, or mirror: null to download them"]
    (tmp_path / "no" / "such" / "mirror").mkdir(parents=True)
    assert mirror_problems(config_of(dataset=her2st), tmp_path) == []


def test_an_encoder_checkpoint_that_is_not_there_is_named(tmp_path):
    (tmp_path / "uni.bin").write_bytes(b"weights")
    config = config_of(encoder_weights={"uni": "uni.bin", "ciga": "models/ciga.ckpt"})
    found = encoder_weight_problems(config, tmp_path)
    assert [p.key for p in found] == ["encoder_weights.ciga"]
    assert "'models/ciga.ckpt' does not exist" in str(found[0])


def test_inside_a_cluster_job_the_files_are_not_looked_for(tmp_path):
    changes = {"encoder_weights": {"uni": "/no/such.bin"},
               "dataset": {**TINY["dataset"], "mirror": "/no/such/mirror"}}
    assert len(problems(tmp_path, **changes)) == 2
    assert check_config({**TINY, **changes}, SCHEMA, cwd=tmp_path, remote=True) == []


def test_the_neighbour_count_is_graph_k_only():
    found = one_k_problems(config_of(model_params={"stflow": {"k": 4}, "ridge": {}}))
    assert [str(p) for p in found] == [
        "model_params.stflow.k: k is set beside graph.k (4). Fix: remove k from model_params; "
        "set graph.k, which the graph stage and every model that reads the graph use"]


def test_fold_names_must_be_unique():
    folds = [{"name": "fold0", "train": ["a"], "test": ["b"]},
             {"name": "fold0", "train": ["b"], "test": ["a"]}]
    found = fold_name_problems(config_of(splits={"folds": folds}))
    assert str(found[0]).startswith("splits.folds: the folds repeat a name (['fold0', 'fold0'])")


def test_hest_bench_splits_need_the_fold_count_of_every_task():
    tasks = [{"name": "IDC", "samples": ["a", "b"], "n_folds": 4},
             {"name": "PRAD", "samples": ["c", "d"]}]
    config = config_of(dataset={"name": "h", "source": "hest", "mirror": None, "samples": None},
                       splits={"source": "hest-bench"}, tasks=tasks)
    assert [p.key for p in bench_fold_count_problems(config)] == ["tasks[1].n_folds"]


@pytest.mark.parametrize(("source", "samples", "patients", "scheme", "expected"), [
    ("synthetic", ["P1S1"], {"P1S1": "P1"}, "section",
     "dataset.samples: dataset 'd' has one sample; leave-one-section-out needs two"),
    ("visium", ["a", "b"], {"a": "1", "b": None}, "patient",
     "dataset.patients: visium samples ['b'] of dataset 'd' have no patient, so two sections "
     "of one patient could land in train and test"),
    ("hest", ["a", "b"], {"a": None, "b": None}, "patient",
     "dataset.patients: cannot tell the patients of dataset 'd' (source hest) before ingest"),
    ("her2st", ["C2", "C3"], {"C2": "C", "C3": "C"}, "patient",
     "dataset.samples: dataset 'd' has one patient; patient-stratified folds need two"),
])
def test_folds_that_cannot_be_counted_before_ingest_are_named(source, samples, patients,
                                                               scheme, expected):
    found = fold_count_problems("d", source, samples, patients, scheme=scheme, explicit=False,
                                n_folds=None)
    assert [str(p).split(". Fix:")[0] for p in found] == [expected]
    if scheme == "patient" and source != "visium":  # a fold count or explicit folds suffice
        assert fold_count_problems("d", source, samples, patients, scheme=scheme,
                                   explicit=False, n_folds=2) == []
    assert fold_count_problems("d", source, samples, patients, scheme="patient",
                               explicit=True, n_folds=None) == []


@pytest.mark.parametrize(("predict", "expected"), [
    ({"slide": {"a": "x.svs"}}, "predict.slide: unknown key. Fix: correct the spelling (the "
                                "nearest: 'slides')"),
    ({"slides": {"a": "x.svs"}, "um_per_px": {"b": 0.5}},
     "predict.um_per_px: names slides ['b'] that are not in predict.slides"),
    ({"slides": {"a": "he.jpg"}}, "predict.slides: ['a'] are plain images, which record no "
                                  "reliable scale. Fix: give their microns per pixel"),
    ({"encoder": "uni"}, "predict.encoder: 'uni' is not among encoders ['efficientnet_lite0']"),
    ({"dataset": "other"}, "predict.dataset: 'other' is not a dataset of this run (['tiny'])"),
])
def test_a_bad_predict_section_is_refused_naming_it(tmp_path, predict, expected):
    found = problems(tmp_path, predict=predict)
    assert len(found) == 1 and found[0].startswith(expected), found
    assert problems(tmp_path, predict={"slides": {"a": "he.jpg"}, "um_per_px": {"a": 0.5}}) == []


# --- model parameters and search spaces, against the models' catalogue ----------------------

@pytest.mark.parametrize(("params", "expected"), [
    ({"stflow": {"epoch": 10}}, "model_params.stflow.epoch: model 'stflow' has no parameter "
                                "'epoch'. Fix: write 'epochs' (the nearest name); use only"),
    ({"stflow": {"lr": "fast"}}, "model_params.stflow.lr: 'fast' should be float. Fix: give lr "
                                 "as a float (default 0.0005)"),
    ({"stflow": {"epochs": True}}, "model_params.stflow.epochs: True should be int"),
    ({"stflow": {"dropout": 1.5}}, "model_params.stflow.dropout: 1.5 is >= 1. Fix: use a "
                                   "number 0 <= x < 1 (default 0.2)"),
    ({"stflow": {"prior": "poisson"}}, "model_params.stflow.prior: 'poisson' is not one of "
                                       "['zinb', 'zinb-fitted', 'zero', 'gaussian']"),
    ({"stflow_zero": {"prior": "zinb"}}, "model_params.stflow_zero.prior: 'prior' is fixed by "
                                         "the registry entry 'stflow_zero' ('zero')"),
    ({"ridge_hest": {"n_components": 0}}, "model_params.ridge_hest.n_components: 0 is < 1"),
    ({"rf": {"max_features": "all"}}, "model_params.rf.max_features: 'all' is not one of "
                                      "['sqrt', 'log2']"),
])
def test_model_params_are_checked_against_the_model_s_own_parameters(params, expected):
    found = [str(p) for p in model_params_problems(config_of(model_params=params))]
    assert len(found) == 1 and found[0].startswith(expected), found


@pytest.mark.parametrize(("search", "expected"), [
    ({"stflow": {"trials": 2, "space": {"dropuot": [0.1]}}},
     "search.stflow.space.dropuot: model 'stflow' has no parameter 'dropuot'. Fix: write "
     "'dropout'"),
    ({"stflow": {"space": {"device": ["cpu"]}}}, "search.stflow.space.device: model 'stflow' "
                                                 "has no parameter 'device'"),
    ({"stflow_egnn": {"space": {"denoiser": ["fa"]}}}, "search.stflow_egnn.space.denoiser: "
                                                       "'denoiser' is fixed"),
    ({"stflow": {"space": {"dropout": [0.1, "high"]}}}, "search.stflow.space.dropout: choice "
                                                        "'high' should be float"),
    ({"stflow": {"space": {"prior": {"low": 0, "high": 1}}}}, "search.stflow.space.prior: "
                                                              "'prior' is str, which a range"),
    ({"stflow": {"space": {"layers": {"low": 1, "high": 4.5}}}}, "search.stflow.space.layers: "
                                                                 "'layers' is a whole number"),
    ({"stflow": {"space": {"lr": {"low": 1e-2, "high": 1e-3}}}}, "search.stflow.space.lr: "
                                                                 "needs numbers low < high"),
    ({"stflow": {"space": {"lr": {"low": 0, "high": 1e-3, "log": True}}}},
     "search.stflow.space.lr: a log range needs low > 0"),
    ({"stflow": {"space": {"dropout": {"low": 0.1, "high": 2.0}}}},
     "search.stflow.space.dropout: bound 2.0: 2.0 is >= 1"),
])
def test_search_spaces_are_checked_against_the_model_s_own_parameters(search, expected):
    found = [str(p) for p in search_problems(config_of(search=search))]
    assert len(found) == 1 and found[0].startswith(expected), found


# --- all at once, and before any job ---------------------------------------------------------

SEVERAL_MISTAKES = {"model_params": {"stflow": {"epoch": 10, "lr": "fast"}},
                    "search": {"stflow": {"trails": 3, "space": {"dropout": [0.1]}}},
                    "encoder_weights": {"efficientnet_lite0": "no/such/weights.pth"},
                    "colour": "blue"}


def test_one_config_with_several_mistakes_reports_all_of_them(tmp_path):
    found = problems(tmp_path, **SEVERAL_MISTAKES)
    keys = [p.split(":")[0] for p in found]
    assert sorted(keys) == sorted(["colour", "search.stflow.trails", "model_params.stflow.epoch",
                                   "model_params.stflow.lr",
                                   "encoder_weights.efficientnet_lite0"]), found
    message = problems_message(check_config({**TINY, **SEVERAL_MISTAKES}, SCHEMA, cwd=tmp_path))
    assert message.startswith("config: 5 problems found before any job ran; nothing was run.")
    assert all(f"  - {p}" in message for p in found)


def test_the_checks_import_no_torch_numpy_pandas_or_anndata():
    loaded = top_level_modules_after(
        "import yaml\n"
        "from stflow.schema import load_schema\n"
        "from stflow.config_checks import check_config\n"
        "config = yaml.safe_load(open('config/config.yaml'))\n"
        "config['model_params'] = {'stflow': {'lr': 'fast'}}\n"
        "assert check_config(config, load_schema('config/schema.yaml'), cwd='.')")
    assert not loaded & HEAVY, sorted(loaded & HEAVY)


@pytest.mark.workflow
def test_snakemake_stops_before_any_job_listing_every_mistake_without_a_traceback(tmp_path):
    config = write_config(tmp_path / "bad.yaml", **SEVERAL_MISTAKES)
    result = snakemake(tmp_path, config, "-n", "--config", "genes={n_top: fifty}")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-2000:]
    assert "rule download:" not in output and "Job stats" not in output
    assert "config: 6 problems found before any job ran" in output
    for key in ("colour", "search.stflow.trails", "model_params.stflow.epoch",
                "model_params.stflow.lr", "encoder_weights.efficientnet_lite0", "genes.n_top"):
        assert f"  - {key}: " in output, key
    assert "Traceback" not in output
    assert "additionalProperties" not in output and "$schema" not in output  # no schema dump


@pytest.mark.workflow
def test_nested_values_on_the_command_line_are_accepted_as_written(tmp_path):
    # a config file may switch off the default search of a model, too
    config = write_config(tmp_path / "tiny.yaml", search={"stflow": None})
    result = snakemake(tmp_path, config, "-n", "-p", "--config",
                       "genes={n_top: 7, list: null}", "seeds=[0, 3]",
                       "model_params={stflow: {epochs: 2, lr: 1e-3}}",
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

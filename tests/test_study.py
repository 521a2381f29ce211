"""The study a config describes, derived without Snakemake: samples and their patients, folds,
seeds, and the settings each rule hands to its library function (stflow/study.py). The rules
are input functions over these, so what is tested here is what the workflow runs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from light_imports import HEAVY, top_level_modules_after
from snakemake.exceptions import WorkflowError
from workflow_fixtures import REPO, TINY

from stflow.catalogue import PAPER_TABLES
from stflow.config import Problem
from stflow.config_checks import stop_on, with_defaults
from stflow.schema import load_schema
from stflow.study import Study, fold_members, synthetic_samples

SCHEMA = load_schema(REPO / "config" / "schema.yaml")
ALL_PATIENTS = {"calibration_patients": "all"}  # the default: every training patient
HER2ST = ["B4", "C2", "C3", "C4", "C5", "C6"]


def study_of(**changes) -> Study:
    """The study of the tiny workflow config with ``changes`` (schema defaults filled in)."""
    config = copy.deepcopy(TINY)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return Study(with_defaults(config, SCHEMA))


def visium(**dataset) -> dict:
    return {"name": "v", "source": "visium", "samples": ["a", "b", "c"], "mirror": None,
            **dataset}


@pytest.fixture
def sheet(tmp_path: Path) -> Path:
    """A sample sheet of three counts/positions rows, patients p1, p1, p2."""
    (tmp_path / "he.png").write_bytes(b"png")
    (tmp_path / "counts.tsv").write_text("\tG1\nAAAC-1\t1\n")
    (tmp_path / "positions.csv").write_text("barcode,x_px,y_px\nAAAC-1,10,20\n")
    rows = [f"{s}\t{p}\t\the.png\tcounts.tsv\tpositions.csv\t0.5"
            for s, p in (("s1", "p1"), ("s2", "p1"), ("s3", "p2"))]
    path = tmp_path / "samples.tsv"
    path.write_text("\n".join(["sample\tpatient\tspaceranger\timage\tcounts\tpositions\t"
                               "um_per_px", *rows]) + "\n")
    return path


def test_the_study_imports_no_torch_numpy_pandas_anndata_or_scanpy():
    loaded = top_level_modules_after(
        "import yaml\n"
        "from stflow.schema import load_schema\n"
        "from stflow.config_checks import with_defaults\n"
        "from stflow.study import Study\n"
        "config = with_defaults(yaml.safe_load(open('config/config.yaml')),\n"
        "                       load_schema('config/schema.yaml'))\n"
        "study = Study(config)\n"
        "assert study.targets() and study.splits_settings('synthetic') == "
        "{'calibration': 'auto', 'calibration_patients': 'all'}")
    assert not loaded & HEAVY, sorted(loaded & HEAVY)


# --- datasets, samples and patients --------------------------------------------------------

def test_synthetic_samples_are_the_simulator_s_patients_times_sections():
    study = study_of(simulate={"patients": 2, "sections": 3})
    assert study.samples("tiny") == ["P1S1", "P1S2", "P1S3", "P2S1", "P2S2", "P2S3"]
    assert synthetic_samples(1, 2) == ["P1S1", "P1S2"]
    assert [study.patient("tiny", s) for s in ("P1S3", "P2S1", "other")] == ["P1", "P2", None]


def test_her2st_samples_default_to_the_known_sections_and_the_letter_is_the_patient():
    study = study_of(dataset={"name": "h", "source": "her2st", "samples": None})
    assert study.samples("h") == HER2ST
    assert {study.patient("h", s) for s in HER2ST} == {"B", "C"}
    chosen = study_of(dataset={"name": "h", "source": "her2st", "samples": ["C3", "B4"]})
    assert chosen.samples("h") == ["C3", "B4"]  # as configured, in the config's order


def test_the_default_her2st_sections_are_the_package_s_checksum_list():
    config = with_defaults({**copy.deepcopy(TINY), "dataset": {
        "name": "h", "source": "her2st", "samples": None}}, SCHEMA)
    assert Study(config).samples("h") == HER2ST


def test_configured_patients_come_first_and_are_text():
    study = study_of(dataset=visium(patients={"a": 1, "b": "x"}))
    assert [study.patient("v", s) for s in ("a", "b", "c")] == ["1", "x", None]


def test_a_source_without_default_samples_needs_them_listed():
    study = study_of(dataset=visium(samples=None))
    with pytest.raises(ValueError, match="dataset.samples is null for source 'visium'"):
        study.samples("v")


def test_a_sample_sheet_gives_its_rows_and_their_patients(sheet):
    study = study_of(dataset={"name": "s", "source": "sheet", "sheet": str(sheet)})
    assert study.samples("s") == ["s1", "s2", "s3"]
    assert [study.patient("s", n) for n in ("s1", "s2", "s3")] == ["p1", "p1", "p2"]
    some = study_of(dataset={"name": "s", "source": "sheet", "sheet": str(sheet),
                             "samples": ["s3", "s1"]})
    assert some.samples("s") == ["s1", "s3"]  # in sheet order


def test_each_task_is_a_dataset_with_its_own_samples_and_folds_else_the_study_s():
    study = study_of(dataset={"name": "hest", "source": "hest", "mirror": None},
                     splits={"n_folds": 2},
                     tasks=[{"name": "IDC", "samples": ["a", "b"]},
                            {"name": "LUNG", "samples": ["c", "d", "e"], "n_folds": 3}])
    assert list(study.datasets) == ["IDC", "LUNG"]
    assert study.samples("LUNG") == ["c", "d", "e"]
    assert study.datasets["IDC"]["task"] == "IDC" and study.datasets["IDC"]["source"] == "hest"
    assert [study.n_folds(d) for d in study.datasets] == [2, 3]
    assert study.folds("LUNG") == ["fold0", "fold1", "fold2"]


def test_the_seeds_are_the_config_s_list():
    assert study_of(seeds=[0, 1]).seeds == [0, 1]


# --- folds -------------------------------------------------------------------------------

def test_without_fold_settings_each_patient_is_one_fold():
    study = study_of(simulate={"patients": 3, "sections": 2})
    assert study.n_folds("tiny") == 3
    assert study.folds("tiny") == ["fold0", "fold1", "fold2"]


def test_a_fold_count_or_explicit_folds_decide_the_folds():
    assert study_of(splits={"n_folds": 2}, simulate={"patients": 3}).folds("tiny") == [
        "fold0", "fold1"]
    explicit = study_of(splits={"folds": [{"test": ["P1S1"]}, {"name": "fold7",
                                                                "test": ["P2S1"]}]})
    assert explicit.folds("tiny") == ["fold0", "fold7"]


def test_leaving_one_section_out_makes_one_fold_per_sample():
    study = study_of(splits={"scheme": "section"})
    assert study.folds("tiny") == [f"fold{i}" for i in range(len(study.samples("tiny")))]
    assert study.splits_settings("tiny") == {"scheme": "section", "calibration": "auto",
                                             **ALL_PATIENTS}


def test_fold_problems_of_every_dataset_stop_the_run_at_once_only_where_folds_are_asked():
    study = study_of(dataset={"name": "hest", "source": "hest", "mirror": None},
                     tasks=[{"name": "IDC", "samples": ["a", "b"]},
                            {"name": "LUNG", "samples": ["c", "d"]}])
    assert [p.key for p in study.fold_problems()] == ["dataset.patients"] * 2
    with pytest.raises(WorkflowError) as stopped:
        study.folds("IDC")
    assert "2 problems" in str(stopped.value)
    assert "dataset 'IDC'" in str(stopped.value) and "dataset 'LUNG'" in str(stopped.value)
    with pytest.raises(WorkflowError):
        study.splits_settings("LUNG")
    # one sample's own files need no folds: ingesting it is planned without a problem
    assert study.ingest_options("IDC", "a")["require_patient"] is True
    assert study.download_settings("IDC")["samples"] == ["a", "b"]


def test_a_dataset_of_one_patient_has_a_fold_problem_but_its_samples_still_ingest():
    study = study_of(simulate={"patients": 1, "sections": 2})
    assert [p.problem for p in study.fold_problems()] == [
        "dataset 'tiny' has one patient; patient-stratified folds need two"]
    assert study.ingest_options("tiny", "P1S1")["patient"] is None
    with pytest.raises(WorkflowError, match="one patient"):
        study.n_folds("tiny")


def test_visium_samples_without_patients_and_unlisted_samples_are_fold_problems():
    unmapped = study_of(dataset=visium(patients={"a": "1"}))
    assert "visium samples ['b', 'c']" in unmapped.fold_problems()[0].problem
    assert study_of(dataset=visium(samples=None)).fold_problems() == [
        Problem("dataset.samples", None, "null for source 'visium'",
                "list the sample ids in dataset.samples (or tasks[].samples)")]
    mapped = study_of(dataset=visium(patients={"a": "1", "b": "1", "c": "2"}))
    assert mapped.fold_problems() == [] and mapped.folds("v") == ["fold0", "fold1"]


def test_a_fold_s_samples_are_read_from_splits_json_once_the_checkpoint_ran(tmp_path):
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"folds": [
        {"name": "fold0", "train": ["b", "a"], "val": ["c"], "test": ["d"]},
        {"name": "fold1", "train": ["d"], "val": None, "test": ["a"]}]}))
    assert fold_members(splits, "fold0", ("train", "val")) == ["a", "b", "c"]
    assert fold_members(splits, "fold1", ("train", "val")) == ["d"]
    with pytest.raises(ValueError, match=r"no fold named fold2 \(it has \['fold0', 'fold1'\]\)"):
        fold_members(splits, "fold2", ("test",))


def test_stop_on_lists_every_problem_or_lets_the_run_go_on():
    stop_on([])
    problems = [Problem("a", 1, "wrong", "fix a"), Problem("b", 2, "bad", "fix b")]
    with pytest.raises(WorkflowError, match=r"config: 2 problems found before any job ran"):
        stop_on(problems)


# --- each rule's settings ----------------------------------------------------------------

def test_the_synthetic_download_takes_the_simulator_settings():
    study = study_of()
    assert study.download_settings("tiny") == {"mirror": None, "task": None, "patients": 2,
                                               "sections": 2, "grid": 8, "genes": 60,
                                               "seed": 0}
    assert study.download_inputs("tiny") == []
    shifted = study_of(simulate={"expression_shift": 2.0, "stain_shift": 1.0})
    assert shifted.download_settings("tiny")["expression_shift"] == 2.0
    assert "stain_shift" not in shifted.download_settings("tiny")  # default: as before


def test_other_downloads_take_the_samples_and_hest_bench_fetches_the_task_folders():
    her2st = study_of(dataset={"name": "h", "source": "her2st", "samples": ["B4"],
                               "mirror": "/m"})
    assert her2st.download_settings("h") == {"mirror": "/m", "task": None, "samples": ["B4"]}
    bench = study_of(dataset={"name": "hest", "source": "hest", "mirror": None},
                     splits={"source": "hest-bench"},
                     tasks=[{"name": "IDC", "samples": ["a", "b"], "n_folds": 2}])
    assert bench.download_settings("IDC") == {"mirror": None, "task": "IDC",
                                              "samples": ["a", "b"],
                                              "repo_id": "MahmoodLab/hest-bench"}
    assert bench.splits_settings("IDC") == {"hest_bench": "results/IDC/raw/IDC", "n_folds": 2,
                                            "calibration": "auto", **ALL_PATIENTS}


def test_a_sheet_download_reads_the_sheet_and_ingest_reads_each_row(sheet):
    study = study_of(dataset={"name": "s", "source": "sheet", "sheet": str(sheet)})
    assert study.download_inputs("s") == [str(sheet)]
    assert study.download_settings("s")["sheet"] == str(sheet)
    row = study.ingest_options("s", "s2")["row"]
    assert row["sample"] == "s2" and row["patient"] == "p1" and row["um_per_px"] == 0.5
    assert study.sheet_files("s", "s2") == [str(sheet.parent / n) for n in
                                            ("he.png", "counts.tsv", "positions.csv")]
    assert study_of().sheet_files("tiny", "P1S1") is None  # ingest reads the download


def test_ingest_gets_the_configured_patient_and_image_and_requires_a_patient_where_folds_do():
    study = study_of(dataset={"name": "hest", "source": "hest", "mirror": None,
                              "samples": ["a", "b"], "patients": {"a": 3}})
    assert study.ingest_options("hest", "a") == {"task": None, "patient": "3", "image": None,
                                                 "require_patient": True}
    listed = study_of(dataset={"name": "v", "source": "visium", "samples": ["a", "b"],
                               "images": {"a": "a.tif"}},
                      splits={"folds": [{"test": ["a"]}, {"test": ["b"]}]})
    assert listed.ingest_options("v", "a") == {"task": None, "patient": None,
                                               "image": "a.tif", "require_patient": False}
    assert study_of().ingest_options("tiny", "P1S1")["require_patient"] is False


def test_splits_settings_give_explicit_folds_their_names_else_the_count():
    explicit = study_of(splits={"folds": [{"test": ["P1S1"], "val": ["P2S1"]},
                                          {"name": "fold5", "test": ["P2S2"]}]})
    assert explicit.splits_settings("tiny") == {"folds": [
        {"name": "fold0", "test": ["P1S1"], "val": ["P2S1"]},
        {"name": "fold5", "test": ["P2S2"]}], "calibration": "auto", **ALL_PATIENTS}
    assert study_of(splits={"n_folds": 2}).splits_settings("tiny") == {"n_folds": 2,
                                                                      "calibration": "auto", **ALL_PATIENTS}
    # one patient out
    assert study_of().splits_settings("tiny") == {"calibration": "auto", **ALL_PATIENTS}


def test_calibrating_across_patients_is_refused_before_any_job_where_a_fold_has_one():
    patient = {"level": 0.9, "calibration": "patient"}
    three = study_of(intervals=patient, simulate={**TINY["simulate"], "patients": 3})
    assert three.fold_problems() == []  # each fold trains on 2 patients
    [problem] = study_of(intervals=patient).fold_problems()  # tiny: 2 patients
    assert problem.key == "intervals.calibration" and "['P1', 'P2']" in str(problem)
    assert "Fix: set intervals.calibration to auto" in str(problem)
    assert study_of().fold_problems() == []  # auto: within, and says so


def test_genes_settings_follow_genes_source_and_scope():
    study = study_of(genes={"n_top": 7, "list": None, "include": ["ERBB2"]})
    drawn = ["ERBB2", "GATA3"]  # figures.genes, the schema's default
    assert study.genes_settings("tiny") == {"n_top": 7, "listed": None, "include": ["ERBB2"],
                                            "biomarkers": drawn}
    assert study.fold_genes_settings() == {"n_top": 7, "include": ["ERBB2"],
                                           "biomarkers": drawn}
    # fold, the default: genes chosen without the test sections, as for a new patient
    assert study.genes_file("tiny", "fold1") == "results/tiny/genes/fold1.json"
    whole = study_of(genes={"scope": "study"})
    assert whole.genes_file("tiny", "fold1") == "results/tiny/genes.json"
    bench = study_of(dataset={"name": "hest", "source": "hest", "mirror": None,
                              "samples": ["a", "b"]},
                     genes={"source": "hest-bench", "scope": "study"})
    assert bench.genes_settings("hest") == {"bench_dir": "results/hest/raw",
                                            "biomarkers": drawn}


def test_the_biomarkers_trained_are_the_genes_the_study_draws():
    assert study_of(figures={"genes": ["KRT5"]}).biomarker_genes == ["KRT5"]
    assert study_of(figures={"genes": ["KRT5"]}, predict={"genes": ["ESR1", "KRT5"]}
                    ).biomarker_genes == ["KRT5", "ESR1"]
    assert study_of(figures={"genes": []}).biomarker_genes == ["ERBB2", "GATA3"]  # catalogue's


def test_only_the_models_that_read_the_graph_get_graph_k_and_the_graph():
    study = study_of(graph={"k": 6}, model_params={"stflow": {"epochs": 2}, "ridge": {}})
    assert study.model_params("stflow") == {"epochs": 2, "k": 6}
    assert study.model_params("ridge") == {}
    assert study.model_params("spatial_ridge") == {"k": 6}
    assert study.graph_dir("tiny", "stflow") == "results/tiny/graph"
    assert study.graph_dir("tiny", "ridge") is None


def test_every_run_is_an_encoder_model_seed_and_fold():
    study = study_of(models=["stflow", "ridge"], seeds=[0, 1])
    runs = study.runs("tiny", "metrics/{encoder}/{model}/seed{seed}/{fold}.json")
    assert len(runs) == 1 * 2 * 2 * 2
    assert runs[0] == "results/tiny/metrics/efficientnet_lite0/stflow/seed0/fold0.json"


def test_all_targets_are_the_tables_figures_and_per_sample_artifacts():
    study = study_of()
    targets = study.targets()
    assert "results/tiny/raw/DOWNLOAD_DONE" in targets
    assert {f"results/tiny/tables/{t}.{e}" for t in PAPER_TABLES for e in ("tsv", "md")} \
        <= set(targets)
    for sample in study.samples("tiny"):
        assert f"results/tiny/figures/qc/{sample}.png" in targets
        assert f"results/tiny/graph/{sample}.npz" in targets
        assert f"results/tiny/features/efficientnet_lite0/{sample}.zarr" in targets
    assert len(targets) == len(set(targets))


# --- new slides ----------------------------------------------------------------------------

def test_slides_are_predicted_by_the_named_final_model_else_the_first():
    assert study_of().slide_targets() == []
    study = study_of(predict={"slides": {"a": "a.svs"}, "model": "ridge"})
    assert study.predict_dataset() == "tiny"
    assert study.final_model_dir() == "results/tiny/models/efficientnet_lite0/ridge/final"
    assert study.slide_targets() == [
        "results/tiny/slides/checks/a.json", "results/tiny/slides/a.h5ad",
        "results/tiny/slides/a_maps", "results/tiny/slides/cohort.h5ad",
        "results/tiny/slides/cohort.tsv", "results/tiny/slides/cohort_maps"]


def test_views_are_beside_each_slide_and_of_the_first_seed_s_test_sections():
    views = study_of(seeds=[3, 4]).view_targets()
    assert views == [f"results/tiny/views/efficientnet_lite0/{m}/seed3/{f}"
                     for m in ("stflow", "ridge") for f in ("fold0", "fold1")]
    with_slide = study_of(predict={"slides": {"a": "a.svs"}}).view_targets()
    assert with_slide[0] == "results/tiny/slides/a.view" and with_slide[1:] == \
        study_of().view_targets()


def test_slide_options_take_the_predict_section_else_the_study_s_settings():
    options = study_of(seeds=[3, 4], predict={"pitch_um": 50.0}).slide_options()
    assert options["seed"] == 3 and options["pitch_um"] == 50.0
    assert "layout" not in options and options["spatialdata"] is True
    assert options["genes"] == tuple(study_of().config["figures"]["genes"])
    assert study_of(predict={"genes": []}).slide_options()["genes"] == ()


# --- the rules only ask the study ----------------------------------------------------------

def test_the_rules_raise_nothing_and_common_smk_stays_input_functions():
    rules = sorted((REPO / "rules").glob("*.smk")) + [REPO / "Snakefile"]
    for path in rules:
        lines = path.read_text().splitlines()
        assert not [n for n, line in enumerate(lines, 1) if line.lstrip().startswith("raise ")], \
            f"{path.name}: a check belongs in stflow.study or stflow.config_checks"
    assert len((REPO / "rules" / "common.smk").read_text().splitlines()) <= 200


@pytest.mark.parametrize(("genes", "per_fold"), [
    ({"scope": "fold"}, True), ({"scope": "study"}, False),
    ({"scope": "fold", "list": ["G1", "G2"]}, False),  # one fixed list: the same every fold
    ({"scope": "fold", "source": "hest-bench"}, False),
])
def test_genes_are_chosen_per_fold_only_where_there_is_a_choice(genes, per_fold):
    study = study_of(genes={**TINY.get("genes", {}), "n_top": 12, **genes})
    expected = "genes/fold0.json" if per_fold else "genes.json"
    assert study.genes_file("tiny", "fold0") == f"results/tiny/{expected}"

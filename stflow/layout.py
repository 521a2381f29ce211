"""The results layout, defined once: every path of ``results/{dataset}/``.

The rules (rules/*.smk), the study (stflow/study.py) and the library read these names; no
other code spells a results path (tests/test_layout.py). Paths are relative to the
dataset's folder and keep their wildcards (``{sample}``, ``{encoder}``, ``{model}``,
``{seed}``, ``{fold}``, ``{slide}``) for the rules to fill; :func:`result` puts one under
``results/{dataset}/``. docs/artifacts.md describes what each file holds.

Standard library only: the Snakefile imports this while Snakemake parses the workflow.
"""

from __future__ import annotations

from pathlib import Path

RESULTS = "results"

# --- what identifies a job's outputs (the path below each folder) ---------------------------
SAMPLE = "{sample}"
ENCODER_SAMPLE = "{encoder}/{sample}"
RUN = "{encoder}/{model}/seed{seed}/{fold}"  # one fold of one seed of encoder x model
FINAL = "{encoder}/{model}"  # the model trained on every sample

# --- download and ingest --------------------------------------------------------------------
RAW = "raw"
MANIFEST = f"{RAW}/MANIFEST.tsv"
DOWNLOAD_DONE = f"{RAW}/DOWNLOAD_DONE"
ST_DIR = "st"
ST = f"{ST_DIR}/{SAMPLE}.h5ad"
SAMPLES = "samples.tsv"

# --- folds and genes ------------------------------------------------------------------------
SPLITS = "splits.json"
GENES = "genes.json"
FOLD_GENES_DIR = "genes"
FOLD_GENES = f"{FOLD_GENES_DIR}/{{fold}}.json"

# --- per sample -----------------------------------------------------------------------------
PATCHES_DIR = "patches"
PATCHES = f"{PATCHES_DIR}/{SAMPLE}.h5"
FEATURES_DIR = "features"
ENCODER_FEATURES = f"{FEATURES_DIR}/{{encoder}}"  # one encoder's stores
FEATURES = f"{FEATURES_DIR}/{ENCODER_SAMPLE}.zarr"
GRAPH_DIR = "graph"
GRAPH = f"{GRAPH_DIR}/{SAMPLE}.npz"

# --- models, predictions, scores ------------------------------------------------------------
MODELS_DIR = "models"
MODEL = f"{MODELS_DIR}/{RUN}"
FINAL_MODEL = f"{MODELS_DIR}/{FINAL}/final"
PREDICTIONS_DIR = "predictions"
PREDICTIONS = f"{PREDICTIONS_DIR}/{RUN}"
METRICS_DIR = "metrics"
METRICS = f"{METRICS_DIR}/{RUN}.json"

# --- tables and figures ---------------------------------------------------------------------
TABLES = "tables"
METRICS_TABLE = f"{TABLES}/metrics.tsv"
SUMMARY_TABLE = f"{TABLES}/summary.tsv"
SUMMARY_MD = f"{TABLES}/summary.md"
GENES_TABLE = f"{TABLES}/genes.tsv"
BIOMARKERS_TABLE = f"{TABLES}/biomarkers.tsv"  # biomarkers scored apart from the benchmark
COVERAGE_TABLE = f"{TABLES}/coverage.tsv"
COVERAGE_MD = f"{TABLES}/coverage.md"
RISK_TABLE = f"{TABLES}/risk_coverage.tsv"
RUN_TABLES = tuple(path.removeprefix(f"{TABLES}/") for path in (
    METRICS_TABLE, SUMMARY_TABLE, SUMMARY_MD, GENES_TABLE, BIOMARKERS_TABLE, COVERAGE_TABLE,
    COVERAGE_MD, RISK_TABLE))
FIGURES = "figures"
COMPARISON = f"{FIGURES}/comparison.png"
RISK_FIGURE = f"{FIGURES}/risk_coverage.png"
CURVES = f"{FIGURES}/training_curves.png"
BIOMARKERS = f"{FIGURES}/biomarkers"
BIOMARKER_MAP = "{encoder}/{fold}.png"  # inside BIOMARKERS
QC = f"{FIGURES}/qc/{SAMPLE}.png"
RUN_FIGURES = tuple(path.removeprefix(f"{FIGURES}/") for path in (
    COMPARISON, RISK_FIGURE, CURVES, BIOMARKERS))

# --- new slides -----------------------------------------------------------------------------
SLIDES = "slides"
SLIDE = f"{SLIDES}/{{slide}}.h5ad"
SLIDE_MAPS = f"{SLIDES}/{{slide}}_maps"
SLIDE_ZARR = f"{SLIDES}/{{slide}}.zarr"
SLIDE_VIEW = f"{SLIDES}/{{slide}}.view"  # stflow view's folder beside the slide's h5ad
SLIDE_CHECK = f"{SLIDES}/checks/{{slide}}.json"  # whether the slide reads, and its scale
COHORT = "cohort"  # no slide takes this name: slides/cohort.* are the cohort's
COHORT_H5AD = f"{SLIDES}/{COHORT}.h5ad"  # one row per slide, one column per gene
COHORT_TSV = f"{SLIDES}/{COHORT}.tsv"  # the same as a table, with the slides missing
COHORT_MAPS = f"{SLIDES}/{COHORT}_maps"  # {gene}.png: every slide, one colour scale

# --- views of the test sections (measured beside predicted) --------------------------------
VIEWS_DIR = "views"
SECTION_VIEWS = f"{VIEWS_DIR}/{RUN}"  # one {sample}.view per test section of the fold

# --- logs and job times ---------------------------------------------------------------------
LOGS = "logs"
BENCHMARKS = "benchmarks"


def result(dataset: str, path: str) -> str:
    """``path`` under the dataset's results folder (results/{dataset}/...)."""
    return f"{RESULTS}/{dataset}/{path}"


def table(name: str) -> str:
    """tables/{name} (a paper table's ``{name}.tsv`` or ``.md``)."""
    return f"{TABLES}/{name}"


def figure(name: str) -> str:
    """figures/{name}."""
    return f"{FIGURES}/{name}"


def log(rule: str, job: str = "") -> str:
    """The log of one job of ``rule``: logs/{rule}.log, or logs/{rule}/{job}.log."""
    return f"{LOGS}/{rule}/{job}.log" if job else f"{LOGS}/{rule}.log"


def benchmark(rule: str, job: str = "") -> str:
    """The job time of one job of ``rule`` (Snakemake's benchmark TSV), as :func:`log`."""
    return f"{BENCHMARKS}/{rule}/{job}.tsv" if job else f"{BENCHMARKS}/{rule}.tsv"


def under(root: str | Path, path: str, **names: object) -> Path:
    """``path`` with its wildcards filled under a dataset's folder ``root`` (the library's
    way to a file of a results folder it was handed)."""
    return Path(root) / path.format(**names)

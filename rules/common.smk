# Input functions: each asks the study (stflow/study.py) what a rule reads and which settings
# it hands to its library function, by dataset, sample, fold and model name; the derivations
# (samples, patients, folds, seeds, settings) and their checks are unit-tested there. Only
# what needs Snakemake stays here: wildcard constraints, resources, the splits checkpoint
# and `ancient`.
import os
from pathlib import Path

from stflow import layout as L  # every path of results/{dataset}/ (stflow/layout.py)
from stflow.layout import result
from stflow.models.model_specs import reads_graph
from stflow.study import Study, fold_members

# Rules run the library through workflow/scripts/<rule>.py (`script:`), which puts this
# repository first on sys.path (workflow/scripts/_job.py): a job finds the library whatever its
# working directory, with PYTHONPATH cleared (as --use-conda does), without the project
# installed in its environment, and when this workflow is a module of another. The device
# reaches embed/train/predict as $STFLOW_DEVICE: switching cpu and cuda must not rerun them,
# and every param is a rerun trigger. It is set in the environment the jobs inherit (cluster
# jobs parse this file again), and is no part of a rule's code.
#
# The config was typed and checked by the Snakefile (stflow/config_checks.py); rules read it
# only through the study, which stops on the fold problems, which need the samples, only
# where folds are asked for (Study.n_folds).
STUDY = Study(config)
DATASETS = STUDY.datasets
SEEDS = STUDY.seeds
os.environ.update(STFLOW_DEVICE=STUDY.device)


wildcard_constraints:
    dataset=r"[A-Za-z0-9_.-]+",
    sample=r"[A-Za-z0-9_.-]+",
    encoder=r"[A-Za-z0-9_.-]+",
    model=r"[A-Za-z0-9_.-]+",
    fold=r"fold\d+",
    seed=r"\d+",


ENV = "../envs/stflow.yaml"


def grows(mem_mb):
    """Memory that grows with each attempt, so a retry of a job killed for memory (Slurm's
    OOM kill, `retries:` in profiles/slurm) asks for more."""
    return lambda wildcards, attempt: mem_mb * attempt


def _cluster_resources(gpu):
    """Slurm settings every job carries: one CPU per rule thread, and the partition and
    account of the config's `slurm:` section (none: the cluster's defaults). A GPU rule under
    `device: cuda` asks for one GPU (on the GPU partition; `gpu_model` pins the type); the
    local executor reads `gpu` alone, so `--resources gpu=N` runs N GPU jobs at a time."""
    slurm = STUDY.slurm
    wants_gpu = gpu and STUDY.device == "cuda"
    resources = {"cpus_per_task": lambda wildcards, threads: threads}
    partition = slurm["gpu_partition"] if wants_gpu else slurm["partition"]
    if partition:
        resources["slurm_partition"] = partition
    if slurm["account"]:
        resources["slurm_account"] = slurm["account"]
    if wants_gpu:
        resources["gpu"] = 1
        if slurm["gpu_model"]:
            resources["gpu_model"] = slurm["gpu_model"]
    return resources


# The resources of CPU rules, and of the rules that may run on a GPU (embed, train, predict).
CLUSTER = _cluster_resources(gpu=False)
GPU = _cluster_resources(gpu=True)



def res(dataset, path):
    return result(dataset, path)


def st_files(wc):
    return STUDY.sample_files(wc.dataset, L.ST)


def fold_files(pattern, parts, graph_only=False):
    """Input function: ``pattern`` (under results/{dataset}/, filled with the job's wildcards
    and each sample) for the samples of the fold's ``parts`` in splits.json, read once the
    splits checkpoint has run (so re-embedding one sample retrains only the folds that see
    it); none for a model that does not read the graph when ``graph_only``."""

    def files(wc):
        if graph_only and not reads_graph(wc.model):
            return []
        splits = checkpoints.splits.get(dataset=wc.dataset).output[0]
        return [res(wc.dataset, pattern.format(sample=s, **dict(wc.items())))
                for s in fold_members(splits, wc.fold, parts)]

    return files


def graph_dir(wc):
    return STUDY.graph_dir(wc.dataset, wc.model)


def model_params(wc):
    return STUDY.model_params(wc.model)


# --- download, ingest ---
def download_inputs(wc):
    return STUDY.download_inputs(wc.dataset)


def download_settings(wc):
    return STUDY.download_settings(wc.dataset)


def ingest_manifest(wc):
    """The download's manifest (source sheet: the row's own files, which stay in place),
    ancient once the sample is ingested: a new download (one more sample, hence new
    --samples) must not redo the samples already ingested and all their patches, features
    and graphs. Only there: Snakemake skips an ancient input's missing outputs downstream of
    a job that reruns, so a sample still to ingest waits normally."""
    row_files = STUDY.sheet_files(wc.dataset, wc.sample)
    if row_files is not None:
        return row_files
    manifest = res(wc.dataset, L.MANIFEST)
    if Path(res(wc.dataset, L.ST.format(sample=wc.sample))).exists():
        return ancient(manifest)
    return manifest


def ingest_options(wc):
    return STUDY.ingest_options(wc.dataset, wc.sample)


# --- splits, genes ---
def bench_splits_input(wc):
    """The download, when the folds come from HEST-bench's splits/ files. Ancient: it orders
    the jobs, and a download rerun for other samples (which restores or rewrites the
    manifest) must not redo the folds; new samples redo them through samples.tsv."""
    return [ancient(res(wc.dataset, L.MANIFEST))] if STUDY.bench_splits() else []


def splits_settings(wc):
    return STUDY.splits_settings(wc.dataset)


def bench_genes_input(wc):
    """The download, when the genes come from HEST-bench's var_50genes.json (ancient, as
    for the splits; new samples redo the genes through their st/ files)."""
    return [ancient(res(wc.dataset, L.MANIFEST))] if STUDY.bench_genes() else []


def genes_settings(wc):
    return STUDY.genes_settings(wc.dataset)


def fold_genes_settings(wc):
    return STUDY.fold_genes_settings()


def genes_file(wc):
    return STUDY.genes_file(wc.dataset, wc.fold)


# --- embed ---
def encoder_weights_input(wc):
    """The encoder's local checkpoint, if one is configured: an input, so a checkpoint
    replaced at the same path re-embeds; none for the published weights."""
    path = STUDY.encoder_weights(wc.encoder)
    return [path] if path else []


# --- evaluate, figures ---
def metric_files(wc):
    return STUDY.runs(wc.dataset, L.METRICS)


def predict_benchmarks(wc):
    """The predict jobs' benchmark TSVs: the inference time of each test set (Table 5)."""
    return STUDY.runs(wc.dataset, L.benchmark("predict", L.RUN))


def embed_benchmarks(wc):
    """The embed jobs' benchmark TSVs: the image-encoder time of each test section."""
    return [path for e in STUDY.encoders for path in STUDY.sample_files(
        wc.dataset, L.benchmark("embed", L.ENCODER_SAMPLE).replace("{encoder}", e))]


def prediction_dirs(wc):
    return STUDY.runs(wc.dataset, L.PREDICTIONS)


def model_dirs(wc):
    return STUDY.runs(wc.dataset, L.MODEL)

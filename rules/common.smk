# Sample lists, folds, seeds and per-rule arguments. Samples come from the config or the
# source's defaults, fold names from the config, the number of patients, or (splits.scheme:
# section) the number of samples, all known when the DAG is built. Which samples a fold
# trains and tests on is known once the splits checkpoint has run (train and predict read
# only their fold's samples, so re-embedding one sample retrains only the folds that see it).
import json
import os
import re
from pathlib import Path

from snakemake.exceptions import WorkflowError

from stflow.config import Problem
from stflow.config_checks import fold_count_problems, her2st_sections, problems_message, run_seeds
from stflow.data.sheet import sheet_patients, sheet_row, sheet_samples

# Rules run the library through workflow/scripts/<rule>.py (`script:`), which puts this
# repository first on sys.path (workflow/scripts/_job.py): a job finds the library whatever its
# working directory, with PYTHONPATH cleared (as --use-conda does), without the project
# installed in its environment, and when this workflow is a module of another. The device
# reaches embed/train/predict as $STFLOW_DEVICE: switching cpu and cuda must not rerun them,
# and every param is a rerun trigger. It is set in the environment the jobs inherit (cluster
# jobs parse this file again), and is no part of a rule's code.
REPO = Path(str(workflow.current_basedir)).parent  # this file's repository (also as a module)
os.environ.update(STFLOW_DEVICE=config["device"])


wildcard_constraints:
    dataset=r"[A-Za-z0-9_.-]+",
    sample=r"[A-Za-z0-9_.-]+",
    encoder=r"[A-Za-z0-9_.-]+",
    model=r"[A-Za-z0-9_.-]+",
    fold=r"fold\d+",
    seed=r"\d+",


# The her2st sections the package can fetch: those of its committed checksum list.
HER2ST_SAMPLES = her2st_sections(REPO)
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
    slurm = config["slurm"]
    wants_gpu = gpu and config["device"] == "cuda"
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


def _datasets():
    """Dataset name -> settings: the `dataset` entry, or one per HEST-style task."""
    base = config["dataset"]
    if not config["tasks"]:
        return {base["name"]: {**base, "task": None, "folds": config["splits"]["folds"],
                               "n_folds": config["splits"]["n_folds"]}}
    return {t["name"]: {**base, "name": t["name"], "task": t["name"], "samples": t["samples"],
                        "folds": t.get("folds") or config["splits"]["folds"],
                        "n_folds": t.get("n_folds") or config["splits"]["n_folds"]}
            for t in config["tasks"]}


DATASETS = _datasets()
SCHEME = config["splits"]["scheme"]


# The config's own rules (seeds, sample maps, genes scope, her2st sections, the mirror, one k,
# fold names, model parameters, search spaces, encoder weights) were checked by the
# Snakefile before this file (stflow/config_checks.py); here only what needs the samples.
SEEDS = run_seeds(config)


def uses_bench_files():
    """Whether the folds or the genes come from HEST-bench's task folders."""
    return "hest-bench" in (config["splits"]["source"], config["genes"]["source"])


def bench_splits(dataset):
    """Whether the folds are HEST-bench's published splits/ files (splits.source)."""
    return config["splits"]["source"] == "hest-bench"


def explicit_folds(dataset):
    """Folds that do not come from patient ids (config folds or HEST-bench's files)."""
    return bool(DATASETS[dataset]["folds"]) or bench_splits(dataset)


def bench_dir(dataset):
    """The HEST-bench task folder in the raw data (raw/{task}, or raw/ without tasks)."""
    task = DATASETS[dataset]["task"]
    return res(dataset, f"raw/{task}" if task else "raw")


def samples(dataset):
    """Sample ids of a dataset: from the config, else the source's defaults."""
    entry = DATASETS[dataset]
    if entry["source"] == "sheet":
        return sheet_samples(entry["sheet"], entry["samples"])
    if entry["samples"]:
        return list(entry["samples"])
    if entry["source"] == "synthetic":
        sim = config["simulate"]
        return [f"P{p}S{s}" for p in range(1, sim["patients"] + 1)
                for s in range(1, sim["sections"] + 1)]
    if entry["source"] == "her2st":
        return list(HER2ST_SAMPLES)
    raise ValueError(f"config: dataset.samples is null for source '{entry['source']}'. "
                     "Fix: list the sample ids in dataset.samples (or tasks[].samples)")


def _patient(source, sample):
    """The sample's patient as the DAG knows it (dataset.patients first), else None."""
    mapped = (config["dataset"].get("patients") or {}).get(sample)
    if mapped is not None:
        return str(mapped)
    if source == "synthetic":
        match = re.fullmatch(r"(P\d+)S\d+", sample)
        return match.group(1) if match else None
    if source == "her2st":
        return sample[0]
    if source == "sheet":
        return sheet_patients(config["dataset"]["sheet"]).get(sample)
    return None


def _fold_problems(dataset):
    """What stops the folds of ``dataset`` being counted before ingest (one message)."""
    entry = DATASETS[dataset]
    if entry["source"] not in ("synthetic", "her2st", "sheet") and not entry["samples"]:
        return [Problem("dataset.samples", None, f"null for source '{entry['source']}'",
                        "list the sample ids in dataset.samples (or tasks[].samples)")]
    names = samples(dataset)
    return fold_count_problems(
        dataset, entry["source"], names, {s: _patient(entry["source"], s) for s in names},
        scheme=SCHEME, explicit=explicit_folds(dataset), n_folds=entry["n_folds"])


def n_folds(dataset):
    """Explicit folds, else n_folds, else one fold per patient (leave one patient out);
    splits.scheme section: one fold per sample (leave one section out)."""
    entry = DATASETS[dataset]
    # every dataset's problems in one message, raised only where folds are asked for (the
    # DAG of `all`, not a run of one sample's st/ file or of final_models); Snakemake shows
    # the input function it came through below the message
    problems = [problem for name in DATASETS for problem in _fold_problems(name)]
    if problems:
        raise WorkflowError(problems_message(problems))
    if SCHEME == "section":
        return len(samples(dataset))
    if entry["folds"]:
        return len(entry["folds"])
    if entry["n_folds"]:
        return entry["n_folds"]
    return len({_patient(entry["source"], s) for s in samples(dataset)})


def folds(dataset):
    """Fold names: the configured ones (fold\\d+, by the schema), else fold0..fold{n-1}."""
    explicit = DATASETS[dataset]["folds"]
    if not explicit:
        return [f"fold{i}" for i in range(n_folds(dataset))]
    return [f.get("name", f"fold{i}") for i, f in enumerate(explicit)]  # unique: checked


def res(dataset, path):
    return f"results/{dataset}/{path}"


def st_files(wc):
    return [res(wc.dataset, f"st/{s}.h5ad") for s in samples(wc.dataset)]


# The models that read the kNN graph (stflow.models.registry.MODELS whose estimator takes `k`): they
# alone depend on graph/ and get graph.k as their `k`, so the graph and the model always
# agree and changing graph.k retrains these models only (tests/test_reruns.py).
GRAPH_MODELS = {"stflow", "stflow_zinb_fitted", "stflow_zero", "stflow_gaussian",
                "stflow_nofm", "stflow_nofa", "stflow_egnn", "spatial_ridge"}


def fold_samples(wc, parts):
    """The samples of ``parts`` (train, val, test) of the fold in splits.json, read once the
    splits checkpoint has run."""
    path = checkpoints.splits.get(dataset=wc.dataset).output[0]
    folds = json.loads(Path(path).read_text())["folds"]
    fold = next((f for f in folds if f.get("name") == wc.fold), None)
    if fold is None:
        raise ValueError(f"{path}: no fold named {wc.fold} (it has "
                         f"{[f.get('name') for f in folds]}). Fix: delete it to build the "
                         "folds again from the config")
    return sorted({s for part in parts for s in fold.get(part) or []})


def fold_files(pattern, parts, graph_only=False):
    """Input function: ``pattern`` (under results/{dataset}/, filled with the job's wildcards
    and each sample) for the fold's ``parts`` samples; none for a model that does not read
    the graph when ``graph_only``."""

    def files(wc):
        if graph_only and wc.model not in GRAPH_MODELS:
            return []
        return [res(wc.dataset, pattern.format(sample=s, **dict(wc.items())))
                for s in fold_samples(wc, parts)]

    return files


def graph_dir(wc):
    """The graph folder for the models that read the graph, None for the others."""
    return res(wc.dataset, "graph") if wc.model in GRAPH_MODELS else None


def model_params(wc):
    """The model's parameters: a change reruns train (params trigger). The device is not one
    of them ($STFLOW_DEVICE); the graph models get graph.k as `k`."""
    params = dict(config["model_params"].get(wc.model, {}))
    if wc.model in GRAPH_MODELS:
        params["k"] = config["graph"]["k"]
    return params


def all_targets():
    targets = []
    for dataset in DATASETS:
        targets.append(res(dataset, "raw/DOWNLOAD_DONE"))  # see rules/download.smk
        targets += [res(dataset, f"tables/{t}") for t in
                    ("metrics.tsv", "summary.tsv", "summary.md", "genes.tsv", "coverage.tsv",
                     "coverage.md", "risk_coverage.tsv")]
        targets += [res(dataset, f"tables/{t}.{ext}") for t in PAPER_TABLES
                    for ext in ("tsv", "md")]
        targets += [res(dataset, "figures/comparison.png"),
                    res(dataset, "figures/risk_coverage.png"),
                    res(dataset, "figures/training_curves.png"),
                    res(dataset, "figures/biomarkers")]
        targets += [res(dataset, f"figures/qc/{s}.png") for s in samples(dataset)]
        # the per-sample artifacts are targets too, so deleting one (e.g. a features store)
        # redoes it and, by modification time, everything downstream of it
        targets += [res(dataset, f"graph/{s}.npz") for s in samples(dataset)]
        targets += [res(dataset, f"features/{e}/{s}.zarr") for e in config["encoders"]
                    for s in samples(dataset)]
    return targets


# --- download ---
def download_inputs(wc):
    """The sample sheet of source sheet: editing it redoes raw/sheet.tsv, the record of the
    rows read. Ingest reads each row's files directly (ingest_manifest), and a changed row
    reruns that sample's ingest only (its params, ingest_options)."""
    entry = DATASETS[wc.dataset]
    return [entry["sheet"]] if entry["source"] == "sheet" else []


def download_settings(wc):
    """Keyword arguments of stflow.data.download.download_source; only these (not model
    settings) rerun the download."""
    entry = DATASETS[wc.dataset]
    settings = {"mirror": entry["mirror"], "task": entry["task"]}
    if entry["source"] == "synthetic":
        sim = config["simulate"]
        settings.update(patients=sim["patients"], sections=sim["sections"], grid=sim["grid"],
                        genes=sim["genes"], seed=sim["seed"])
    else:
        settings["samples"] = samples(wc.dataset)
    if entry["source"] == "sheet":
        settings["sheet"] = entry["sheet"]
    if entry["source"] == "hest" and uses_bench_files():
        # the published splits and gene lists live in hest-bench's task folders, not in
        # HEST-1k: fetch the task folders (their patches are the bench samples' images)
        settings["repo_id"] = "MahmoodLab/hest-bench"
    return settings


def ingest_manifest(wc):
    """The download's manifest (source sheet: the row's own files, which stay in place),
    ancient once the sample is ingested: a new download (one more
    sample, hence new --samples) must not redo the samples already ingested and all their
    patches, features and graphs. Only there: Snakemake skips an ancient input's missing
    outputs downstream of a job that reruns, so a sample still to ingest waits normally."""
    entry = DATASETS[wc.dataset]
    if entry["source"] == "sheet":  # the data stay where the sheet says: read them directly
        return [str(p) for p in sheet_row(entry["sheet"], wc.sample).files()]
    manifest = res(wc.dataset, "raw/MANIFEST.tsv")
    if Path(res(wc.dataset, f"st/{wc.sample}.h5ad")).exists():
        return ancient(manifest)
    return manifest


def ingest_options(wc):
    """Keyword arguments of stflow.data.ingest.ingest_sample: the task, the configured
    patient / image of the sample, and require_patient where patient-stratified folds are
    built from the ingested patients (hest; visium is checked when the DAG is built)."""
    entry = DATASETS[wc.dataset]
    if entry["source"] == "sheet":  # the row itself: a changed row reruns this ingest only
        return {"row": sheet_row(entry["sheet"], wc.sample).to_params()}
    options = {"task": entry["task"],
               "patient": (config["dataset"].get("patients") or {}).get(wc.sample),
               "image": (config["dataset"].get("images") or {}).get(wc.sample),
               "require_patient": (entry["source"] in ("visium", "hest")
                                   and not explicit_folds(wc.dataset) and SCHEME == "patient")}
    if options["patient"] is not None:
        options["patient"] = str(options["patient"])
    return options


# --- splits ---
def bench_splits_input(wc):
    """The download, when the folds come from HEST-bench's splits/ files. Ancient: it orders
    the jobs, and a download rerun for other samples (which restores or rewrites the
    manifest) must not redo the folds; new samples redo them through samples.tsv."""
    return [ancient(res(wc.dataset, "raw/MANIFEST.tsv"))] if bench_splits(wc.dataset) else []


def splits_settings(wc):
    """Keyword arguments of stflow.data.splits.write_splits: explicit folds from the config,
    else HEST-bench's files, else n_folds when configured, else leave one patient out (the
    fold count the DAG was built with); scheme section leaves one section out (the config
    refuses fold settings beside it)."""
    if SCHEME == "section":
        n_folds(wc.dataset)  # refuses a single-sample dataset
        return {"scheme": "section"}
    folds_ = DATASETS[wc.dataset]["folds"]
    if folds_:
        return {"folds": [{"name": f.get("name", f"fold{i}"),
                           **{k: v for k, v in f.items() if k != "name"}}
                          for i, f in enumerate(folds_)]}
    if bench_splits(wc.dataset):
        return {"hest_bench": bench_dir(wc.dataset), "n_folds": n_folds(wc.dataset)}
    if DATASETS[wc.dataset]["n_folds"]:
        return {"n_folds": n_folds(wc.dataset)}
    n_folds(wc.dataset)  # refuses a dataset whose patients are unknown or single
    return {}  # leave one patient out: as many folds as n_folds() counted


# --- embed ---
def encoder_weights_input(wc):
    """The encoder's local checkpoint (encoder_weights), if one is configured: an input, so
    a checkpoint replaced at the same path re-embeds; none for the published weights."""
    path = config["encoder_weights"].get(wc.encoder)
    return [path] if path else []


# --- genes ---
def bench_genes_input(wc):
    """The download, when the genes come from HEST-bench's var_50genes.json (ancient, as
    for the splits; new samples redo the genes through their st/ files)."""
    if config["genes"]["source"] != "hest-bench":
        return []
    return [ancient(res(wc.dataset, "raw/MANIFEST.tsv"))]


def genes_settings(wc):
    """Keyword arguments of stflow.data.genes.select_target_genes: HEST-bench's gene list, a
    configured list, or HEST's highly variable genes (plus genes.include)."""
    if config["genes"]["source"] == "hest-bench":
        return {"bench_dir": bench_dir(wc.dataset)}
    return {"n_top": config["genes"]["n_top"], "listed": config["genes"]["list"] or None,
            "include": config["genes"]["include"] or []}


def fold_genes_settings(wc):
    """Keyword arguments of stflow.data.genes.select_fold_genes (genes.scope fold, which
    the config allows with HEST's protocol only)."""
    return {"n_top": config["genes"]["n_top"], "include": config["genes"]["include"] or []}


def genes_file(wc):
    """The genes a fold trains, predicts and is scored on: the study's genes.json, or under
    genes.scope fold the fold's own genes/{fold}.json, chosen without its test samples."""
    if config["genes"]["scope"] == "fold":
        return res(wc.dataset, f"genes/{wc.fold}.json")
    return res(wc.dataset, "genes.json")


# --- evaluate ---
def runs(dataset, pattern):
    """``pattern`` filled for every encoder x model x seed x fold of the dataset."""
    return [res(dataset, pattern.format(encoder=e, model=m, seed=s, fold=f))
            for e in config["encoders"] for m in config["models"] for s in SEEDS
            for f in folds(dataset)]


def metric_files(wc):
    return runs(wc.dataset, "metrics/{encoder}/{model}/seed{seed}/{fold}.json")


# The paper's experiments as tables (stflow/evaluation/paper_tables.py): tables/{name}.tsv and .md
PAPER_TABLES = ["methods", "priors", "denoisers", "ablations", "inference_time"]


def predict_benchmarks(wc):
    """The predict jobs' benchmark TSVs: the inference time of each test set (Table 5)."""
    return runs(wc.dataset, "benchmarks/predict/{encoder}/{model}/seed{seed}/{fold}.tsv")


def embed_benchmarks(wc):
    """The embed jobs' benchmark TSVs: the image-encoder time of each test section."""
    return [res(wc.dataset, f"benchmarks/embed/{e}/{s}.tsv") for e in config["encoders"]
            for s in samples(wc.dataset)]


# --- figures ---
def prediction_dirs(wc):
    return runs(wc.dataset, "predictions/{encoder}/{model}/seed{seed}/{fold}")


def model_dirs(wc):
    return runs(wc.dataset, "models/{encoder}/{model}/seed{seed}/{fold}")

# Sample lists, folds, seeds and per-rule arguments. Samples come from the config or the
# source's defaults, fold names from the config, the number of patients, or (splits.scheme:
# section) the number of samples, all known when the DAG is built. Which samples a fold
# trains and tests on is known once the splits checkpoint has run (train and predict read
# only their fold's samples, so re-embedding one sample retrains only the folds that see it).
import json
import os
import re
from pathlib import Path

from stflow.data.sheet import check_dataset, sheet_patients, sheet_row, sheet_samples

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
HER2ST_SAMPLES = re.findall(r"data/ST-cnts/([^/.]+)\.tsv\.gz",
                            (REPO / "stflow" / "data" / "sources" / "her2st_sha256.tsv").read_text())
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


def _seeds():
    """config seeds, or [seed] where an older config gives the single-seed shorthand (it
    wins over the default seeds: [0], which a merged config/config.yaml may bring along)."""
    seeds = list(config["seeds"])
    if config.get("seed") is not None:
        if seeds not in ([0], [config["seed"]]):
            raise ValueError(f"config: both seed ({config['seed']}) and seeds ({seeds}) are "
                             "set. Fix: keep seeds only (seed is the shorthand for seeds: "
                             "[seed])")
        return [config["seed"]]
    return seeds


SEEDS = _seeds()


def _check_sample_maps():
    """dataset.patients / dataset.images apply to the sources whose ingest takes them."""
    source = config["dataset"]["source"]
    if config["dataset"].get("patients") and source not in ("visium", "hest"):
        raise ValueError(f"config: dataset.patients does not apply to source '{source}' "
                         "(it knows its patients). Fix: remove dataset.patients")
    if config["dataset"].get("images") and source != "visium":
        raise ValueError(f"config: dataset.images does not apply to source '{source}'. "
                         "Fix: remove dataset.images (only visium takes full-res images)")
    if config["genes"]["source"] == "hest-bench" and source != "hest":
        raise ValueError(f"config: genes.source hest-bench needs dataset.source hest, not "
                         f"'{source}'. Fix: set genes.source: config")
    if config["splits"]["source"] == "hest-bench" and (
            config["splits"]["folds"] or any(t.get("folds") for t in config["tasks"])):
        raise ValueError("config: splits.source hest-bench takes the folds from HEST-bench, "
                         "but folds are listed too. Fix: remove the folds, or set "
                         "splits.source: config")
    if config["splits"]["source"] == "hest-bench" and source != "hest":
        raise ValueError(f"config: splits.source hest-bench needs dataset.source hest, not "
                         f"'{source}'. Fix: set splits.source: config")
    if SCHEME == "section":
        given = [key for key, on in (
            ("splits.folds", config["splits"]["folds"]),
            ("splits.n_folds", config["splits"]["n_folds"]),
            ("splits.source: hest-bench", config["splits"]["source"] == "hest-bench"),
            ("tasks[].folds", any(t.get("folds") for t in config["tasks"])),
            ("tasks[].n_folds", any(t.get("n_folds") for t in config["tasks"]))) if on]
        if given:
            raise ValueError(f"config: splits.scheme section leaves one section out (one fold "
                             f"per sample), but {', '.join(given)} set. Fix: remove them, or "
                             "use splits.scheme: patient")


_check_sample_maps()
check_dataset(config["dataset"])  # source sheet: dataset.sheet, and the sheet itself


def _check_genes_scope():
    """genes.scope fold runs HEST's protocol per fold; a fixed list would be the same list in
    every fold, so asking for it per fold is a mistake worth naming."""
    genes = config["genes"]
    if genes["scope"] != "fold":
        return
    fixed = ("genes.source hest-bench" if genes["source"] == "hest-bench"
             else "genes.list" if genes["list"] else None)
    if fixed:
        undo = "set genes.source: config" if genes["source"] == "hest-bench" else \
            "set genes.list: null"
        raise ValueError(f"config: genes.scope fold chooses each fold's genes by HEST's "
                         f"protocol from its training samples, but {fixed} fixes one list "
                         f"for every fold. Fix: set genes.scope: study (the fixed list, the "
                         f"same in every fold), or {undo} to choose the genes per fold")


_check_genes_scope()


def _check_before_any_job():
    """What would otherwise fail only when its job runs, after hours of other jobs: her2st
    section names (the download knows only its checksum list's) and the mirror folder.
    Encoder and model names are checked by the schema. Not repeated inside cluster jobs,
    whose nodes need not see the mirror (the download runs on the submit host)."""
    entry = config["dataset"]
    if entry["source"] == "her2st" and entry["samples"]:
        unknown = sorted(set(entry["samples"]) - set(HER2ST_SAMPLES))
        if unknown:
            raise ValueError(f"config: dataset.samples lists her2st sections {unknown} that "
                             f"the download does not know. Fix: choose among "
                             f"{HER2ST_SAMPLES} (or set samples: null for all of them)")
    mirror = entry.get("mirror")
    if mirror and not workflow.remote_exec and not Path(mirror).is_dir():
        state = "does not exist" if not Path(mirror).exists() else "is not a folder"
        raise ValueError(f"config: dataset.mirror {mirror!r} {state} (a relative path is "
                         f"read from the working directory, {os.getcwd()}). Fix: give the "
                         "folder that holds the pre-downloaded files, or mirror: null to "
                         "download them")


_check_before_any_job()


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


def n_folds(dataset):
    """Explicit folds, else n_folds, else one fold per patient (leave one patient out);
    splits.scheme section: one fold per sample (leave one section out)."""
    entry = DATASETS[dataset]
    if SCHEME == "section":
        if len(samples(dataset)) < 2:
            raise ValueError(f"config: dataset '{dataset}' has one sample; leave-one-section-"
                             "out needs two. Fix: add samples")
        return len(samples(dataset))
    if entry["folds"]:
        return len(entry["folds"])
    if bench_splits(dataset):
        if not entry["n_folds"]:
            raise ValueError(f"config: splits.source hest-bench needs the fold count of "
                             f"dataset '{dataset}' before download. Fix: set n_folds of the "
                             "task (HEST-bench's number of train_k/test_k files)")
        return entry["n_folds"]
    unmapped = [s for s in samples(dataset) if _patient(entry["source"], s) is None]
    if entry["source"] == "visium" and unmapped:
        raise ValueError(f"config: visium samples {unmapped} of dataset '{dataset}' have no "
                         "patient, so two sections of one patient could land in train and "
                         "test. Fix: map each sample to its patient in dataset.patients "
                         "({sample: patient}), or list explicit splits.folds")
    if entry["n_folds"]:
        return entry["n_folds"]
    patients = {_patient(entry["source"], s) for s in samples(dataset)}
    if None in patients:
        raise ValueError(f"config: cannot tell the patients of dataset '{dataset}' "
                         f"(source {entry['source']}) before ingest. Fix: map each sample "
                         "to its patient in dataset.patients, set splits.n_folds, or list "
                         "splits.folds")
    if len(patients) < 2:
        raise ValueError(f"config: dataset '{dataset}' has one patient; patient-stratified "
                         "folds need two. Fix: add samples of another patient")
    return len(patients)


def folds(dataset):
    """Fold names: the configured ones (fold\\d+, by the schema), else fold0..fold{n-1}."""
    explicit = DATASETS[dataset]["folds"]
    if not explicit:
        return [f"fold{i}" for i in range(n_folds(dataset))]
    names = [f.get("name", f"fold{i}") for i, f in enumerate(explicit)]
    if len(set(names)) != len(names):
        raise ValueError(f"config: the folds of dataset '{dataset}' repeat a name ({names}). "
                         "Fix: give each fold a unique name fold0, fold1, ...")
    return names


def res(dataset, path):
    return f"results/{dataset}/{path}"


def st_files(wc):
    return [res(wc.dataset, f"st/{s}.h5ad") for s in samples(wc.dataset)]


# The models that read the kNN graph (stflow.models.registry.MODELS whose estimator takes `k`): they
# alone depend on graph/ and get graph.k as their `k`, so the graph and the model always
# agree and changing graph.k retrains these models only (tests/test_reruns.py).
GRAPH_MODELS = {"stflow", "stflow_zinb_fitted", "stflow_zero", "stflow_gaussian",
                "stflow_nofm", "stflow_nofa", "stflow_egnn", "spatial_ridge"}


def _check_one_k():
    """One setting for one thing: the neighbour count is graph.k, not also model_params.k."""
    doubled = sorted(m for m, p in config["model_params"].items() if "k" in (p or {}))
    if doubled:
        raise ValueError(f"config: model_params of {doubled} set k beside graph.k "
                         f"({config['graph']['k']}). Fix: remove k from model_params; set "
                         "graph.k, which the graph stage and every model that reads the "
                         "graph use")


_check_one_k()


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

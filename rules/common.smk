# Sample lists, folds and per-rule arguments, all known when the DAG is built (no
# checkpoints): samples come from the config or the source's defaults, folds from the
# config or from the number of patients.
import json
import os
import re
import shlex
import sys
from pathlib import Path

# Rules call the `stflow` command: find it beside the Python that runs Snakemake (a venv
# need not be activated). With --use-conda the rule's environment comes first on PATH.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])


wildcard_constraints:
    dataset=r"[A-Za-z0-9_.-]+",
    sample=r"[A-Za-z0-9_.-]+",
    encoder=r"[A-Za-z0-9_.-]+",
    model=r"[A-Za-z0-9_.-]+",
    fold=r"fold\d+",


HER2ST_SAMPLES = ["B4", "C2", "C3", "C4", "C5", "C6"]
ENV = "../envs/stflow.yaml"
# GPU rules ask for a GPU only when the config wants CUDA; CPU rules never do.
GPU = {"gpu": 1} if config["device"] == "cuda" else {}


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


def samples(dataset):
    """Sample ids of a dataset: from the config, else the source's defaults."""
    entry = DATASETS[dataset]
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
    if source == "synthetic":
        match = re.fullmatch(r"(P\d+)S\d+", sample)
        return match.group(1) if match else None
    if source == "her2st":
        return sample[0]
    return None


def n_folds(dataset):
    """Explicit folds, else n_folds, else one fold per patient (leave one patient out)."""
    entry = DATASETS[dataset]
    if entry["folds"]:
        return len(entry["folds"])
    if entry["n_folds"]:
        return entry["n_folds"]
    patients = {_patient(entry["source"], s) for s in samples(dataset)}
    if None in patients:
        raise ValueError(f"config: cannot tell the patients of dataset '{dataset}' "
                         f"(source {entry['source']}) before ingest. Fix: set splits.n_folds "
                         "or list splits.folds")
    if len(patients) < 2:
        raise ValueError(f"config: dataset '{dataset}' has one patient; patient-stratified "
                         "folds need two. Fix: add samples of another patient")
    return len(patients)


def folds(dataset):
    return [f"fold{i}" for i in range(n_folds(dataset))]


def res(dataset, path):
    return f"results/{dataset}/{path}"


def st_files(wc):
    return [res(wc.dataset, f"st/{s}.h5ad") for s in samples(wc.dataset)]


def feature_stores(wc):
    return [res(wc.dataset, f"features/{wc.encoder}/{s}.zarr") for s in samples(wc.dataset)]


def graph_files(wc):
    return [res(wc.dataset, f"graph/{s}.npz") for s in samples(wc.dataset)]


def model_params_json(wc):
    """The model's parameters as one JSON string: a change reruns train (params trigger)."""
    params = dict(config["model_params"].get(wc.model, {}))
    if wc.model.startswith("stflow") and config["device"] != "auto":
        params.setdefault("device", config["device"])
    return json.dumps(params, sort_keys=True)


def quoted(value):
    return shlex.quote(value)


def all_targets():
    targets = []
    for dataset in DATASETS:
        targets += [res(dataset, f"tables/{t}") for t in
                    ("metrics.tsv", "summary.tsv", "summary.md", "genes.tsv")]
        targets += [res(dataset, "figures/comparison.png"),
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
def download_args(wc):
    """Source-specific arguments; only these (not model settings) rerun the download."""
    entry = DATASETS[wc.dataset]
    args = []
    if entry["source"] == "synthetic":
        sim = config["simulate"]
        args += ["--patients", sim["patients"], "--sections", sim["sections"],
                 "--grid", sim["grid"], "--genes", sim["genes"], "--seed", sim["seed"]]
    else:
        args += ["--samples", *samples(wc.dataset)]
    if entry["mirror"]:
        args += ["--mirror", entry["mirror"]]
    return " ".join(quoted(str(a)) for a in args + task_args(wc))


def task_args(wc):
    """HEST-bench tasks live in their own folder of the source (--task)."""
    task = DATASETS[wc.dataset]["task"]
    return ["--task", task] if task else []



# --- splits ---
def splits_args(wc):
    """Explicit folds from the config (as JSON on a pipe), else --n-folds when configured,
    else leave one patient out (the fold count the DAG was built with)."""
    folds_ = DATASETS[wc.dataset]["folds"]
    if folds_:
        named = [{"name": f.get("name", f"fold{i}"),
                  **{k: v for k, v in f.items() if k != "name"}}
                 for i, f in enumerate(folds_)]
        text = json.dumps({"scheme": "patient", "folds": named})
        return f"--folds-json <(printf '%s' {quoted(text)})"
    if DATASETS[wc.dataset]["n_folds"]:
        return f"--n-folds {n_folds(wc.dataset)}"
    n_folds(wc.dataset)  # refuses a dataset whose patients are unknown or single
    return ""  # leave one patient out: as many folds as n_folds() counted


# --- genes ---
def genes_args(wc):
    listed = config["genes"]["list"]
    if listed:
        return "--list " + " ".join(quoted(g) for g in listed)
    return ""


# --- embed ---
def weights_arg(wc):
    path = config["encoder_weights"].get(wc.encoder)
    return f"--weights {quoted(path)}" if path else ""


# --- evaluate ---
def metric_files(wc):
    return [res(wc.dataset, f"metrics/{e}/{m}/{f}.json") for e in config["encoders"]
            for m in config["models"] for f in folds(wc.dataset)]


# --- figures ---
def prediction_dirs(wc):
    return [res(wc.dataset, f"predictions/{e}/{m}/{f}") for e in config["encoders"]
            for m in config["models"] for f in folds(wc.dataset)]


def model_dirs(wc):
    return [res(wc.dataset, f"models/{e}/{m}/{f}") for e in config["encoders"]
            for m in config["models"] for f in folds(wc.dataset)]

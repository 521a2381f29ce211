"""The hest source: HEST-1k (whole slides) and HEST-Benchmark (patches) from the HF hub.

Two layouts are read natively, as the hub publishes them:

- HEST-1k (``MahmoodLab/hest``): ``st/{id}.h5ad`` (raw counts, ``obsm["spatial"]`` level-0
  pixels), ``wsis/{id}.tif`` and ``metadata/{id}.json`` (``pixel_size_um_estimated``,
  ``patient``).
- HEST-Benchmark (``MahmoodLab/hest-bench``), per task folder (e.g. ``IDC/``):
  ``adata/{id}.h5ad``, ``patches/{id}.h5`` (224 px patches at 0.5 µm/px, no whole slide),
  ``splits/{train,test}_{k}.csv`` (``sample_id``, ``patches_path``, ``expr_path``) and
  ``var_50genes.json``. A bench sample's image is its patch file.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from stflow.catalogue import HEST_BENCH_REPO
from stflow.choices import HEST_REPO
from stflow.data.sources.fetch import copy_tree
from stflow.data.sources.ingest_form import IngestedSample
from stflow.data.sources.options import IngestOptions, refuse_sheet_row
from stflow.errors import input_error

log = logging.getLogger(__name__)

BENCH_REPO = HEST_BENCH_REPO
DEFAULT_INTER_SPOT_UM = 100.0  # Visium centre-to-centre distance, for bench slides without metadata
GENES_FILE = "var_50genes.json"


def sample_files(sample: str, task: str | None = None) -> list[str]:
    """The files the readers need of one sample: HEST-1k's, and the bench task's if given.

    Exact names, not globs: HEST-1k also holds patches/, cellvit_seg/, transcripts/ ... of
    every sample (many GB) that no stage reads.
    """
    files = [f"st/{sample}.h5ad", f"wsis/{sample}.tif", f"metadata/{sample}.json"]
    if task:
        files += [f"{task}/adata/{sample}.h5ad", f"{task}/patches/{sample}.h5"]
    return files


def allow_patterns(repo_id: str, samples: list[str] | None, task: str | None) -> list[str] | None:
    """Hub (or mirror) file patterns for the requested samples and task; None = all."""
    task_files = [f"{task}/splits/*", f"{task}/{GENES_FILE}"] if task else []
    if repo_id == BENCH_REPO:
        if not task:
            return None
        if not samples:
            return [f"{task}/*"]
        return task_files + [f for s in samples for f in sample_files(s, task)[3:]]
    if not samples:
        return None
    # with a task, a mirror may be laid out either way: take the bench files too
    return [f for s in samples for f in sample_files(s, task)] + task_files


def download(raw_dir: str | Path, repo_id: str = HEST_REPO, samples: list[str] | None = None,
             task: str | None = None, mirror: str | Path | None = None) -> Path:
    """Fill ``raw_dir`` from a pre-downloaded ``mirror`` or with ``snapshot_download``.

    The token comes from ``HF_TOKEN`` (HEST is gated) and is never logged.
    """
    raw_dir = Path(raw_dir)
    patterns = allow_patterns(repo_id, samples, task)
    if mirror is not None:
        return copy_tree(Path(mirror), raw_dir, patterns,
                         "HEST-1k's st/, wsis/, metadata/ and/or hest-bench's task folders")
    needed = [f for s in samples or [] for f in sample_files(s, task if repo_id == BENCH_REPO
                                                            else None)]
    if repo_id == BENCH_REPO:
        needed = [f for f in needed if f.startswith(f"{task}/")] + [f"{task}/{GENES_FILE}"]
    if samples and all((raw_dir / f).is_file() for f in needed):
        log.info("%s already holds the requested samples; not downloading", raw_dir)
        return raw_dir
    from huggingface_hub import snapshot_download

    log.info("downloading %s (patterns %s) into %s", repo_id, patterns, raw_dir)
    try:
        snapshot_download(repo_id=repo_id, repo_type="dataset", allow_patterns=patterns,
                          local_dir=str(raw_dir), token=os.environ.get("HF_TOKEN"))
    except Exception as err:  # hub errors come in many types; all mean the same to the user
        raise input_error(repo_id, f"download failed ({type(err).__name__}: {err})",
                          "accept the dataset terms on huggingface.co, export HF_TOKEN, check the "
                          "network, or pass --mirror-dir with a pre-downloaded copy") from err
    return raw_dir


def full_layout_paths(raw_dir: Path, sample: str) -> tuple[Path, Path, Path]:
    """(st h5ad, whole-slide tif, metadata json) of a HEST-1k sample."""
    return (raw_dir / "st" / f"{sample}.h5ad", raw_dir / "wsis" / f"{sample}.tif",
            raw_dir / "metadata" / f"{sample}.json")


def task_dir(raw_dir: str | Path, config: dict | None = None) -> Path:
    """The bench task folder: ``raw_dir/{config["task"]}`` or ``raw_dir`` itself."""
    raw_dir = Path(raw_dir)
    task = (config or {}).get("task")
    return raw_dir / task if task else raw_dir


def read_options(sample: str, options: IngestOptions) -> dict:
    """The bench task, µm/px, spot pitch and patient; the image comes with the download."""
    refuse_sheet_row("hest", options)
    if options.image:
        raise input_error("stflow ingest", "--image does not apply to hest",
                          "drop it; the sample's image comes with the download")
    return {"config": {"task": options.task, "mpp": options.mpp,
                       "inter_spot_um": options.inter_spot_um,
                       "patients": {sample: options.patient} if options.patient else {},
                       "require_patient": options.require_patient}}


def list_samples(raw_dir: str | Path, config: dict | None = None) -> list[str]:
    """Sample ids of the HEST-1k layout (``st/``) or else of the bench layout (``adata/``)."""
    raw_dir = Path(raw_dir)
    full = sorted(p.stem for p in (raw_dir / "st").glob("*.h5ad"))
    found = full or sorted(p.stem for p in (task_dir(raw_dir, config) / "adata").glob("*.h5ad"))
    if not found:
        raise input_error(raw_dir, "holds neither st/*.h5ad (HEST-1k) nor adata/*.h5ad (bench)",
                          "run `stflow download --source hest` into it first")
    wanted = (config or {}).get("samples")
    return [s for s in found if not wanted or s in wanted]


def read_metadata(path: Path) -> dict:
    """A HEST metadata json (one sample's row of the HEST table)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise input_error(path, f"cannot read HEST metadata ({err})",
                          "download the sample's metadata/{id}.json again") from err


def metadata_mpp(meta: dict, where: Path) -> float:
    """µm/px of the level-0 image: HEST's estimate, else the value embedded in the slide."""
    for key in ("pixel_size_um_estimated", "pixel_size_um_embedded"):
        value = meta.get(key)
        if isinstance(value, int | float) and math.isfinite(value) and value > 0:
            return float(value)
    raise input_error(where, "has no usable pixel_size_um_estimated / pixel_size_um_embedded",
                      "give the sample's µm/px in the config (hest.mpp)")


def metadata_patient(meta: dict, sample: str, config: dict | None = None,
                     where: Path | str = "") -> str:
    """The patient id: ``config["patients"][sample]``, else the metadata's.

    Without either, the sample is its own patient, which leaks when two sections of one
    patient exist; so ``config["require_patient"]`` (set by the workflow when it builds
    patient-stratified folds) refuses that instead.
    """
    config = config or {}
    mapped = (config.get("patients") or {}).get(sample)
    if mapped:
        return str(mapped)
    patient = meta.get("patient")
    if isinstance(patient, str) and patient.strip():
        return patient.strip()
    if config.get("require_patient"):
        raise input_error(where or sample, f"sample {sample} has no patient in its metadata, so "
                          "patient-stratified folds could put two sections of one patient in "
                          "train and test", "map it to its patient in the config "
                          "(dataset.patients: {sample: patient}; `stflow ingest --patient`), "
                          "or give explicit folds (splits.folds or splits.source: hest-bench)")
    log.warning("%s: no patient in metadata; treating the sample as its own patient", sample)
    return sample


def spacing_mpp(spatial: np.ndarray, inter_spot_um: float, where: Path) -> float:
    """µm/px from the median nearest-neighbour spot distance and the known spot pitch."""
    from scipy.spatial import cKDTree

    unique = np.unique(np.round(spatial, 3), axis=0)
    if len(unique) < 2:
        raise input_error(where, "fewer than 2 distinct spot positions, so µm/px is unknown",
                          "give the sample's µm/px in the config (hest.mpp) or its metadata json")
    distances, _ = cKDTree(unique).query(unique, k=2)
    pitch = float(np.median(distances[:, 1]))
    return inter_spot_um / pitch


def read_expression(path: Path) -> tuple[ad.AnnData, np.ndarray]:
    """Counts and level-0 spot centres of a HEST h5ad."""
    if not path.is_file():
        raise input_error(path, "expression h5ad is missing", "download the sample again")
    try:
        adata = ad.read_h5ad(path)
    except Exception as err:
        raise input_error(path, f"cannot read h5ad ({type(err).__name__}: {err})",
                          "download the sample again") from err
    if "spatial" in adata.obsm:
        spatial = np.asarray(adata.obsm["spatial"], dtype=np.float64)[:, :2]
    elif {"pxl_col_in_fullres", "pxl_row_in_fullres"} <= set(adata.obs.columns):
        spatial = adata.obs[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(np.float64)
    else:
        raise input_error(path, "has neither obsm['spatial'] nor pxl_col/row_in_fullres",
                          "use the HEST h5ad as published")
    obs = pd.DataFrame(index=pd.Index(adata.obs_names.astype(str), name=None))
    if "in_tissue" in adata.obs:
        obs["in_tissue"] = adata.obs["in_tissue"].astype(bool).to_numpy()
    counts = ad.AnnData(X=adata.X, obs=obs, var=pd.DataFrame(index=adata.var_names.astype(str)))
    return counts, spatial


def read_sample(raw_dir: str | Path, sample: str, config: dict | None = None) -> IngestedSample:
    """One HEST sample in the common ingest form (HEST-1k layout first, else bench)."""
    raw_dir = Path(raw_dir)
    config = config or {}
    st_path, wsi_path, meta_path = full_layout_paths(raw_dir, sample)
    if st_path.is_file():
        meta = read_metadata(meta_path)
        counts, spatial = read_expression(st_path)
        mpp = float(config["mpp"]) if config.get("mpp") else metadata_mpp(meta, meta_path)
        return IngestedSample(sample=sample,
                              patient=metadata_patient(meta, sample, config, meta_path),
                              counts=counts, spatial_px=spatial, image_path=wsi_path, mpp=mpp,
                              source="hest")
    bench = task_dir(raw_dir, config)
    expr_path, patch_path = bench / "adata" / f"{sample}.h5ad", bench / "patches" / f"{sample}.h5"
    if not expr_path.is_file():
        raise input_error(raw_dir, f"sample {sample} is in neither st/ (HEST-1k) nor "
                          f"{expr_path.parent} (bench)", "download it, or check the sample id")
    counts, spatial = read_expression(expr_path)
    meta = read_metadata(meta_path) if meta_path.is_file() else {}
    if config.get("mpp"):
        mpp = float(config["mpp"])
    elif meta:
        mpp = metadata_mpp(meta, meta_path)
    else:
        inter_spot = float(config.get("inter_spot_um", DEFAULT_INTER_SPOT_UM))
        mpp = spacing_mpp(spatial, inter_spot, expr_path)
        log.warning("%s: no metadata; µm/px %.4f estimated from a %.0f µm spot pitch",
                    sample, mpp, inter_spot)
    return IngestedSample(sample=sample, patient=metadata_patient(meta, sample, config, meta_path),
                          counts=counts,
                          spatial_px=spatial, image_path=patch_path, mpp=mpp, source="hest")


def _split_ids(path: Path) -> list[str]:
    """``sample_id`` column of one bench split csv, checked against the bench columns."""
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise input_error(path, f"cannot read split ({err})", "download the bench task again") from err
    missing = {"sample_id", "patches_path", "expr_path"} - set(frame.columns)
    if missing:
        raise input_error(path, f"lacks columns {sorted(missing)}",
                          "use the splits/ csv files of HEST-Benchmark")
    return [str(s) for s in frame["sample_id"]]


def read_bench_splits(bench_dir: str | Path, val_per_fold: int = 1) -> dict:
    """HEST-bench ``splits/`` as splits.json: one fold per train_k/test_k pair.

    HEST's folds are patient-stratified. Validation must come from training patients, so the
    last ``val_per_fold`` training samples of a fold move to ``val`` when at least one training
    sample remains; ``val_per_fold=0`` keeps HEST's lists exactly.
    """
    split_dir = Path(bench_dir) / "splits"
    pairs = {}
    for path in split_dir.glob("*.csv"):
        match = re.fullmatch(r"(train|test)_(\d+)\.csv", path.name)
        if match:
            pairs.setdefault(int(match[2]), {})[match[1]] = path
    if not pairs:
        raise input_error(split_dir, "no train_k.csv / test_k.csv files",
                          "download the bench task (it ships splits/)")
    folds = []
    for k in sorted(pairs):
        if set(pairs[k]) != {"train", "test"}:
            raise input_error(split_dir, f"fold {k} lacks its {({'train', 'test'} - set(pairs[k])).pop()}"
                              f"_{k}.csv", "download the bench task again")
        train, test = _split_ids(pairs[k]["train"]), _split_ids(pairs[k]["test"])
        if set(train) & set(test):
            raise input_error(pairs[k]["test"], f"samples {sorted(set(train) & set(test))} are in "
                              "both train and test", "use the published HEST splits")
        n_val = val_per_fold if len(train) > val_per_fold else 0
        val = train[len(train) - n_val:] if n_val else []
        folds.append({"name": f"fold{k}", "train": train[: len(train) - n_val], "val": val,
                      "test": test})
    return {"scheme": "patient", "folds": folds}


def read_bench_genes(bench_dir: str | Path, name: str = GENES_FILE) -> dict:
    """The bench gene list (``var_50genes.json``) in genes.json form."""
    path = Path(bench_dir) / name
    try:
        genes = json.loads(path.read_text())["genes"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise input_error(path, f"cannot read the gene list ({err!r})",
                          "download the bench task again (it ships var_50genes.json)") from err
    if not genes or not all(isinstance(g, str) for g in genes) or len(set(genes)) != len(genes):
        raise input_error(path, "gene list is empty, not strings, or has duplicates",
                          "use the published var_50genes.json")
    return {"genes": list(genes), "protocol": "list", "n_top": len(genes)}

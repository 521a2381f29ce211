"""Do the intervals cover a new patient? The simulated cohort preset (config/cohort.yaml:
6 patients x 2 sections whose expression and stain differ as much as real patients'),
through the whole pipeline, calibrated within the training patients and across patients.

    .venv/bin/python benchmarks/cohort_calibration.py --workdir /tmp/cohort-bench \\
        [--model stflow --model spatial_ridge --model ridge] [--rotations 3] [--cores 2] \\
        [--stflow-epochs 100]

1. Leave one patient out, run four times on the same cohort (:data:`CALIBRATIONS`):
   ``intervals.calibration: within`` (each fold validates and calibrates on a section of a
   training patient) and ``patient`` with ``calibration_patients`` 1, 3 and 5 (on a whole
   training patient it never trains on, and on up to 2 or 4 more, each predicted by one more
   fit without it). Prints, per model, the 90 % coverage
   of each held-out patient (``tables/coverage.tsv``, the fold's test spots pooled), the
   mean, the lowest fold and the 10th percentile over genes.
2. The deployed model on a patient left out of the whole study, ``--rotations`` times: a
   study of the other five patients (its folds, then its final model, calibrated on its
   out-of-fold predictions), applied to the left-out patient's sections; prints that
   patient's 90 % coverage per model.

Each run is Snakemake on the repository's Snakefile in a folder of ``--workdir`` (reused:
a second call redoes nothing that is done). The search is off (``search: {stflow: null}``)
and ``--stflow-epochs`` caps STFlow's epochs (early stopping after 20 as usual) to keep the
CPU time in hours, not days.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
LEVEL = 0.9
ENCODER = "efficientnet_lite0"
# each run's intervals settings: within the training patients; the validation patient
# alone; it and up to two more training patients (the default); every training patient
CALIBRATIONS = {
    "within": {"calibration": "within"},
    "patient": {"calibration": "patient", "calibration_patients": 1},
    "patients3": {"calibration": "patient", "calibration_patients": 3},
    "patients5": {"calibration": "patient", "calibration_patients": 5},
}


def snakemake(workdir: Path, overlay: dict, *targets: str, cores: int) -> None:
    """The pipeline with config/cohort.yaml and ``overlay`` in ``workdir``; stops on failure."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "bench.yaml").write_text(yaml.safe_dump(overlay, sort_keys=False))
    command = [sys.executable, "-m", "snakemake", *targets, "--snakefile",
               str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", str(cores),
               "--configfile", str(REPO / "config" / "cohort.yaml"), str(workdir / "bench.yaml")]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    (workdir / "snakemake.log").write_text(done.stdout + done.stderr)
    if done.returncode:
        sys.exit(f"snakemake failed in {workdir}: see {workdir / 'snakemake.log'}\n"
                 + done.stderr[-2000:])


def fold_coverage(coverage_tsv: Path) -> pd.DataFrame:
    """Per model and fold (seed 0): the 90 % coverage of the pooled test spots and its
    gene p10, with the calibration each fold recorded."""
    table = pd.read_csv(coverage_tsv, sep="\t")
    rows = table[(table["slide"] == "all") & np.isclose(table["level"], LEVEL)]
    return rows[["model", "fold", "calibration", "coverage", "gene_coverage_p10"]]


def print_folds(label: str, rows: pd.DataFrame) -> None:
    for model, group in rows.groupby("model", sort=False):
        folds = " ".join(f"{c:.3f}" for c in group["coverage"])
        print(f"{label:8s} {model:14s} folds [{folds}] mean {group['coverage'].mean():.3f} "
              f"min {group['coverage'].min():.3f} gene p10 {group['gene_coverage_p10'].mean():.3f}"
              f" ({', '.join(sorted(set(group['calibration'])))})")


def left_out_coverage(results: Path, model: str, samples: list[str]) -> float:
    """The final model of ``results`` on ``samples`` (never in its study): pooled 90 %
    coverage of their spots."""
    from stflow.data.loading import load_slides
    from stflow.intervals.calibration import apply_calibration, load_calibration
    from stflow.models.model_specs import reads_graph
    from stflow.models.registry import load_estimator

    final = results / "models" / ENCODER / model / "final"
    genes = json.loads((final / "params.json").read_text())["genes"]
    graph = results / "graph" if reads_graph(model) else None
    slides = load_slides(samples, genes, results / "st", results / "features" / ENCODER, graph)
    calibration = load_calibration(final)
    inside = []
    for slide, prediction in zip(slides, load_estimator(final, "cpu").predict(slides),
                                 strict=True):
        intervals = apply_calibration(calibration, slide.features, prediction, LEVEL)
        inside.append((slide.targets >= intervals.lower) & (slide.targets <= intervals.upper))
    return float(np.concatenate(inside).mean())


def rotation(workdir: Path, patient: int, models: list[str], settings: dict, cores: int
             ) -> dict[str, float]:
    """The study without patient P{patient}, its final models, on that patient's sections."""
    name = f"cohort_wo_P{patient}"
    left_out = [f"P{patient}S1", f"P{patient}S2"]
    samples = [f"P{p}S{s}" for p in range(1, 7) for s in (1, 2) if p != patient]
    overlay = {"dataset": {"name": name, "source": "synthetic", "mirror": None,
                           "samples": samples + left_out},
               "models": models, **settings,
               "intervals": {"level": LEVEL, "calibration": "patient"}}
    # the study (folds, final model) lists its own sections; the left-out ones are listed
    # only to ingest and embed them for the test
    study = {**overlay, "dataset": {**overlay["dataset"], "samples": samples}}
    results = workdir / name / "results" / name
    extra = [f"results/{name}/{kind}/{s}{suffix}" for s in left_out
             for kind, suffix in (("st", ".h5ad"), (f"features/{ENCODER}", ".zarr"),
                                  ("graph", ".npz"))]
    snakemake(workdir / name, study, "final_models", cores=cores)
    snakemake(workdir / name, overlay, *extra, cores=cores)
    return {model: left_out_coverage(results, model, left_out) for model in models}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--model", action="append", dest="models")
    parser.add_argument("--rotations", type=int, default=3)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--stflow-epochs", type=int, default=100)
    args = parser.parse_args()
    models = args.models or ["stflow", "spatial_ridge", "ridge"]
    settings = {"search": {"stflow": None},
                "model_params": {"stflow": {"epochs": args.stflow_epochs, "patience": 20}}}
    for label, intervals in CALIBRATIONS.items():
        workdir = args.workdir / label
        snakemake(workdir, {"models": models, **settings,
                            "intervals": {"level": LEVEL, **intervals}},
                  "results/cohort/tables/coverage.tsv", cores=args.cores)
        print_folds(label, fold_coverage(workdir / "results/cohort/tables/coverage.tsv"))
    for patient in range(1, args.rotations + 1):
        found = rotation(args.workdir, patient, models, settings, args.cores)
        print(f"deployed, P{patient} left out: " +
              " ".join(f"{m} {c:.3f}" for m, c in found.items()), flush=True)


if __name__ == "__main__":
    main()

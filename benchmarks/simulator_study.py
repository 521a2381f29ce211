"""STFlow against the baselines on simulated sections with oracle features, where the truth
is known: overall and on receiver genes (driven by their neighbours), with the simulator's
spatial interactions on and off (the control where spatial context should not help).

    python benchmarks/simulator_study.py --model stflow --model spatial_ridge --model ridge

Leave-one-patient-out over 3 simulated patients × 2 sections; validation is one section of
a training patient (as the splits stage picks it); prints one JSON line per fold and a
summary per model and setting.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from stflow.data.simulator import simulate
from stflow.data.simulator.oracle import gene_roles, oracle_slides
from stflow.data.splits import patient_folds
from stflow.evaluation.metrics import pearson_per_gene
from stflow.models.registry import build_estimator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--params", action="append", default=[], help="MODEL=JSON")
    parser.add_argument("--grid", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--interactions", choices=["on", "off", "both"], default="both")
    args = parser.parse_args()
    params = {}
    for item in args.params:
        name, _, text = item.partition("=")
        params[name] = json.loads(text)
    settings = ["on", "off"] if args.interactions == "both" else [args.interactions]
    for setting in settings:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "raw"
            simulate(root, n_patients=3, sections_per_patient=2, grid=args.grid,
                     seed=args.seed, interactions=setting == "on")
            slides = oracle_slides(root, seed=args.seed)
            receivers = gene_roles(root) == "receiver"
        patients = {s: s.split("S")[0] for s in slides}
        folds = patient_folds(patients, seed=args.seed)
        for model in args.model:
            overall, receiver = [], []
            for fold in folds:
                estimator = build_estimator(model, params.get(model, {}), seed=args.seed,
                                            device="cpu")
                estimator.fit([slides[s] for s in fold["train"]],
                              [slides[s] for s in fold["val"]])
                test = [slides[s] for s in fold["test"]]
                truth = np.concatenate([s.targets for s in test])
                per_gene = pearson_per_gene(truth, np.concatenate(estimator.predict(test)))
                overall.append(float(np.nanmean(per_gene)))
                receiver.append(float(np.nanmean(per_gene[receivers])))
                print(json.dumps({"interactions": setting, "model": model,
                                  "fold": fold["name"], "overall": round(overall[-1], 4),
                                  "receivers": round(receiver[-1], 4)}), flush=True)
            print(json.dumps({"interactions": setting, "model": model,
                              "overall": round(float(np.mean(overall)), 4),
                              "overall_fold_std": round(float(np.std(overall)), 4),
                              "receivers": round(float(np.mean(receiver)), 4),
                              "receivers_fold_std": round(float(np.std(receiver)), 4)}),
                  flush=True)


if __name__ == "__main__":
    main()

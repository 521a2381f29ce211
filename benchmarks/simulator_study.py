"""STFlow against the baselines on simulated sections with oracle features, where the truth
is known: overall and on receiver genes (driven by their neighbours), with the simulator's
spatial interactions on and off (the control where spatial context should not help).

    python benchmarks/simulator_study.py --model stflow --model spatial_ridge --model ridge

``--model oracle`` scores the simulator's true means (the ceiling); ``--search
MODEL=JSON`` chooses a model's settings on each fold's validation section.

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

from stflow.data.dataset import Slide
from stflow.data.simulator import simulate
from stflow.data.simulator.oracle import gene_roles, oracle_slides
from stflow.data.splits import patient_folds
from stflow.evaluation.hest_metric import pearson_per_gene
from stflow.models.search import validation_score
from stflow.training.fit import fit_or_search


def parse_assignment(item: str) -> tuple[str, dict]:
    """``MODEL=JSON`` → (model, object)."""
    name, _, text = item.partition("=")
    return name, json.loads(text)


ORACLE = "oracle"  # the simulator's own mean: what no model can beat on average


def true_means(root: Path, slides: dict[str, Slide]) -> dict[str, np.ndarray]:
    """log1p of each spot's true ZINB mean, (1 − π)·μ, in the slides' spot order."""
    means = {}
    for sample, slide in slides.items():
        truth = np.load(root / "truth" / f"{sample}.npz")
        row = {barcode: i for i, barcode in enumerate(truth["barcode"])}
        order = [row[b] for b in slide.barcodes]
        means[sample] = np.log1p(truth["mean"][order] * (1 - truth["pi"]))
    return means


class TrueMeans:
    """Predicts the simulator's true means (``--model oracle``)."""

    def __init__(self, means: dict[str, np.ndarray]) -> None:
        self.means = means

    def predict(self, slides: list[Slide]) -> list[np.ndarray]:
        return [self.means[s.sample] for s in slides]


def best_epoch(history: list[dict[str, float]]) -> int | None:
    """The epoch whose validation Pearson was kept (None when nothing was validated)."""
    scored = [row for row in history if np.isfinite(row.get("val_pearson", np.nan))]
    return int(max(scored, key=lambda row: row["val_pearson"])["epoch"]) if scored else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--params", action="append", default=[], help="MODEL=JSON")
    parser.add_argument("--search", action="append", default=[],
                        help='MODEL=JSON search ({"trials": 8, "space": {...}}), repeatable')
    parser.add_argument("--grid", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--interactions", choices=["on", "off", "both"], default="both")
    args = parser.parse_args()
    params = dict(parse_assignment(item) for item in args.params)
    searches = dict(parse_assignment(item) for item in args.search)
    settings = ["on", "off"] if args.interactions == "both" else [args.interactions]
    for setting in settings:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "raw"
            simulate(root, n_patients=3, sections_per_patient=2, grid=args.grid,
                     seed=args.seed, interactions=setting == "on")
            slides = oracle_slides(root, seed=args.seed)
            receivers = gene_roles(root) == "receiver"
            oracle_means = true_means(root, slides)
        patients = {s: s.split("S")[0] for s in slides}
        folds = patient_folds(patients, seed=args.seed)
        for model in args.model:
            overall, receiver = [], []
            for fold in folds:
                train = [slides[s] for s in fold["train"]]
                val = [slides[s] for s in fold["val"]]
                chosen, history = None, []
                if model == ORACLE:
                    estimator = TrueMeans(oracle_means)
                else:
                    estimator, history, result = fit_or_search(
                        model, params.get(model), searches.get(model), train, val, args.seed,
                        "cpu")
                    chosen = result.chosen if result else None
                test = [slides[s] for s in fold["test"]]
                truth = np.concatenate([s.targets for s in test])
                per_gene = pearson_per_gene(truth, np.concatenate(estimator.predict(test)))
                overall.append(float(np.nanmean(per_gene)))
                receiver.append(float(np.nanmean(per_gene[receivers])))
                print(json.dumps({"interactions": setting, "model": model,
                                  "fold": fold["name"], "overall": round(overall[-1], 4),
                                  "receivers": round(receiver[-1], 4),
                                  "best_val_pearson": (round(validation_score(history), 4)
                                                       if history else None),
                                  "best_epoch": best_epoch(history), "chosen": chosen}),
                      flush=True)
            print(json.dumps({"interactions": setting, "model": model,
                              "overall": round(float(np.mean(overall)), 4),
                              "overall_fold_std": round(float(np.std(overall)), 4),
                              "receivers": round(float(np.mean(receiver)), 4),
                              "receivers_fold_std": round(float(np.std(receiver)), 4)}),
                  flush=True)


if __name__ == "__main__":
    main()

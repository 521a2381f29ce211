"""Score registry models on a finished her2st results folder, per fold and per seed.

Reads the pipeline's artifacts (splits.json, st/, features/, graph/), builds each model
through the registry with the given parameters, fits it on the fold's train/validation
samples (the test samples are never read before prediction) and prints the HEST metric per
fold. It is how the figures in docs/results.md were measured:

    python benchmarks/her2st_study.py --results results/her2st \
        --model stflow --model spatial_ridge --seeds 0 1 2

``--params MODEL='{"epochs": 50}'`` sets a model's parameters; ``--genes hest`` (default)
scores HEST's 50 highly variable genes without the biomarkers genes.json adds as extra targets.
``--genes-scope fold`` chooses them per fold from its training and validation samples only
(the workflow's ``genes.scope: fold``; with ``--genes json`` it reads ``genes/{fold}.json``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from stflow.crossval.inputs import read_fold
from stflow.data.dataset import Slide
from stflow.data.genes import hest_genes as hest_top_genes
from stflow.data.loading import load_slides, read_genes
from stflow.evaluation.hest_metric import fold_metrics
from stflow.models.search import validation_score
from stflow.training.fit import fit_or_search, refit_estimator


def parse_assignment(item: str) -> tuple[str, dict]:
    """``MODEL=JSON`` → (model, object)."""
    name, _, text = item.partition("=")
    return name, json.loads(text)


def hest_genes(results: Path, samples: list[str], measured_in: list[str] = ()) -> list[str]:
    """HEST's top-50 genes of these samples (genes.json may carry extra biomarkers), among
    those ``measured_in`` samples measure too."""
    return list(hest_top_genes([results / "st" / f"{s}.h5ad" for s in samples], n_top=50,
                               measured_in=[results / "st" / f"{s}.h5ad" for s in measured_in]))


def genes_per_fold(results: Path, source: str, scope: str, samples: list[str],
                   parts: dict[str, dict[str, list[str]]]) -> dict[str, list[str]]:
    """fold → its target genes: one list from all the study's ``samples`` (``scope`` study,
    as HEST does), or each fold's own from its training and validation samples only
    (``scope`` fold). ``source`` hest runs HEST's protocol here, json reads the workflow's
    genes.json or genes/{fold}.json."""
    if scope == "study":
        genes = (hest_genes(results, samples) if source == "hest"
                 else read_genes(results / "genes.json", biomarkers=False))
        return dict.fromkeys(parts, genes)
    if source == "json":
        return {fold: read_genes(results / "genes" / f"{fold}.json", biomarkers=False)
                for fold in parts}
    return {fold: hest_genes(results, sorted(p["train"] + p["val"]), sorted(p["test"]))
            for fold, p in parts.items()}


def load_study_slides(results: Path, encoder: str, samples: list[str], genes: list[str],
                      slide_norm: bool) -> dict[str, Slide]:
    """sample → Slide with ``genes`` as targets, features standardised per slide if asked."""
    slides = {s.sample: s for s in load_slides(
        samples, genes, results / "st", results / "features" / encoder, results / "graph")}
    if slide_norm:
        for slide in slides.values():
            mean, std = slide.features.mean(0), slide.features.std(0) + 1e-6
            slide.features = ((slide.features - mean) / std).astype(np.float32)
    return slides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results/her2st"))
    parser.add_argument("--encoder", default="efficientnet_lite0")
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--params", action="append", default=[],
                        help="MODEL=JSON parameters (repeatable)")
    parser.add_argument("--search", action="append", default=[],
                        help='MODEL=JSON search ({"trials": 8, "space": {...}}), repeatable')
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--folds", nargs="+", default=None)
    parser.add_argument("--genes", choices=["hest", "json"], default="hest")
    parser.add_argument("--genes-scope", choices=["study", "fold"], default="study",
                        help="study: one gene list from every sample; fold: each fold's from "
                        "its training and validation samples only")
    parser.add_argument("--tag", default="", help="label printed with each row")
    parser.add_argument("--refit", action="store_true",
                        help="retrain on train + validation with the validated choice fixed")
    parser.add_argument("--slide-norm", action="store_true",
                        help="standardise each slide's features by its own mean and std")
    args = parser.parse_args()

    params = dict(parse_assignment(item) for item in args.params)
    searches = dict(parse_assignment(item) for item in args.search)
    splits = args.results / "splits.json"
    all_folds = [f["name"] for f in json.loads(splits.read_text())["folds"]]
    samples = sorted({s for f in json.loads(splits.read_text())["folds"]
                      for part in ("train", "val", "test") for s in f[part]})
    parts = {fold: read_fold(splits, fold) for fold in args.folds or all_folds}
    genes_of = genes_per_fold(args.results, args.genes, args.genes_scope, samples, parts)
    loaded: dict[tuple[str, ...], dict[str, Slide]] = {}
    for genes in genes_of.values():
        if tuple(genes) not in loaded:
            loaded[tuple(genes)] = load_study_slides(args.results, args.encoder, samples, genes,
                                                     args.slide_norm)
    for model in args.model:
        scores = []
        for seed in args.seeds:
            per_fold = []
            for fold in parts:
                genes, slides = genes_of[fold], loaded[tuple(genes_of[fold])]
                start = time.perf_counter()
                train = [slides[s] for s in parts[fold]["train"]]
                val = [slides[s] for s in parts[fold]["val"]]
                estimator, rows, result = fit_or_search(
                    model, params.get(model), searches.get(model), train, val, seed, "cpu")
                validated = round(validation_score(rows), 4)
                chosen = result.chosen if result else None
                if args.refit:
                    estimator, _, fixed = refit_estimator(
                        model, estimator, rows,
                        {**params.get(model, {}), **{k: v for k, v in (chosen or {}).items()
                                                     if k != "val_pearson"}},
                        train + val, seed, "cpu")
                    chosen = {**(chosen or {}), "refit": fixed}
                test = [slides[s] for s in parts[fold]["test"]]
                preds = estimator.predict(test)
                metrics = fold_metrics([s.targets for s in test], preds, genes,
                                       [s.sample for s in test])
                per_fold.append(metrics["pearson_mean"])
                print(json.dumps({"tag": args.tag, "model": model, "seed": seed, "fold": fold,
                                  "pearson": round(metrics["pearson_mean"], 4),
                                  "chosen": chosen, "best_val_pearson": validated,
                                  "seconds": round(time.perf_counter() - start, 1)}),
                      flush=True)
            scores.append(float(np.mean(per_fold)))
            print(json.dumps({"tag": args.tag, "model": model, "seed": seed,
                              "mean": round(scores[-1], 4),
                              "folds": [round(p, 4) for p in per_fold]}), flush=True)
        print(json.dumps({"tag": args.tag, "model": model, "mean_over_seeds":
                          round(float(np.mean(scores)), 4),
                          "seed_std": round(float(np.std(scores)), 4)}), flush=True)


if __name__ == "__main__":
    main()

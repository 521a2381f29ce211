"""Speed of the spatial block bootstrap at her2st size: one fold, and one summary table.

    python benchmarks/bootstrap.py [--replicates 1000 --genes 50 --models 5 --seeds 5]

her2st's two folds test one section (~300 spots) and five sections (~1,300 spots) on the
200 µm ST lattice. The fold times are the bootstrap alone and the whole evaluate stage (h5ad
files in, metrics JSON out); the table time is every evaluate job of models × seeds × folds
plus the aggregate stage, run one after another in this process. Prints one JSON object per
line. The bootstrap of a fold includes its jackknife over blocks (the BCa interval's
acceleration) and the same at 2× and 8× the block side.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from stflow.evaluation.bootstrap import BootstrapSettings, fold_bootstrap
from stflow.evaluation.fold_scores import write_fold_scores
from stflow.evaluation.summary import write_summary

FOLDS = {"fold0": {"B4": 300}, "fold1": {"C2": 240, "C3": 260, "C4": 250, "C5": 270, "C6": 280}}
PITCH_UM = 200.0


def section(n_spots: int, genes: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Coordinates (µm) and log1p counts of a section on a jittered ST lattice."""
    side = int(np.ceil(np.sqrt(n_spots)))
    cells = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2)[:n_spots]
    coords = cells * PITCH_UM + rng.uniform(-5, 5, size=cells.shape)
    return coords, np.log1p(rng.poisson(2.0, size=(n_spots, genes)).astype(np.float64))


def write_prediction(path: Path, sample: str, coords: np.ndarray, truth: np.ndarray,
                     noise: float, rng: np.random.Generator) -> None:
    """A prediction h5ad as the predict stage writes it (X, layers["truth"], spatial_um)."""
    import anndata as ad
    import pandas as pd

    pred = truth + noise * rng.normal(size=truth.shape)
    adata = ad.AnnData(X=pred.astype(np.float32),
                       var=pd.DataFrame(index=[f"G{g}" for g in range(truth.shape[1])]),
                       obs=pd.DataFrame(index=[f"{sample}_{i}" for i in range(len(truth))]))
    adata.layers["truth"] = truth.astype(np.float32)
    adata.obsm["spatial_um"] = coords
    adata.uns["sample"] = sample
    path.parent.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(path)


def seconds(function, *args, **kwargs) -> float:
    start = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--genes", type=int, default=50)
    parser.add_argument("--models", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    settings = BootstrapSettings(n=args.replicates)
    rng = np.random.default_rng(0)
    slides = {fold: {s: section(n, args.genes, rng) for s, n in spots.items()}
              for fold, spots in FOLDS.items()}

    big = slides["fold1"]
    truths = [truth for _, truth in big.values()]
    preds = [truth + rng.normal(size=truth.shape) for truth in truths]
    fold_bootstrap(truths, preds, [c for c, _ in big.values()], list(big), "fold1", settings)
    print(json.dumps({"part": "bootstrap of one fold", "spots": sum(map(len, truths)),
                      "genes": args.genes, "replicates": args.replicates,
                      "seconds": round(seconds(fold_bootstrap, truths, preds,
                                               [c for c, _ in big.values()], list(big),
                                               "fold1", settings), 3)}))

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        splits = root / "splits.json"
        splits.write_text(json.dumps({"scheme": "patient", "folds": [
            {"name": f, "train": ["A1"], "val": [], "test": list(s)} for f, s in FOLDS.items()]}))
        jobs = []
        for model in range(args.models):
            for seed in range(args.seeds):
                for fold, fold_slides in slides.items():
                    folder = root / "predictions" / f"m{model}" / f"seed{seed}" / fold
                    for sample, (coords, truth) in fold_slides.items():
                        write_prediction(folder / f"{sample}.h5ad", sample, coords, truth,
                                         0.5 + 0.2 * model, rng)
                    jobs.append((sorted(folder.glob("*.h5ad")), f"m{model}", fold, seed,
                                 root / "metrics" / f"m{model}" / f"seed{seed}" / f"{fold}.json"))
        paths, model, fold, seed, out = jobs[1]
        one = seconds(write_fold_scores, paths, splits=splits, encoder="enc", model=model,
                      fold=fold, seed=seed, out=out, bootstrap=settings)
        print(json.dumps({"part": "evaluate stage, one fold (h5ad in, JSON out)",
                          "spots": sum(map(len, truths)), "seconds": round(one, 3)}))
        start = time.perf_counter()
        for paths, model, fold, seed, out in jobs:
            write_fold_scores(paths, splits=splits, encoder="enc", model=model, fold=fold,
                              seed=seed, out=out, bootstrap=settings)
        evaluate_s = time.perf_counter() - start
        aggregate_s = seconds(write_summary, [job[-1] for job in jobs], out_dir=root / "tables")
        print(json.dumps({"part": "one summary table", "models": args.models,
                          "seeds": args.seeds, "folds": len(FOLDS), "evaluate_jobs": len(jobs),
                          "evaluate_s": round(evaluate_s, 2), "aggregate_s": round(aggregate_s, 2),
                          "seconds": round(evaluate_s + aggregate_s, 2)}))


if __name__ == "__main__":
    main()

"""Do predict-slide's spread and intervals mean something? Each fold's test sections as new
slides.

    .venv/bin/python benchmarks/slide_uncertainty.py --results results/her2st \\
        [--model stflow] [--encoder efficientnet_lite0] [--n-samples 8] [--at real grid]

For every fold of a finished results folder, the fold's model predicts its test sections
from their H&E images (counts hidden), either at the measured spot centres (``real``: the
spots the fold's own predictions cover) or on virtual spots (``grid``: the training pitch
and lattice, matched to the measured spots by mutual nearest neighbours within half a
pitch). It prints, per fold and mode: the Pearson of the flow-sample mean against the truth
(HEST metric, pooled over the fold's test spots), next to the fold's own score (its metric
file, and the fold's prediction on the same spots), and Spearman's rho between the spread
(std of the samples, uncalibrated) and the absolute error per gene: median over genes and
the share of genes where it is positive; and the coverage of the calibrated intervals
(``layers["lower"]``/``["upper"]``, at predict-slide's default level) with the share of
spots flagged as shifted.

A model folder trained before deploy.json existed is copied to a temporary folder and given
one, rebuilt from the results folder's artifacts (the results folder is only read).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from pathlib import Path

import anndata as ad
import numpy as np

from stflow.data.loading import load_slides
from stflow.deploy.predict_slide import DeployedModel, SlideOptions, predict_slide
from stflow.deploy.uncertainty import match_spots, uncertainty_report
from stflow.evaluation.hest_metric import mean_pearson
from stflow.records.deployment import DEPLOY_FILE, describe_training, write_deployment

log = logging.getLogger("slide_uncertainty")


def run_path(results: Path, kind: str, encoder: str, model: str, fold: str) -> Path:
    """{kind}/{encoder}/{model}/{fold}, or the first seed's (…/seed{s}/{fold}); a metrics
    file ends in .json."""
    base = results / kind / encoder / model
    name = f"{fold}.json" if kind == "metrics" else fold
    for candidate in [base / name, *sorted(base.glob(f"seed*/{name}"))]:
        if candidate.exists():
            return candidate
    raise SystemExit(f"{base}: nothing for {fold}. Fix: let the run finish it first")


def deployable(folder: Path, results: Path, encoder: str, scratch: Path) -> Path:
    """The folder itself when it has deploy.json, else a copy given one from the artifacts."""
    if (folder / DEPLOY_FILE).is_file():
        return folder
    copy = scratch / "models" / folder.name
    shutil.copytree(folder, copy)
    params = json.loads((folder / "params.json").read_text())
    samples = list(params["train"]) + list(params["val"])
    features_dir = results / "features" / encoder
    slides = load_slides(samples, params["genes"], results / "st", features_dir,
                         results / "graph")
    deployment = describe_training(params["model"], params["genes"], params["features"], slides,
                                   features_dir, results / "graph", params.get("params"),
                                   params["fold"], results / "patches")
    if deployment is None:
        raise SystemExit(f"{folder}: cannot rebuild its deploy.json from {results}")
    write_deployment(copy, deployment)
    log.info("%s has no deploy.json: using a copy with one rebuilt from %s", folder, results)
    return copy


def section(results: Path, sample: str) -> tuple[str, float]:
    st = ad.read_h5ad(results / "st" / f"{sample}.h5ad", backed="r")
    try:
        return str(st.uns["image_path"]), float(st.uns["mpp"])
    finally:
        st.file.close()


def run(args: argparse.Namespace) -> list[dict]:
    results = Path(args.results)
    splits = json.loads((results / "splits.json").read_text())["folds"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="slide-uncertainty-") as tmp:
        scratch = Path(tmp)
        for fold in splits:
            name = fold["name"]
            folder = deployable(run_path(results, "models", args.encoder, args.model, name),
                                results, args.encoder, scratch / name)
            model = DeployedModel(folder, SlideOptions(n_samples=args.n_samples,
                                                       device=args.device))
            pitch_um = model.deployment.pitch_um
            metric = json.loads(run_path(results, "metrics", args.encoder, args.model,
                                         name).read_text())["pearson_mean"]
            predictions = run_path(results, "predictions", args.encoder, args.model, name)
            collected = {mode: {"truth": [], "mean": [], "std": [], "fold": [], "inside": [],
                                "shifted": []} for mode in args.at}
            for sample in fold["test"]:
                image, mpp = section(results, sample)
                scored = ad.read_h5ad(predictions / f"{sample}.h5ad")
                for mode in args.at:
                    options = SlideOptions(n_samples=args.n_samples, device=args.device,
                                           seed=args.seed)
                    out = scratch / name / mode
                    if mode == "real":
                        result = predict_slide(image, model, out, name=sample, um_per_px=mpp,
                                               spots=scored.obsm["spatial"],
                                               spot_names=list(scored.obs_names),
                                               options=options)
                    else:
                        result = predict_slide(image, model, out, name=sample, um_per_px=mpp,
                                               options=options)
                    new = ad.read_h5ad(result.h5ad)
                    ours, theirs = match_spots(new.obsm["spatial"], scored.obsm["spatial"],
                                               0.5 * pitch_um / mpp)
                    bag = collected[mode]
                    bag["truth"].append(scored.layers["truth"][theirs])
                    bag["mean"].append(new.X[ours])
                    bag["std"].append(new.layers["sample_std"][ours])
                    truth = scored.layers["truth"][theirs]
                    bag["inside"].append((new.layers["lower"][ours] <= truth)
                                         & (truth <= new.layers["upper"][ours]))
                    bag["shifted"].append(new.obs["shifted"].to_numpy()[ours])
                    bag["fold"].append(np.asarray(scored.X)[theirs])
                    log.info("%s %s %s: %d of %d measured spots matched", name, sample, mode,
                             len(theirs), scored.n_obs)
            for mode, bag in collected.items():
                truth, mean, std, own = (np.concatenate(bag[k])
                                         for k in ("truth", "mean", "std", "fold"))
                report = uncertainty_report(truth, mean, std)
                rows.append({"fold": name, "mode": mode, "test": fold["test"],
                             "n_samples": args.n_samples, **report,
                             "interval_coverage": float(np.concatenate(bag["inside"]).mean()),
                             "share_shifted": float(np.concatenate(bag["shifted"]).mean()),
                             "fold_metric_pearson": metric,
                             "fold_prediction_pearson_same_spots": mean_pearson(truth, own)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", required=True, help="a finished results/{dataset} folder")
    parser.add_argument("--model", default="stflow")
    parser.add_argument("--encoder", default="efficientnet_lite0")
    parser.add_argument("--n-samples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--at", nargs="+", choices=("real", "grid"), default=["real", "grid"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    rows = run(args)
    header = (f"{'fold':<7}{'mode':<6}{'spots':>6}  {'pearson':>8}  {'fold metric':>11}  "
              f"{'fold same spots':>15}  {'rho(std,|err|) median':>21}  {'rho>0':>6}  "
              f"{'mean std':>8}  {'mean |err|':>10}  {'coverage':>8}  {'shifted':>7}")
    print(header)
    for r in rows:
        print(f"{r['fold']:<7}{r['mode']:<6}{r['n_spots']:>6}  {r['pearson_mean']:>8.3f}  "
              f"{r['fold_metric_pearson']:>11.3f}  {r['fold_prediction_pearson_same_spots']:>15.3f}"
              f"  {r['spread_error_spearman_median']:>21.3f}  "
              f"{r['spread_error_spearman_positive']:>6.2f}  {r['spread_mean']:>8.4f}  "
              f"{r['abs_error_mean']:>10.4f}  {r['interval_coverage']:>8.3f}  "
              f"{r['share_shifted']:>7.1%}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Validation at slide level on real data (issue 26, item 5): each fold's test sections,
predicted by predict-slide with that fold's model as if they were new slides.

    .venv/bin/python benchmarks/slide_validation.py --results results/her2st \\
        [--model stflow] [--encoder efficientnet_lite0] [--seed 0] [--n-samples 8] \\
        [--bootstrap 1000] [--out slide_validation.json] [--markdown slide_validation.md] \\
        [--folds fold1] [--reuse fold0.json ...]

For every fold of a finished results folder (``splits.json``) and each of its test
sections, the fold's model folder (``models/{encoder}/{model}/seed{seed}/{fold}``, which
carries its own ``deploy.json`` and calibration) predicts the section's full-resolution H&E
(the path and µm/px recorded in ``st/{sample}.h5ad``; the counts are not read) twice:

- on predict-slide's virtual lattice over the tissue (the training pitch and layout), as a
  new slide would be predicted;
- at the measured spot centres (predict-slide's given spots).

Each is compared with the fold's own prediction of the section
(``predictions/.../{fold}/{sample}.h5ad``: ``X`` at the measured spots, and ``layers
["truth"]``, the measured log1p-normalised counts the model was trained against):

- slide means per gene: predict-slide's mean over the tissue lattice, its mean at the measured
  spots, the fold prediction's mean and the measured pseudo-bulk (mean of the truth);
- spot agreement: Pearson per gene over the measured spots (median over genes) of
  predict-slide's value (the nearest lattice spot, or the given spot) against the fold
  prediction and against the truth, with the fold prediction against the truth beside them;
- the biomarkers (ERBB2, GATA3 where the fold's genes hold them): per section, each slide
  mean with a 95 % bootstrap interval over spots, and the spot Pearsons;
- across sections, per gene: Pearson over the test sections of the lattice slide mean
  against the pseudo-bulk (does the slide mean follow the section-to-section changes?),
  median and quartiles over genes; within a section, Pearson over genes of the two profiles.

Writes the rows as JSON (``--out``) and markdown tables (``--markdown``), and logs progress.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import anndata as ad
import numpy as np
from scipy.spatial import cKDTree

from stflow.catalogue import DEFAULT_BIOMARKERS
from stflow.data.loading import load_slides
from stflow.deploy.predict_slide import DeployedModel, SlideOptions, predict_slide
from stflow.layout import ENCODER_FEATURES, MODEL, PREDICTIONS, SPLITS, ST, ST_DIR, under
from stflow.metrics import pearson_per_gene

log = logging.getLogger("slide_validation")
MEANS = ("lattice", "given", "fold", "measured")  # slide means, in the tables' order
SPOT_PAIRS = {  # name -> (reference, compared): Pearson per gene over the measured spots
    "lattice_vs_fold": ("fold", "lattice"), "given_vs_fold": ("fold", "given"),
    "lattice_vs_measured": ("measured", "lattice"), "given_vs_measured": ("measured", "given"),
    "fold_vs_measured": ("measured", "fold")}


def fold_paths(results: Path, encoder: str, model: str, seed: int, fold: str
               ) -> tuple[Path, Path]:
    """The fold's model folder and its predictions folder (the study's layout)."""
    names = {"encoder": encoder, "model": model, "seed": seed, "fold": fold}
    found = under(results, MODEL, **names), under(results, PREDICTIONS, **names)
    for path in found:
        if not path.is_dir():
            raise SystemExit(f"{path} is missing. Fix: let the study finish this fold first")
    return found


def section_image(results: Path, sample: str) -> tuple[str, float]:
    """The section's H&E path and µm/px, as ingested (``st/{sample}.h5ad``)."""
    st = ad.read_h5ad(under(results, ST, sample=sample), backed="r")
    try:
        return str(st.uns["image_path"]), float(st.uns["mpp"])
    finally:
        st.file.close()


def nearest(lattice_xy: np.ndarray, measured_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each measured spot, the index of the nearest lattice spot and its distance."""
    distance, index = cKDTree(np.asarray(lattice_xy, np.float64)).query(
        np.asarray(measured_xy, np.float64))
    return index, distance


def median_finite(values: np.ndarray) -> float:
    values = np.asarray(values, np.float64)
    return float(np.nanmedian(values)) if np.isfinite(values).any() else float("nan")


def mean_interval(values: np.ndarray, rng: np.random.Generator, n_boot: int
                  ) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean of ``values`` (spots resampled)."""
    values = np.asarray(values, np.float64)
    draws = rng.integers(0, len(values), size=(n_boot, len(values)))
    means = values[draws].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def section_arrays(lattice: ad.AnnData, given: ad.AnnData, scored: ad.AnnData
                   ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """Per-spot values at the measured spots (lattice: nearest spot; given: by name), every
    spot's values of each source for the slide means, and the lattice match distances."""
    index, distance = nearest(lattice.obsm["spatial"], scored.obsm["spatial"])
    order = given.obs_names.get_indexer(scored.obs_names)
    if (order < 0).any():
        raise SystemExit(f"predict-slide lost {(order < 0).sum()} given spots")
    lattice_x = np.asarray(lattice.X, np.float64)
    at_spots = {"lattice": lattice_x[index], "given": np.asarray(given.X, np.float64)[order],
                "fold": np.asarray(scored.X, np.float64),
                "measured": np.asarray(scored.layers["truth"], np.float64)}
    every = {**at_spots, "lattice": lattice_x}  # the lattice mean is over the whole tissue
    return at_spots, every, distance


def biomarker_rows(genes: list[str], every: dict[str, np.ndarray],
                   per_gene: dict[str, np.ndarray], rng: np.random.Generator, n_boot: int
                   ) -> dict[str, dict]:
    """Slide means (with bootstrap intervals) and spot Pearsons of the biomarkers."""
    rows = {}
    for gene in DEFAULT_BIOMARKERS:
        if gene not in genes:
            rows[gene] = None
            continue
        g = genes.index(gene)
        rows[gene] = {
            "slide_mean": {k: float(every[k][:, g].mean()) for k in MEANS},
            "slide_mean_ci95": {k: mean_interval(every[k][:, g], rng, n_boot) for k in MEANS},
            "spot_pearson": {k: float(v[g]) for k, v in per_gene.items()}}
    return rows


def compare_section(genes: list[str], lattice: ad.AnnData, given: ad.AnnData,
                    scored: ad.AnnData, rng: np.random.Generator, n_boot: int) -> dict:
    """One section's slide means, spot agreement and biomarkers (see the module docstring)."""
    at_spots, every, distance = section_arrays(lattice, given, scored)
    means = {k: every[k].mean(axis=0) for k in MEANS}
    per_gene = {name: pearson_per_gene(at_spots[ref], at_spots[other])
                for name, (ref, other) in SPOT_PAIRS.items()}
    profile = {f"{k}_vs_measured": float(np.corrcoef(means[k], means["measured"])[0, 1])
               for k in MEANS[:-1]}
    return {"n_measured": int(scored.n_obs), "n_lattice": int(lattice.n_obs),
            "match_distance_px_median": float(np.median(distance)),
            "match_distance_px_max": float(np.max(distance)),
            "slide_mean_abs_diff_vs_measured": {
                k: float(np.mean(np.abs(means[k] - means["measured"]))) for k in MEANS[:-1]},
            "profile_pearson_over_genes": profile,
            "spot_pearson_median": {k: median_finite(v) for k, v in per_gene.items()},
            "biomarkers": biomarker_rows(genes, every, per_gene, rng, n_boot),
            "slide_means": {k: v.tolist() for k, v in means.items()}}


def predict_both(image: str, mpp: float, model: DeployedModel, scored: ad.AnnData,
                 out: Path, sample: str, options: SlideOptions
                 ) -> tuple[ad.AnnData, ad.AnnData, dict[str, float]]:
    """predict-slide on the lattice and at the measured centres; their seconds."""
    seconds = {}
    start = time.perf_counter()
    lattice = predict_slide(image, model, out / "lattice", name=sample, um_per_px=mpp,
                            options=options)
    seconds["lattice"] = time.perf_counter() - start
    start = time.perf_counter()
    given = predict_slide(image, model, out / "given", name=sample, um_per_px=mpp,
                          spots=np.asarray(scored.obsm["spatial"]),
                          spot_names=list(scored.obs_names), options=options)
    seconds["given"] = time.perf_counter() - start
    return ad.read_h5ad(lattice.h5ad), ad.read_h5ad(given.h5ad), seconds


def run_fold(results: Path, fold: dict, args: argparse.Namespace, options: SlideOptions,
             rng: np.random.Generator, scratch: Path) -> tuple[list[str], list[dict]]:
    """The fold model's genes and the rows of its test sections."""
    name, sections = fold["name"], []
    folder, predictions = fold_paths(results, args.encoder, args.model, args.seed, name)
    model = DeployedModel(folder, options)
    genes = list(model.deployment.genes)
    for sample in fold["test"]:
        image, mpp = section_image(results, sample)
        scored = ad.read_h5ad(predictions / f"{sample}.h5ad")
        if list(scored.var_names) != genes:
            raise SystemExit(f"{predictions}: other genes than the model {folder}")
        log.info("%s %s: predict-slide on %s at %.3f µm/px", name, sample, image, mpp)
        lattice, given, seconds = predict_both(image, mpp, model, scored, scratch / name,
                                               sample, options)
        row = compare_section(genes, lattice, given, scored, rng, args.bootstrap)
        sections.append({"fold": name, "sample": sample, "model_dir": str(folder),
                         "seconds": seconds, **row})
        log.info("%s %s: %d lattice spots, %d measured; spot Pearson (median over genes) %s "
                 "(%.0f s)", name, sample, row["n_lattice"], row["n_measured"],
                 {k: round(v, 3) for k, v in row["spot_pearson_median"].items()},
                 sum(seconds.values()))
    return genes, sections


def earlier_rows(paths: list[str] | None) -> tuple[dict[str, list[str]], list[dict]]:
    """The genes and section rows of earlier reports (``--reuse``), by fold."""
    genes_of, sections = {}, []
    for path in paths or []:
        earlier = json.loads(Path(path).read_text())
        genes_of.update(earlier["genes"])
        sections += earlier["sections"]
    return genes_of, sections


def training_pseudo_bulk(results: Path, fold: dict, genes: list[str], encoder: str
                         ) -> np.ndarray:
    """Mean of the training targets (train and validation spots pooled, normalised as the
    model was trained on them) per gene: the level a model that learnt only the training
    patients' level would predict."""
    slides = load_slides(list(fold["train"]) + list(fold["val"]), genes,
                         under(results, ST_DIR),
                         under(results, ENCODER_FEATURES, encoder=encoder), None)
    return np.concatenate([s.targets for s in slides]).astype(np.float64).mean(axis=0)


def versus_training(section: dict, training: np.ndarray, genes: list[str]) -> None:
    """Add to a section's row how far its slide means are from the training pseudo-bulk."""
    means = {k: np.asarray(v) for k, v in section["slide_means"].items()}
    section["slide_mean_abs_diff_vs_training"] = {
        k: float(np.mean(np.abs(means[k] - training))) for k in MEANS}
    section["profile_pearson_vs_training"] = {
        k: float(np.corrcoef(means[k], training)[0, 1]) for k in MEANS}
    for gene, row in section["biomarkers"].items():
        if row is not None:
            row["training_mean"] = float(training[genes.index(gene)])


def run(args: argparse.Namespace) -> dict:
    """Every fold of ``--folds`` (default: those the ``--reuse`` reports do not hold)."""
    results = Path(args.results)
    splits = json.loads(under(results, SPLITS).read_text())["folds"]
    options = SlideOptions(n_samples=args.n_samples, device=args.device, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    reused_genes, reused = earlier_rows(args.reuse)
    sections, genes_of = [], {}
    with tempfile.TemporaryDirectory(prefix="slide-validation-") as tmp:
        for fold in splits:
            name = fold["name"]
            if name in (args.folds or []) or (not args.folds and name not in reused_genes):
                genes_of[name], rows = run_fold(results, fold, args, options, rng, Path(tmp))
            elif name in reused_genes:
                log.info("%s: rows reused from %s", name, args.reuse)
                genes_of[name] = reused_genes[name]
                rows = [s for s in reused if s["fold"] == name]
            else:
                continue
            training = training_pseudo_bulk(results, fold, genes_of[name], args.encoder)
            for row in rows:
                versus_training(row, training, genes_of[name])
            sections += rows
    return {"results": str(results), "model": args.model, "encoder": args.encoder,
            "seed": args.seed, "n_samples": args.n_samples, "bootstrap": args.bootstrap,
            "genes": genes_of, "sections": sections,
            "across_sections": across_sections(sections, genes_of)}


def across_sections(sections: list[dict], genes_of: dict[str, list[str]]) -> dict:
    """Per gene common to every fold, Pearson over the sections of the lattice (and fold)
    slide means against the pseudo-bulk: median and quartiles over genes, and the
    biomarkers'. Over every section (two models when there are two folds), and over each
    fold's own sections (one model) where a fold tests three or more."""
    groups = {"all": sections} if len(sections) >= 3 else {}
    for fold in genes_of:
        own = [s for s in sections if s["fold"] == fold]
        if len(own) >= 3 and len(own) < len(sections):
            groups[fold] = own
    return {name: across_group(group, genes_of) for name, group in groups.items()}


def across_group(sections: list[dict], genes_of: dict[str, list[str]]) -> dict:
    """:func:`across_sections` of one group of sections."""
    common = sorted(set.intersection(*(set(genes_of[s["fold"]]) for s in sections)))
    table = {k: np.array([[s["slide_means"][k][genes_of[s["fold"]].index(g)] for g in common]
                          for s in sections]) for k in MEANS}
    out = {"n_sections": len(sections), "n_genes": len(common)}
    for k in ("lattice", "fold"):
        r = pearson_per_gene(table["measured"], table[k])
        out[f"{k}_vs_measured"] = {
            "median": median_finite(r),
            "quartiles": [float(np.nanquantile(r, q)) for q in (0.25, 0.75)],
            "share_positive": float(np.mean(r[np.isfinite(r)] > 0)),
            **{g: float(r[common.index(g)]) for g in DEFAULT_BIOMARKERS if g in common}}
    return out


def _ci(pair: list[float] | tuple[float, float]) -> str:
    return f"[{pair[0]:.2f}, {pair[1]:.2f}]"


def section_table(report: dict) -> list[str]:
    lines = ["| fold | section | lattice / measured spots | lattice vs fold | given vs fold | "
             "lattice vs measured | given vs measured | fold vs measured | profile r vs "
             "measured (lattice; fold) | vs training (lattice) | mean abs Δ vs measured "
             "(lattice; fold) | vs training (lattice) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in report["sections"]:
        p, prof, diff = (s["spot_pearson_median"], s["profile_pearson_over_genes"],
                         s["slide_mean_abs_diff_vs_measured"])
        train_r = s.get("profile_pearson_vs_training", {}).get("lattice", np.nan)
        train_d = s.get("slide_mean_abs_diff_vs_training", {}).get("lattice", np.nan)
        lines.append(f"| {s['fold']} | {s['sample']} | {s['n_lattice']} / {s['n_measured']} | "
                     + " | ".join(f"{p[k]:.3f}" for k in SPOT_PAIRS)
                     + f" | {prof['lattice_vs_measured']:.3f}; {prof['fold_vs_measured']:.3f}"
                     f" | {train_r:.3f} | {diff['lattice']:.3f}; {diff['fold']:.3f} | "
                     f"{train_d:.3f} |")
    return lines


def biomarker_table(report: dict) -> list[str]:
    lines = ["| fold | section | gene | lattice mean [95 % CI] | given | fold | measured "
             "[95 % CI] | training | r lattice vs measured | r given vs fold | "
             "r fold vs measured |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in report["sections"]:
        for gene, b in s["biomarkers"].items():
            if b is None:
                lines.append(f"| {s['fold']} | {s['sample']} | {gene} | not among the fold's "
                             "genes | | | | | | | |")
                continue
            m, ci, r = b["slide_mean"], b["slide_mean_ci95"], b["spot_pearson"]
            lines.append(f"| {s['fold']} | {s['sample']} | {gene} | {m['lattice']:.2f} "
                         f"{_ci(ci['lattice'])} | {m['given']:.2f} | {m['fold']:.2f} | "
                         f"{m['measured']:.2f} {_ci(ci['measured'])} | "
                         f"{b.get('training_mean', np.nan):.2f} | "
                         f"{r['lattice_vs_measured']:.3f} | {r['given_vs_fold']:.3f} | "
                         f"{r['fold_vs_measured']:.3f} |")
    return lines


def across_table(report: dict) -> list[str]:
    lines = ["| sections | slide mean | genes | median [quartiles] over genes | share > 0 | "
             + " | ".join(DEFAULT_BIOMARKERS) + " |",
             "|---|---|---|---|---|" + "---|" * len(DEFAULT_BIOMARKERS)]
    for group, across in report["across_sections"].items():
        for k in ("lattice", "fold"):
            a = across[f"{k}_vs_measured"]
            lines.append(f"| {group} ({across['n_sections']}) | {k} | {across['n_genes']} | "
                         f"{a['median']:.3f} {_ci(a['quartiles'])} | "
                         f"{a['share_positive']:.2f} | "
                         + " | ".join(f"{a[g]:.3f}" if g in a else "—"
                                      for g in DEFAULT_BIOMARKERS) + " |")
    return lines


def markdown(report: dict) -> str:
    """The three tables: per section, the biomarkers, across sections."""
    lines = [f"model `{report['model']}` ({report['encoder']}), seed {report['seed']}, "
             f"{report['n_samples']} samples (a deterministic model draws one); Pearson per gene over the measured spots, "
             "median over genes", "", *section_table(report), "", *biomarker_table(report)]
    if report["across_sections"]:
        lines += ["", "Per gene, Pearson over the sections of the slide mean with the "
                  "pseudo-bulk", "", *across_table(report)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", required=True, help="a finished results/{dataset} folder")
    parser.add_argument("--model", default="stflow")
    parser.add_argument("--encoder", default="efficientnet_lite0")
    parser.add_argument("--seed", type=int, default=0,
                        help="the study seed whose fold models are used; also predict-slide's")
    parser.add_argument("--n-samples", type=int, default=8)
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples of the spots")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--folds", nargs="+", default=None,
                        help="predict only these folds (default: all but those reused)")
    parser.add_argument("--reuse", nargs="+", default=None,
                        help="earlier --out JSONs: the folds not predicted now come from them")
    parser.add_argument("--out", default=None, help="write the report as JSON here")
    parser.add_argument("--markdown", default=None, help="write the tables here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    report = run(args)
    text = markdown(report)
    print(text)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(text)


if __name__ == "__main__":
    main()

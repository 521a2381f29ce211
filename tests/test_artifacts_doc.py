"""docs/artifacts.md, checked on the artifacts of the tiny workflow run: every artifact
opens with h5py / zarr / anndata / numpy exactly as the document shows (its own snippets are
run on the tiny run) and holds what it says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import zarr
from workflow_fixtures import FOLDS, PAPER_TABLES, SAMPLES, SEEDS

ENCODER = "efficientnet_lite0"


def test_ingested_samples(tiny_run):
    table = pd.read_csv(tiny_run.results / "samples.tsv", sep="\t")
    assert list(table.columns[:5]) == ["sample", "patient", "image_path", "mpp", "n_spots"]
    assert sorted(table["sample"]) == SAMPLES
    for sample in SAMPLES:
        adata = ad.read_h5ad(tiny_run.results / "st" / f"{sample}.h5ad")
        assert sp.issparse(adata.X) and adata.X.dtype == np.int32
        assert adata.var_names.is_unique and adata.obs_names.is_unique
        np.testing.assert_allclose(adata.obsm["spatial_um"],
                                   adata.obsm["spatial"] * adata.uns["mpp"])
        assert adata.uns["sample"] == sample and adata.uns["patient"] == sample[:2]
        assert {"image_path", "source"} <= set(adata.uns)
        info = adata.uns["stflow"]
        assert (info["kind"], info["sample"], info["X"]) == ("st", sample, "raw counts")
        assert info["version"] and info["image_relative_path"]


def test_splits_and_genes(tiny_run):
    splits = json.loads((tiny_run.results / "splits.json").read_text())
    assert splits["scheme"] == "patient"
    assert all({"name", "train", "val", "test"} <= set(f) for f in splits["folds"])
    for fold in FOLDS:  # genes.scope fold, the default: each fold's own genes
        genes = json.loads((tiny_run.results / "genes" / f"{fold}.json").read_text())
        assert genes["protocol"] in {"hest-hvg", "list"} and len(genes["genes"]) == genes["n_top"]
        assert (genes["scope"], genes["fold"]) == ("fold", fold) and genes["samples"]
        # the default figures.genes are always predicted: the simulated ERBB2 and GATA3 are
        # each among one fold's benchmark genes, else that fold's extra targets
        assert set(genes["biomarkers"]).isdisjoint(genes["genes"])
        assert {"ERBB2", "GATA3"} <= set(genes["genes"] + genes["biomarkers"])


def test_patches_are_hest_compatible(tiny_run):
    with h5py.File(tiny_run.results / "patches" / "P1S1.h5", "r") as f:
        img, coords, barcode = f["img"], f["coords"][:], f["barcode"][:]
        n = img.shape[0]
        assert img.shape[1:] == (64, 64, 3) and img.dtype == np.uint8
        assert coords.shape == (n, 2) and coords.dtype == np.int64
        assert barcode.shape == (n, 1)
        assert {"pixel_size", "patch_size_um", "patch_size_px", "mpp", "sample",
                "n_dropped_background"} <= set(f.attrs)
        assert f.attrs["patch_size_px"] == 64


def test_features_store(tiny_run):
    group = zarr.open_group(str(tiny_run.results / "features" / ENCODER / "P1S1.zarr"), mode="r")
    features = group["features"][:]
    n, dim = features.shape
    assert features.dtype == np.float32 and group.attrs["feature_dim"] == dim
    assert group["barcode"].shape == (n,) and group["coords_um"].shape == (n, 2)
    assert group.attrs["complete"] is True and group.attrs["encoder"] == ENCODER
    assert group["features"].metadata.dimension_names == ("spot", "feature")
    assert group.attrs["sample"] == "P1S1" and group.attrs["patch_size_px"] == 64
    assert {"weights_sha256", "transform", "precision", "stflow_version"} <= set(group.attrs)


def test_graph(tiny_run):
    with np.load(tiny_run.results / "graph" / "P1S1.npz") as g:
        neighbors, offsets, coords = g["neighbors"], g["offsets_um"], g["coords_um"]
        n, k = neighbors.shape
        assert k == int(g["k"]) == 4 and neighbors.dtype == np.int64
        assert g["distances_um"].shape == (n, k) and g["barcode"].shape == (n,)
        assert not (neighbors == np.arange(n)[:, None]).any()
        np.testing.assert_allclose(offsets, coords[:, None, :] - coords[neighbors], atol=1e-3)


def test_trained_models(tiny_run):
    for model in ("stflow", "ridge"):
        folder = tiny_run.results / "models" / ENCODER / model / "seed0" / "fold0"
        assert json.loads((folder / "manifest.json").read_text()) == {"model": model}
        history = pd.read_csv(folder / "history.tsv", sep="\t")
        assert list(history.columns[:4]) == ["epoch", "train_loss", "val_loss", "val_pearson"]
    stflow = tiny_run.results / "models" / ENCODER / "stflow" / "seed0" / "fold0"
    import torch

    assert isinstance(torch.load(stflow / "model.pt", weights_only=True), dict)
    assert (stflow / "config.json").exists()
    for model in ("stflow", "ridge"):  # every model is calibrated on its validation spots
        folder = tiny_run.results / "models" / ENCODER / model / "seed0" / "fold0"
        record = json.loads((folder / "calibration.json").read_text())
        assert record["difficulty"] in {"constant", "shift", "level"} and record["n_spots"] > 0
        assert {c["difficulty"] for c in record["candidates"]} == {"constant", "shift", "level"}
        with np.load(folder / "calibration.npz", allow_pickle=False) as arrays:
            assert arrays["scores"].shape[0] == record["n_spots"]
            assert arrays["shift_reference"].shape[1] == arrays["shift_components"].shape[0]
        params = json.loads((folder / "params.json").read_text())
        assert {"params", "chosen", "refit"} <= set(params)


def test_views_of_the_test_sections(tiny_run):
    """views/{encoder}/{model}/seed{first seed}/{fold}/{sample}.view: each test section's view,
    measured beside predicted (docs/artifacts.md; the page is tested in a browser in
    tests/test_view_browser.py)."""
    splits = json.loads((tiny_run.results / "splits.json").read_text())
    for fold in splits["folds"]:
        folder = tiny_run.results / "views" / ENCODER / "stflow" / "seed0" / fold["name"]
        assert sorted(p.name for p in folder.glob("*.view")) == \
            sorted(f"{s}.view" for s in fold["test"])
        view = folder / f"{fold['test'][0]}.view"
        for name in ("index.html", "image.dzi", "data/meta.js", "data/spots.js",
                     "data/genes/00000.js", "openseadragon/openseadragon.min.js"):
            assert (view / name).is_file(), name
        meta = (view / "data" / "meta.js").read_text()
        assert '"kind": "measured"' in meta and '"kind": "width"' in meta
    assert not (tiny_run.results / "views" / ENCODER / "stflow" / "seed1").exists()


def test_predictions(tiny_run):
    splits = json.loads((tiny_run.results / "splits.json").read_text())
    for fold in splits["folds"]:
        chosen = json.loads((tiny_run.results / "genes" / f"{fold['name']}.json").read_text())
        genes = chosen["genes"] + chosen["biomarkers"]  # the benchmark genes, then the others
        folder = tiny_run.results / "predictions" / ENCODER / "stflow" / "seed0" / fold["name"]
        assert sorted(p.stem for p in folder.glob("*.h5ad")) == sorted(fold["test"])
        pred = ad.read_h5ad(folder / f"{fold['test'][0]}.h5ad")
        assert pred.X.dtype == np.float32 and list(pred.var_names) == genes
        assert pred.layers["truth"].shape == pred.X.shape
        assert {"spatial", "spatial_um"} <= set(pred.obsm)
        info = pred.uns["stflow"]
        assert (info["kind"], info["model"], info["encoder"], info["fold"], info["seed"]) == (
            "prediction", "stflow", ENCODER, fold["name"], 0)
        assert info["X"].startswith("log1p") and len(info["weights_sha256"]) == 64
        assert info["gene_scope"] == "fold"
        assert list(info.get("biomarkers", [])) == chosen["biomarkers"]
        assert "log1p" in pred.uns and pred.uns["spatial_neighbors"]["params"]["n_neighbors"]
        assert sp.issparse(pred.obsp["spatial_connectivities"])
        assert (pred.layers["lower"] <= pred.X).all() and (pred.X <= pred.layers["upper"]).all()
        intervals = pred.uns["stflow"]["intervals"]
        assert intervals["level"] == 0.9 and list(intervals["levels"]) == [0.5, 0.8, 0.9, 0.95]
        j = list(intervals["levels"]).index(0.9)  # another level from the stored quantiles
        scale = pred.layers["interval_scale"] if "interval_scale" in pred.layers else \
            pred.obs["interval_scale"].to_numpy()[:, None]  # per spot and gene, or per spot
        half = pred.varm["conformal_quantile"][:, j][None, :] * scale
        np.testing.assert_allclose(pred.X + half, pred.layers["upper"], rtol=1e-5, atol=1e-5)
        assert pred.obs["shifted"].dtype == bool


def test_coverage_tables(tiny_run):
    tables = tiny_run.results / "tables"
    coverage = pd.read_csv(tables / "coverage.tsv", sep="\t")
    assert {"scheme", "gene_scope", "encoder", "model", "seed", "fold", "level", "slide",
            "coverage",
            "gene_coverage_p10", "gene_coverage_median", "width_log1p", "width_sd",
            "width_error_spearman", "selective_mae_aurc", "random_mae_aurc", "oracle_mae_aurc",
            "share_shifted"} <= set(coverage.columns)
    assert "shift_auroc" not in coverage and set(coverage["gene_scope"]) == {"fold"}
    assert sorted(set(coverage["level"])) == [0.5, 0.8, 0.9, 0.95]
    assert "all" in set(coverage["slide"]) and coverage["coverage"].between(0, 1).all()
    # tiny: 2 patients, so a fold trains on one and can only calibrate within it, and says so
    assert set(coverage["calibration"]) == {"within"}
    risk = pd.read_csv(tables / "risk_coverage.tsv", sep="\t")
    assert list(risk.columns[-2:]) == ["fraction", "selective_mae"]
    assert sorted(set(risk["fraction"])) == [round(0.1 * i, 1) for i in range(1, 11)]
    assert "| " in (tables / "coverage.md").read_text()
    assert (tiny_run.results / "figures" / "risk_coverage.png").stat().st_size > 0


def test_metrics_and_tables(tiny_run):
    tables = tiny_run.results / "tables"
    metrics = pd.read_csv(tables / "metrics.tsv", sep="\t")
    assert {"scheme", "gene_scope", "encoder", "model", "seed", "fold", "n_test_spots",
            "n_genes", "n_constant_genes", "pearson_mean"} <= set(metrics.columns)
    summary = pd.read_csv(tables / "summary.tsv", sep="\t")
    assert {"scheme", "gene_scope", "pearson_mean", "fold_std", "seed_std", "n_folds",
            "n_seeds"} <= set(summary.columns)
    assert set(metrics["gene_scope"]) == set(summary["gene_scope"]) == {"fold"}
    ridge = metrics[metrics["model"] == "ridge"]
    row = summary[summary["model"] == "ridge"].iloc[0]
    assert np.isclose(row["pearson_mean"], ridge["pearson_mean"].mean())
    per_fold = ridge.groupby("fold")["pearson_mean"].mean()  # seed-averaged fold scores
    assert np.isclose(row["fold_std"], per_fold.std(ddof=0))
    per_seed = ridge.groupby("seed")["pearson_mean"].mean()  # fold-averaged seed scores
    assert np.isclose(row["seed_std"], per_seed.std(ddof=0))
    assert list(summary.columns[9:]) == ["ci_low", "ci_high", "reference", "diff", "diff_low",
                                         "diff_high", "n_bootstrap", "bootstrap_bias",
                                         "ci_low_2x", "ci_high_2x", "ci_low_8x", "ci_high_8x"]
    assert row["ci_low"] < row["ci_high"] and row["n_bootstrap"] == 1000
    assert set(summary["reference"]) == {"ridge"} and row["diff"] == 0  # the only baseline
    fold_json = json.loads((tiny_run.results / "metrics" / ENCODER / "ridge" / "seed0" /
                            "fold0.json").read_text())
    boot = fold_json["bootstrap"]
    assert (boot["n"], boot["seed"], len(boot["replicates"])) == (1000, 0, 1000)
    assert set(boot["wider"]) == {"2x", "8x"} and boot["jackknife"]
    assert set(boot["block_um"]) == set(boot["n_blocks"]) == set(fold_json["pearson_per_sample"])
    markdown = (tables / "summary.md").read_text()
    assert markdown.startswith("Split scheme: **patient**. Gene scope: **fold**")
    assert "(sd over folds), seed sd " in markdown and "95 % CI [" in markdown
    genes = pd.read_csv(tables / "genes.tsv", sep="\t")
    assert {"scheme", "encoder", "model", "seed", "fold", "gene",
            "pearson"} <= set(genes.columns)
    biomarkers = pd.read_csv(tables / "biomarkers.tsv", sep="\t")
    assert list(biomarkers.columns) == list(genes.columns)
    for fold in FOLDS:  # each fold's biomarkers are scored apart, never among genes.tsv's
        extra = json.loads((tiny_run.results / "genes" / f"{fold}.json").read_text())[
            "biomarkers"]
        assert set(biomarkers[biomarkers["fold"] == fold]["gene"]) == set(extra)
        assert not set(genes[genes["fold"] == fold]["gene"]) & set(extra)
    assert "Biomarkers (trained beside the genes above" in markdown
    for seed in SEEDS:
        for fold in FOLDS:
            assert (tiny_run.results / "metrics" / ENCODER / "ridge" / f"seed{seed}" /
                    f"{fold}.json").exists()


def test_paper_tables(tiny_run):
    tables = tiny_run.results / "tables"
    for name in PAPER_TABLES:
        frame = pd.read_csv(tables / f"{name}.tsv", sep="\t")
        assert frame.columns[0] == "scheme" and "gene_scope" in frame.columns, name
        assert (tables / f"{name}.md").exists(), name
    priors = pd.read_csv(tables / "priors.tsv", sep="\t")
    assert list(priors.columns[:4]) == ["scheme", "prior", "encoder", "model"]
    assert list(priors["model"]) == ["stflow"]  # the only prior model of the tiny run
    times = pd.read_csv(tables / "inference_time.tsv", sep="\t")
    assert {"encoder", "model", "seed", "fold", "n_test_samples", "n_test_spots",
            "predict_s", "embed_s", "total_s"} <= set(times.columns)


def test_no_temporary_files_are_left(tiny_run):
    leftovers = [p for p in tiny_run.results.rglob("*") if ".tmp-" in p.name]
    assert not leftovers


def test_every_artifact_is_as_its_checksum_records(tiny_run):
    """docs/artifacts.md "Checksums": a record beside each artifact, all true after a run."""
    from stflow.verify import verify_results

    assert (tiny_run.results / "splits.json.sha256").exists()
    checked, damaged = verify_results(tiny_run.results)
    assert checked > 0 and not damaged, [d.line() for d in damaged]


# --- the document's own snippets, run on the tiny run ---------------------------------------

DOC = Path(__file__).resolve().parents[1] / "docs" / "artifacts.md"
# files the snippets name that a tiny run does not make: a user's HEST file, a SpatialData
# export of a new slide, a new slide and its view, the study-wide genes.json (under genes.scope fold only
# the final models read it) and the deployable model (final_models is a target of its own);
# other workflow tests of the session may add the last three to the tiny run
NOT_IN_A_TINY_RUN = {"S.h5", "B4.zarr", "slides/new.h5ad", "slides/new.view/data/spots.js",
                     "slides/cohort.h5ad", "slides/cohort.tsv",
                     "genes.json",
                     "models/efficientnet_lite0/stflow/final/deploy.json"}


def doc_snippets() -> list[tuple[str, str]]:
    """(stage heading, code) of every ```python block of docs/artifacts.md."""
    snippets, heading, text = [], "", DOC.read_text()
    for match in re.finditer(r"^(## [^\n]*)$|^```python\n(.*?)^```", text, flags=re.M | re.S):
        if match.group(1):
            heading = match.group(1)
        else:
            snippets.append((heading, match.group(2)))
    return snippets


def named_files(code: str) -> list[str]:
    """The files a snippet opens, as it names them."""
    quoted = r"""["']([^"'\s]+\.(?:h5ad|h5|zarr|json|tsv|md|npz|pt|js))["']"""
    return [m for m in re.findall(quoted, code) if "{" not in m]


def another_sample(path: Path, results: Path) -> Path | None:
    """The first file of ``path``'s kind in its folder, where the document's example names a
    sample the tiny run has elsewhere (another fold's test section); None: not a per-sample
    file of a folder of ``results``."""
    if not path.parent.is_dir() or not path.parent.is_relative_to(results) \
            or path.parent == results:
        return None
    return next(iter(sorted(path.parent.glob(f"*{path.suffix}"))), None)


def test_the_document_has_snippets_for_each_stage():
    headings = {heading.split(":")[0] for heading, _ in doc_snippets()}
    assert {"## ingest", "## splits", "## patches", "## embed", "## graph", "## train",
            "## predict", "## paper tables"} <= headings


def test_every_snippet_of_the_document_runs_on_the_tiny_run(tiny_run, monkeypatch):
    """Each snippet as written, its results/synthetic/ read as the tiny run's folder (a
    sample the tiny run has in another fold read as one it has there); the first one's
    ``path`` is an st file; they share one session. Only snippets naming files a tiny run does not make are left
    out, and those are the ones listed."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tiny_run.workdir)
    absent, ran = set(), 0
    # one session, as a reader runs them: a snippet may use what an earlier one imported
    namespace = {"ad": ad, "path": tiny_run.results / "st" / "P1S1.h5ad"}
    genes = sorted(tiny_run.results.glob("genes/*.json"))[0]  # genes.scope fold: per fold
    gene = json.loads(genes.read_text())["genes"][0]
    for heading, code in doc_snippets():
        code = code.replace("results/synthetic/", f"{tiny_run.results}/")
        code = code.replace('"ERBB2"', repr(gene))  # the example biomarker: a gene it predicts
        for name in named_files(code):
            if not Path(name).exists():
                mine = another_sample(Path(name), tiny_run.results)
                if mine is None:
                    absent.add(name.removeprefix(f"{tiny_run.results}/"))
                else:
                    code = code.replace(name, str(mine))
        if any(not Path(name).exists() for name in named_files(code)):
            continue
        try:
            exec(compile(code, heading, "exec"), namespace)
        except Exception as err:  # noqa: BLE001 - name the snippet that broke
            pytest.fail(f"{heading}: its snippet fails on the tiny run: {err!r}\n{code}")
        finally:
            import matplotlib.pyplot as plt

            plt.close("all")
        ran += 1
    assert absent <= NOT_IN_A_TINY_RUN, absent - NOT_IN_A_TINY_RUN
    assert ran >= 9  # st, samples, splits, patches, features, graph, train, predict, tables

"""tables/coverage: the intervals' coverage, width and ranking (selective MAE against the share
of spots kept), measured from fold prediction files exactly as the predict stage writes them
and on slides of known exchangeable errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from stflow.errors import StflowError
from stflow.evaluation.coverage import (
    IntervalSlide,
    coverage_markdown,
    coverage_rows,
    coverage_tables,
    read_interval_slide,
    risk_rows,
    write_coverage,
)
from stflow.intervals.calibration import Calibration, LevelCurve, apply_calibration
from stflow.intervals.shift import ShiftReference

GENES = ["G1", "G2", "G3"]
LEVELS = (0.5, 0.8, 0.9, 0.95)
RUN = {"scheme": "patient", "encoder": "enc", "model": "m", "seed": 0, "fold": "fold0"}
FLAT = LevelCurve(np.tile(np.arange(4.0), (3, 1)), np.ones((3, 4)))


def write_fold(folder: Path, rng: np.random.Generator, difficulty: str = "shift",
               calibrated: bool = True, curve: LevelCurve = FLAT) -> Path:
    """Two test slides whose errors grow with the shift score, predicted with intervals."""
    folder.mkdir(parents=True)
    train = rng.normal(size=(400, 6))
    reference = ShiftReference.fit(train, seed=0)
    cal_features = rng.normal(size=(300, 6))
    cal_shift = reference.score(cal_features)
    reference.set_threshold(cal_shift)
    median = float(np.median(cal_shift))
    cal_scale = cal_shift / median if difficulty == "shift" else np.ones(300)
    errors = rng.normal(size=(300, 3)) * (cal_shift / median)[:, None]
    calibration = Calibration(np.abs(errors) / cal_scale[:, None], difficulty, reference,
                              median, curve, "validation", "the kept model")
    for sample, offset in (("A", 0.0), ("B", 1.5)):
        features = rng.normal(size=(200, 6)) + offset  # B lies away from the training spots
        prediction = rng.normal(size=(200, 3))
        noise = rng.normal(size=(200, 3)) * (reference.score(features) / median)[:, None]
        adata = ad.AnnData(X=prediction.astype(np.float32),
                           var=pd.DataFrame(index=GENES),
                           obs=pd.DataFrame(index=[f"{sample}{i}" for i in range(200)]))
        adata.layers["truth"] = (prediction + noise).astype(np.float32)
        adata.uns["sample"] = sample
        encoder, model, seed, fold = folder.parts[-4:]  # the run, as predict records it
        adata.uns["stflow"] = {"kind": "prediction", "gene_scope": "fold", "encoder": encoder,
                               "model": model, "seed": int(seed.removeprefix("seed")),
                               "fold": fold}
        if calibrated:
            apply_calibration(calibration, features, prediction, 0.9).attach(adata)
        adata.write_h5ad(folder / f"{sample}.h5ad")
    return folder


def files(*folders: Path) -> list[Path]:
    """The prediction files of fold folders, as the coverage stage is given them."""
    return [path for folder in folders for path in sorted(folder.glob("*.h5ad"))]


@pytest.fixture
def splits(tmp_path: Path) -> Path:
    path = tmp_path / "splits.json"
    path.write_text(json.dumps({"scheme": "patient", "folds": [
        {"name": "fold0", "train": ["T"], "val": ["V"], "test": ["A", "B"]}]}))
    return path


def exchangeable_slide(sample: str, rng: np.random.Generator, spots: int,
                      spot_sd: np.ndarray, width_of_spot: np.ndarray | None = None
                      ) -> IntervalSlide:
    """Errors N(0, spot_sd × gene sd), independent over spots and genes, with the oracle
    interval: half-width spot_sd × gene sd × the normal quantile of each level, scaled per
    spot by ``width_of_spot`` (default: the spot's own sd, so widths mark errors)."""
    gene_sd = np.array([0.5, 1.0, 2.0])
    prediction = 20 + rng.normal(size=(spots, 3))  # far above 0: no lower bound is clipped
    truth = prediction + rng.normal(size=(spots, 3)) * spot_sd[:, None] * gene_sd
    quantiles = gene_sd[:, None] * norm.ppf((1 + np.array(LEVELS)) / 2)[None, :]
    scale = spot_sd if width_of_spot is None else width_of_spot
    return IntervalSlide(sample, truth, prediction, quantiles, LEVELS, scale[:, None],
                         np.zeros(spots, bool), "shift", 300)


def test_exchangeable_errors_are_covered_at_each_level_within_a_binomial_band():
    rng = np.random.default_rng(5)
    slides = [exchangeable_slide(s, rng, 1500, rng.uniform(0.3, 2.0, 1500)) for s in "AB"]
    rows = pd.DataFrame(coverage_rows(slides, RUN)).set_index(["level", "slide"])
    for level in LEVELS:
        for slide, pairs in (("all", 9000), ("A", 4500), ("B", 4500)):
            band = 4 * np.sqrt(level * (1 - level) / pairs)  # 4 binomial sd
            assert abs(rows.loc[(level, slide), "coverage"] - level) < band
        gene_band = 4 * np.sqrt(level * (1 - level) / 3000)
        assert rows.loc[(level, "all"), "gene_coverage_p10"] > level - gene_band
        assert rows.loc[(level, "all"), "gene_coverage_median"] < level + gene_band
        expected = np.mean(2 * np.concatenate([s.scale * s.quantiles[None, :, LEVELS.index(
            level)] for s in slides]))
        assert rows.loc[(level, "all"), "width_log1p"] == pytest.approx(expected)


def test_selective_error_falls_where_narrow_intervals_mark_small_errors_not_at_random():
    rng = np.random.default_rng(6)
    sd = rng.uniform(0.2, 2.0, 3000)
    marked = exchangeable_slide("A", rng, 3000, sd)
    curve = pd.DataFrame(risk_rows([marked], RUN)).set_index("fraction")["selective_mae"]
    assert (np.diff(curve.to_numpy()) > 0).all()       # wider intervals, larger errors
    assert curve.loc[0.1] < 0.5 * curve.loc[1.0]
    error = np.abs(marked.truth - marked.prediction) / marked.truth.std(0)
    assert curve.loc[1.0] == pytest.approx(error.mean())  # everything kept: the MAE
    row = coverage_rows([marked], RUN)[0]
    assert row["oracle_mae_aurc"] < row["selective_mae_aurc"] < 0.8 * row["random_mae_aurc"]
    assert row["random_mae_aurc"] == pytest.approx(error.mean())
    for widths in (rng.uniform(0.2, 2.0, 3000), np.ones(3000)):  # random, then all equal
        blind = exchangeable_slide("A", np.random.default_rng(6), 3000, sd, widths)
        flat = pd.DataFrame(risk_rows([blind], RUN)).set_index("fraction")["selective_mae"]
        assert np.abs(flat.loc[0.3:] / flat.loc[1.0] - 1).max() < 0.1
        row = coverage_rows([blind], RUN)[0]
        assert row["selective_mae_aurc"] == pytest.approx(row["random_mae_aurc"], rel=0.05)
    np.testing.assert_allclose(flat, flat.loc[1.0])  # all equal: exactly the random curve


def test_coverage_is_counted_per_level_pooled_and_per_slide(tmp_path, splits):
    folder = write_fold(tmp_path / "predictions" / "enc" / "stflow" / "seed0" / "fold0",
                        np.random.default_rng(0))
    coverage, risk = coverage_tables(files(folder), splits)
    pooled = coverage[coverage["slide"] == "all"].set_index("level")
    assert list(pooled.index) == [0.5, 0.8, 0.9, 0.95]
    assert (np.diff(pooled["coverage"]) > 0).all() and (np.diff(pooled["width_sd"]) > 0).all()
    assert set(coverage["slide"]) == {"all", "A", "B"}
    assert "shift_auroc" not in coverage
    row = pooled.loc[0.9]
    assert (row["scheme"], row["encoder"], row["model"], row["seed"], row["fold"]) == \
        ("patient", "enc", "stflow", 0, "fold0")
    assert row["n_spots"] == 400 and row["difficulty"] == "shift"
    # the errors grow with the shift score: wide intervals mark them
    assert row["width_error_spearman"] > 0.2
    assert row["oracle_mae_aurc"] < row["selective_mae_aurc"] < row["random_mae_aurc"]
    assert pooled["selective_mae_aurc"].nunique() == 1  # one ranking at every level
    per_slide = coverage[coverage["level"] == 0.9].set_index("slide")
    assert per_slide.loc["B", "share_shifted"] > per_slide.loc["A", "share_shifted"]
    # the narrowest half of the spots has smaller errors than all of them
    curve = risk.set_index("fraction")["selective_mae"]
    assert curve.loc[0.5] < 0.9 * curve.loc[1.0]


def test_per_gene_scales_are_read_from_their_layer(tmp_path, splits):
    # the scale follows each gene's own curve of error against the predicted level
    errors = np.array([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0], [1.0, 1.0, 5.0, 5.0]])
    curve = LevelCurve(np.tile(np.linspace(-1.5, 1.5, 4), (3, 1)), errors)
    folder = write_fold(tmp_path / "p" / "enc" / "stflow" / "seed0" / "fold0",
                        np.random.default_rng(4), difficulty="level", curve=curve)
    adata = ad.read_h5ad(folder / "A.h5ad")
    layer = np.asarray(adata.layers["interval_scale"])
    assert layer.shape == adata.shape
    assert np.ptp(layer, axis=1).mean() > 0.5  # the genes of a spot get different scales
    slide = read_interval_slide(folder / "A.h5ad")
    j = slide.levels.index(0.9)
    half = np.asarray(adata.layers["upper"], np.float64) - np.asarray(adata.X, np.float64)
    np.testing.assert_allclose(slide.scale * slide.quantiles[None, :, j], half, rtol=1e-4,
                               atol=1e-5)
    coverage, _ = coverage_tables(files(folder), splits)
    assert set(coverage["difficulty"]) == {"level"} and coverage["coverage"].between(0, 1).all()
    row = coverage.set_index(["level", "slide"]).loc[(0.9, "A")]
    # the width as written: upper - lower, the lower bound clipped at 0 (some are, here)
    written = np.asarray(adata.layers["upper"], np.float64) - np.asarray(adata.layers["lower"])
    assert (np.asarray(adata.layers["lower"]) == 0).any()
    assert row["width_log1p"] == pytest.approx(np.mean(written), rel=1e-4)
    assert row["calibration"] == "within"  # the scope the calibration recorded


def test_the_coverage_is_of_the_benchmark_genes_only(tmp_path):
    folder = write_fold(tmp_path / "p" / "enc" / "stflow" / "seed0" / "fold0",
                        np.random.default_rng(5))
    adata = ad.read_h5ad(folder / "A.h5ad")
    adata.uns["stflow"]["biomarkers"] = [adata.var_names[0]]  # a biomarker, scored apart
    adata.write_h5ad(folder / "A.h5ad")
    slide = read_interval_slide(folder / "A.h5ad")
    assert slide.truth.shape == slide.prediction.shape == (adata.n_obs, adata.n_vars - 1)
    assert slide.quantiles.shape[0] == adata.n_vars - 1
    np.testing.assert_allclose(slide.truth, np.asarray(adata.layers["truth"])[:, 1:])


def test_plain_intervals_rank_no_better_than_chance_and_old_predictions_are_left_out(
        tmp_path, splits, caplog):
    plain = write_fold(tmp_path / "p" / "enc" / "ridge" / "seed0" / "fold0",
                       np.random.default_rng(1), difficulty="constant")
    old = write_fold(tmp_path / "p" / "enc" / "old" / "seed0" / "fold0",
                     np.random.default_rng(2), calibrated=False)
    coverage, risk = coverage_tables(files(plain, old), splits)
    assert set(coverage["model"]) == {"ridge"}
    assert coverage["width_error_spearman"].isna().all()
    # equal widths are taken in random order: a flat curve, the random ordering's area
    curve = risk.set_index("fraction")["selective_mae"]
    np.testing.assert_allclose(curve, curve.loc[1.0])
    np.testing.assert_allclose(coverage["selective_mae_aurc"], coverage["random_mae_aurc"])
    assert "without intervals" in caplog.text
    markdown = coverage_markdown(coverage)
    assert "| patient | enc | ridge | within | 0.9 |" in markdown
    assert "selective MAE AURC" in markdown and "AUROC" not in markdown


def test_the_coverage_stage_writes_its_tables_and_figure(tmp_path, splits):
    folder = write_fold(tmp_path / "predictions" / "enc" / "stflow" / "seed0" / "fold0",
                        np.random.default_rng(3))
    tables = tmp_path / "tables"
    tables.mkdir()
    write_coverage(files(folder), splits=splits, table=tables / "coverage.tsv",
                   markdown=tables / "coverage.md", risk=tables / "risk_coverage.tsv",
                   figure=tmp_path / "risk.png")
    for name in ("coverage.tsv", "coverage.md", "risk_coverage.tsv"):
        assert (tmp_path / "tables" / name).stat().st_size > 0
    coverage = pd.read_csv(tmp_path / "tables" / "coverage.tsv", sep="\t")
    assert set(coverage["gene_scope"]) == {"fold"}
    assert "Gene scope: **fold**" in (tmp_path / "tables" / "coverage.md").read_text()
    assert (tmp_path / "risk.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_run_is_read_from_each_file_not_from_its_folder(tmp_path, splits):
    fold0 = write_fold(tmp_path / "p" / "enc" / "stflow" / "seed0" / "fold0",
                       np.random.default_rng(7))
    fold1 = write_fold(tmp_path / "q" / "enc" / "stflow" / "seed1" / "fold1",
                       np.random.default_rng(8))
    flat = tmp_path / "anywhere"
    flat.mkdir()
    moved = [shutil.copy(path, flat / f"{i}.h5ad") for i, path in enumerate(files(fold0, fold1))]
    coverage, _ = coverage_tables(moved, splits)
    assert sorted(set(zip(coverage["seed"], coverage["fold"], strict=True))) == \
        [(0, "fold0"), (1, "fold1")]
    adata = ad.read_h5ad(moved[0])
    del adata.uns["stflow"]["fold"]
    adata.write_h5ad(moved[0])
    with pytest.raises(StflowError, match=r"0.h5ad: records no fold run.*stflow predict"):
        coverage_tables(moved, splits)

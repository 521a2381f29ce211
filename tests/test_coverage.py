"""tables/coverage: the intervals' coverage, width and ranking, and the shift flag's AUROC,
measured from fold prediction files exactly as the predict stage writes them."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from stflow.evaluation.coverage import coverage_markdown, coverage_tables, write_coverage
from stflow.intervals.calibration import Calibration, LevelCurve, apply_calibration
from stflow.intervals.shift import ShiftReference

GENES = ["G1", "G2", "G3"]


def write_fold(folder: Path, rng: np.random.Generator, difficulty: str = "shift",
               calibrated: bool = True) -> Path:
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
    flat = LevelCurve(np.tile(np.arange(4.0), (3, 1)), np.ones((3, 4)))
    calibration = Calibration(np.abs(errors) / cal_scale[:, None], difficulty, reference,
                              median, flat, "validation", "the kept model")
    for sample, offset in (("A", 0.0), ("B", 1.5)):
        features = rng.normal(size=(200, 6)) + offset  # B lies away from the training spots
        prediction = rng.normal(size=(200, 3))
        noise = rng.normal(size=(200, 3)) * (reference.score(features) / median)[:, None]
        adata = ad.AnnData(X=prediction.astype(np.float32),
                           var=pd.DataFrame(index=GENES),
                           obs=pd.DataFrame(index=[f"{sample}{i}" for i in range(200)]))
        adata.layers["truth"] = (prediction + noise).astype(np.float32)
        adata.uns["sample"] = sample
        if calibrated:
            apply_calibration(calibration, features, prediction, 0.9).attach(adata)
        adata.write_h5ad(folder / f"{sample}.h5ad")
    return folder


@pytest.fixture
def splits(tmp_path: Path) -> Path:
    path = tmp_path / "splits.json"
    path.write_text(json.dumps({"scheme": "patient", "folds": [
        {"name": "fold0", "train": ["T"], "val": ["V"], "test": ["A", "B"]}]}))
    return path


def test_coverage_is_counted_per_level_pooled_and_per_slide(tmp_path, splits):
    folder = write_fold(tmp_path / "predictions" / "enc" / "stflow" / "seed0" / "fold0",
                        np.random.default_rng(0))
    coverage, risk = coverage_tables([folder], splits)
    pooled = coverage[coverage["slide"] == "all"].set_index("level")
    assert list(pooled.index) == [0.5, 0.8, 0.9, 0.95]
    assert (np.diff(pooled["coverage"]) > 0).all() and (np.diff(pooled["width_sd"]) > 0).all()
    assert set(coverage["slide"]) == {"all", "A", "B"}
    row = pooled.loc[0.9]
    assert (row["scheme"], row["encoder"], row["model"], row["seed"], row["fold"]) == \
        ("patient", "enc", "stflow", 0, "fold0")
    assert row["n_spots"] == 400 and row["difficulty"] == "shift"
    # the errors grow with the shift score: wide intervals mark them, the flag finds them
    assert row["width_error_spearman"] > 0.2 and row["shift_auroc"] > 0.65
    per_slide = coverage[coverage["level"] == 0.9].set_index("slide")
    assert per_slide.loc["B", "share_shifted"] > per_slide.loc["A", "share_shifted"]
    # the narrowest half of the spots is predicted better than all of them
    curve = risk.set_index("fraction")["pearson"]
    assert curve.loc[0.5] > curve.loc[1.0] + 0.03


def test_per_gene_scales_are_read_from_their_layer(tmp_path, splits):
    folder = write_fold(tmp_path / "p" / "enc" / "stflow" / "seed0" / "fold0",
                        np.random.default_rng(4), difficulty="level")
    adata = ad.read_h5ad(folder / "A.h5ad")
    assert adata.layers["interval_scale"].shape == adata.shape
    coverage, _ = coverage_tables([folder], splits)
    assert set(coverage["difficulty"]) == {"level"} and coverage["coverage"].between(0, 1).all()


def test_plain_intervals_have_no_ranking_and_old_predictions_are_left_out(tmp_path, splits,
                                                                         caplog):
    plain = write_fold(tmp_path / "p" / "enc" / "ridge" / "seed0" / "fold0",
                       np.random.default_rng(1), difficulty="constant")
    old = write_fold(tmp_path / "p" / "enc" / "old" / "seed0" / "fold0",
                     np.random.default_rng(2), calibrated=False)
    coverage, risk = coverage_tables([plain, old], splits)
    assert set(coverage["model"]) == {"ridge"}
    assert coverage["width_error_spearman"].isna().all()
    assert risk.set_index("fraction")["pearson"].drop(1.0).isna().all()
    assert "without intervals" in caplog.text
    assert "| patient | enc | ridge | 0.9 |" in coverage_markdown(coverage)


def test_the_coverage_stage_writes_its_tables_and_figure(tmp_path, splits):
    folder = write_fold(tmp_path / "predictions" / "enc" / "stflow" / "seed0" / "fold0",
                        np.random.default_rng(3))
    write_coverage([folder], splits=splits, tables_dir=tmp_path / "tables",
                   figure=tmp_path / "risk.png")
    for name in ("coverage.tsv", "coverage.md", "risk_coverage.tsv"):
        assert (tmp_path / "tables" / name).stat().st_size > 0
    assert (tmp_path / "risk.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

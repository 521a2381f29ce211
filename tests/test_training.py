"""One path trains and writes every model: a fold's and the deployable final model search on
their own validation split, refit when asked, and calibrate intervals on spots they never
trained on."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from test_fold import SAMPLES, MeanEstimator, MeanSettings, fold_inputs  # noqa: F401  (fixture)

from stflow.crossval.train import train_fold
from stflow.deploy.final_model import train_final
from stflow.intervals.calibration import load_calibration
from stflow.models import registry as models

SEARCH = {"trials": 3, "space": {"offset": [0.0, 1.0, 2.0]}}


class ChoosyEstimator(MeanEstimator):
    """Validation prefers offset 1; a refit runs a fixed epoch count on what it is given."""

    refits = True

    def fit(self, train, val):
        rows = super().fit(train, val)
        return [{**row, "val_pearson": -abs(self.offset - 1.0)} for row in rows]

    def refit_params(self, history):
        return {"epochs": 1}


@pytest.fixture
def choosy(monkeypatch) -> str:
    monkeypatch.setitem(models.MODELS, "choosy",
                        models.ModelSpec(f"{__name__}:ChoosyEstimator", MeanSettings, {}, "test"))
    return "choosy"


@pytest.fixture
def study(fold_inputs) -> dict[str, Path]:  # noqa: F811
    """The fold inputs plus samples.tsv, patch files and feature identities of a study."""
    root = fold_inputs["root"]
    pd.DataFrame({"sample": list(SAMPLES), "patient": list(SAMPLES.values()),
                  "image_path": "", "mpp": 0.5, "n_spots": 12}).to_csv(
        root / "samples.tsv", sep="\t", index=False)
    patches = root / "patches"
    patches.mkdir()
    for sample in SAMPLES:
        with h5py.File(patches / f"{sample}.h5", "w") as h5:
            h5.attrs.update(patch_size_um=112.0, patch_size_px=224, min_tissue=0.5)
        import zarr

        group = zarr.open_group(str(fold_inputs["features"] / f"{sample}.zarr"), mode="r+")
        group.attrs.update(encoder="E", weights_sha256="0" * 64)
    return {**fold_inputs, "samples": root / "samples.tsv", "patches": patches}


def _final(study, model, **kwargs) -> Path:
    out = study["root"] / "models" / "E" / model / "final"
    return train_final(samples_tsv=study["samples"], genes=study["genes"], st_dir=study["st"],
                       features_dir=study["features"], graph_dir=study["graph"], model=model,
                       out=out, seed=0, patches_dir=study["patches"], **kwargs)


def test_the_final_model_chooses_by_its_own_search_on_its_own_validation(study, choosy):
    final = _final(study, choosy, search=SEARCH)
    params = json.loads((final / "params.json").read_text())
    search = json.loads((final / "search.json").read_text())
    assert params["chosen"] == {"offset": 1.0}
    assert search["chosen"]["offset"] == 1.0 and search["selected_on"] == params["val"]
    assert len(params["val"]) == 1 and params["val"][0] not in params["train"]
    assert len(pd.read_csv(final / "search.tsv", sep="\t")) == 3
    # the deployment record carries the settings the kept model was trained with
    assert json.loads((final / "deploy.json").read_text())["fold"] == "final"


def test_a_refit_final_model_trains_on_every_sample_with_the_choice_fixed(study, choosy):
    final = _final(study, choosy, search=SEARCH, refit=True)
    params = json.loads((final / "params.json").read_text())
    assert params["chosen"] == {"offset": 1.0} and params["refit"] == {"epochs": 1}
    seen_train, seen_val = json.loads((final / "seen.json").read_text())
    assert sorted(seen_train) == sorted(SAMPLES) and seen_val == []
    calibration = json.loads((final / "calibration.json").read_text())
    assert "before its refit" in calibration["predictor"]


def test_a_fold_model_and_a_final_model_write_the_same_kind_of_folder(study, choosy):
    fold = train_fold(splits=study["splits"], fold="fold0", genes=study["genes"],
                      st_dir=study["st"], features_dir=study["features"], graph_dir=study["graph"],
                      model=choosy, out=study["root"] / "fold0", search=SEARCH, seed=0)
    final = _final(study, choosy, search=SEARCH)
    files = {"manifest.json", "params.json", "history.tsv", "search.json", "search.tsv",
             "calibration.json", "calibration.npz"}
    assert files <= {p.name for p in fold.iterdir()}
    assert files | {"deploy.json"} <= {p.name for p in final.iterdir()}


def test_calibration_uses_the_validation_samples_or_the_held_out_region(study, choosy):
    with_val = train_fold(splits=study["splits"], fold="fold0", genes=study["genes"],
                          st_dir=study["st"], features_dir=study["features"],
                          graph_dir=study["graph"], model=choosy, out=study["root"] / "a")
    without = train_fold(splits=study["splits"], fold="fold1", genes=study["genes"],
                         st_dir=study["st"], features_dir=study["features"],
                         graph_dir=study["graph"], model=choosy, out=study["root"] / "b")
    a, b = load_calibration(with_val), load_calibration(without)
    # every spot of the validation sample: the difficulty chosen on half, quantiles on half
    assert a.n_spots == 5 and "P1S2" in a.spots and "quantiles set on the other 5" in a.spots
    assert b.n_spots == 1 and "held-out region" in b.spots  # half of 20 % of P2S1's 10 spots
    assert a.scores.shape == (5, 2) and np.isfinite(a.scores).all()
    assert a.difficulty in {"constant", "shift", "level"}
    assert {row["difficulty"] for row in a.candidates} == {"constant", "shift", "level"}


def test_a_model_that_fits_on_validation_is_calibrated_by_a_twin_that_did_not(study):
    out = train_fold(splits=study["splits"], fold="fold0", genes=study["genes"],
                     st_dir=study["st"], features_dir=study["features"], graph_dir=study["graph"],
                     model="ridge_hest", out=study["root"] / "ridge_hest")
    record = json.loads((out / "calibration.json").read_text())
    assert "twin" in record["predictor"] and record["n_spots"] == 5


def test_fold_predictions_carry_the_calibrated_intervals_and_the_shift_flag(study, choosy,
                                                                           caplog):
    import anndata as ad

    from stflow.crossval.predict import predict_fold

    model = train_fold(splits=study["splits"], fold="fold0", genes=study["genes"],
                       st_dir=study["st"], features_dir=study["features"],
                       graph_dir=study["graph"], model=choosy, out=study["root"] / "m")
    args = {"splits": study["splits"], "fold": "fold0", "genes": study["genes"],
            "st_dir": study["st"], "features_dir": study["features"], "graph_dir": study["graph"]}
    [path] = predict_fold(model, **args, out_dir=study["root"] / "p", level=0.8)
    adata = ad.read_h5ad(path)
    assert (adata.layers["lower"] <= adata.X).all() and (adata.X <= adata.layers["upper"]).all()
    assert adata.uns["stflow"]["intervals"]["level"] == 0.8
    assert list(adata.uns["stflow"]["intervals"]["levels"]) == [0.5, 0.8, 0.9, 0.95]
    assert {"shift_score", "shifted", "interval_scale"} <= set(adata.obs.columns)
    for name in ("calibration.json", "calibration.npz"):  # a model that could not be calibrated
        (model / name).unlink()
    model.with_name(model.name + ".sha256").unlink()  # its checksum record lists them
    [old] = predict_fold(model, **args, out_dir=study["root"] / "q")
    assert "lower" not in ad.read_h5ad(old).layers
    assert "no interval calibration" in caplog.text

"""`stflow train` / `stflow predict`: one fold in, a model folder and prediction h5ads out."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import zarr

from stflow.crossval.inputs import read_fold
from stflow.crossval.predict import predict_fold
from stflow.crossval.train import train_fold
from stflow.errors import StflowError
from stflow.models import registry as models
from stflow.models.capabilities import Capabilities
from stflow.models.parameters import Settings, setting

GENES = ["ERBB2", "GATA3", "ACTB"]
SAMPLES = {"P1S1": "P1", "P1S2": "P1", "P2S1": "P2"}


@dataclass(frozen=True)
class MeanSettings(Settings):
    """The test estimators' parameters, declared as every model's are."""

    seed: int = setting(0, "unused")
    offset: float = setting(0.0, "added to every gene's mean")
    epochs: int = setting(2, "history rows reported", low=1)


@dataclass(frozen=True)
class DeviceSettings(Settings):
    """A model that, like STFlow, runs on a device."""

    runs_on_device: ClassVar[bool] = True
    seed: int = setting(0, "unused")


class MeanEstimator(Capabilities):
    """A tiny real estimator: predicts each gene's training mean (plus an offset param)."""

    def __init__(self, seed: int, offset: float = 0.0, epochs: int = 2) -> None:
        self.seed, self.offset, self.epochs = seed, offset, epochs
        self.mean: np.ndarray | None = None
        self.seen: tuple[list[str], list[str]] = ([], [])

    def fit(self, train, val):
        self.seen = ([s.sample for s in train], [s.sample for s in val])
        self.mean = np.concatenate([s.targets for s in train]).mean(0) + self.offset
        return [{"epoch": e + 1, "train_loss": 1.0 / (e + 1), "val_loss": 0.5,
                 "val_pearson": 0.1 * e} for e in range(self.epochs)]

    def predict(self, slides):
        return [np.tile(self.mean, (s.n_spots, 1)) for s in slides]

    def save(self, directory: Path) -> None:
        np.save(directory / "mean.npy", self.mean)
        (directory / "seen.json").write_text(json.dumps(self.seen))

    @classmethod
    def load(cls, directory: Path) -> MeanEstimator:
        estimator = cls(seed=0)
        estimator.mean = np.load(directory / "mean.npy")
        return estimator


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setitem(models.MODELS, "mean",
                        models.ModelSpec(f"{__name__}:MeanEstimator", MeanSettings, {}, "test"))
    return "mean"


@pytest.fixture
def fold_inputs(tmp_path: Path) -> dict[str, Path]:
    """Ingested counts, features, graphs, splits and genes for three small sections."""
    rng = np.random.default_rng(0)
    dirs = {name: tmp_path / name for name in ("st", "features", "graph")}
    for directory in dirs.values():
        directory.mkdir()
    for sample, patient in SAMPLES.items():
        n = 12
        barcodes = [f"{sample}_{i}" for i in range(n)]
        coords = np.stack(np.meshgrid(np.arange(4), np.arange(3)), -1).reshape(-1, 2) * 100.0
        counts = rng.poisson(3, size=(n, len(GENES) + 1)).astype(np.int32)
        st = ad.AnnData(X=sp.csr_matrix(counts),
                        obs=pd.DataFrame({"in_tissue": True}, index=barcodes),
                        var=pd.DataFrame(index=GENES + ["OTHER"]))
        st.obsm["spatial"] = coords / 0.5
        st.obsm["spatial_um"] = coords
        st.uns.update({"mpp": 0.5, "sample": sample, "patient": patient})
        st.write_h5ad(dirs["st"] / f"{sample}.h5ad")
        # features and graph cover only the "patched" spots: the first 10, in reverse order
        keep = np.arange(10)[::-1]
        group = zarr.open_group(str(dirs["features"] / f"{sample}.zarr"), mode="w")
        group["features"] = rng.normal(size=(len(keep), 8)).astype(np.float32)
        group["barcode"] = np.asarray(barcodes)[keep].astype(str)
        group["coords_um"] = coords[keep]
        group.attrs["complete"] = True
        neighbors = np.stack([(np.arange(len(keep)) + j) % len(keep) for j in (1, 2)], 1)
        np.savez(dirs["graph"] / f"{sample}.npz", neighbors=neighbors,
                 barcode=np.asarray(barcodes)[keep].astype(str))
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"scheme": "patient", "folds": [
        {"name": "fold0", "train": ["P1S1"], "val": ["P1S2"], "test": ["P2S1"]},
        {"name": "fold1", "train": ["P2S1"], "val": [], "test": ["P1S1", "P1S2"]}]}))
    genes = tmp_path / "genes.json"
    genes.write_text(json.dumps({"genes": GENES[:2], "protocol": "list", "n_top": 2,
                                 "scope": "list"}))
    return {**dirs, "splits": splits, "genes": genes, "root": tmp_path}


def _train(inputs, model, out, params=None):
    return train_fold(splits=inputs["splits"], fold="fold0", genes=inputs["genes"],
                      st_dir=inputs["st"], features_dir=inputs["features"],
                      graph_dir=inputs["graph"], model=model, out=out, params=params, seed=3)


def test_train_writes_manifest_model_files_and_history(fold_inputs, registry):
    out = fold_inputs["root"] / "models" / "E" / "mean" / "fold0"
    _train(fold_inputs, registry, out, {"epochs": 3})
    assert json.loads((out / "manifest.json").read_text()) == {"model": "mean"}
    assert (out / "mean.npy").exists()
    # the fold's train and validation slides went to fit, the test slide did not
    assert json.loads((out / "seen.json").read_text()) == [["P1S1"], ["P1S2"]]
    history = pd.read_csv(out / "history.tsv", sep="\t")
    assert list(history.columns[:4]) == ["epoch", "train_loss", "val_loss", "val_pearson"]
    assert history["epoch"].tolist() == [1, 2, 3]
    assert json.loads((out / "params.json").read_text())["params"] == {"epochs": 3}
    # nothing temporary is left beside the folder
    assert sorted(p.name for p in out.parent.iterdir()) == ["fold0", "fold0.sha256"]


def test_failed_training_leaves_no_model_folder(fold_inputs, registry, monkeypatch):
    def boom(self, train, val):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(MeanEstimator, "fit", boom)
    out = fold_inputs["root"] / "models" / "mean" / "fold0"
    with pytest.raises(RuntimeError):
        _train(fold_inputs, registry, out)
    assert not out.exists()


def test_predict_writes_one_h5ad_per_test_sample_following_the_contract(fold_inputs, registry):
    model_dir = _train(fold_inputs, registry, fold_inputs["root"] / "m" / "fold0")
    out_dir = fold_inputs["root"] / "predictions" / "E" / "mean" / "fold0"
    written = predict_fold(model_dir, splits=fold_inputs["splits"], fold="fold0",
                           genes=fold_inputs["genes"], st_dir=fold_inputs["st"],
                           features_dir=fold_inputs["features"], graph_dir=fold_inputs["graph"],
                           out_dir=out_dir)
    assert written == [out_dir / "P2S1.h5ad"]
    pred = ad.read_h5ad(written[0])
    st = ad.read_h5ad(fold_inputs["st"] / "P2S1.h5ad")
    expected_barcodes = [f"P2S1_{i}" for i in range(10)][::-1]
    assert pred.obs_names.tolist() == expected_barcodes
    assert pred.var_names.tolist() == ["ERBB2", "GATA3"]
    assert pred.X.dtype == np.float32 and pred.X.shape == (10, 2)
    truth = np.log1p(st[expected_barcodes][:, ["ERBB2", "GATA3"]].X.toarray())
    np.testing.assert_allclose(pred.layers["truth"], truth, rtol=1e-6)
    np.testing.assert_allclose(pred.obsm["spatial_um"], st[expected_barcodes].obsm["spatial_um"])
    np.testing.assert_allclose(pred.obsm["spatial"], st[expected_barcodes].obsm["spatial"])
    assert bool(pred.obs["in_tissue"].all())
    info = pred.uns["stflow"]
    assert (info["kind"], info["sample"], info["model"], info["encoder"], info["fold"],
            info["seed"]) == ("prediction", "P2S1", "mean", "features", "fold0", 3)
    assert info["X"] == "log1p of raw counts (predicted mean)" and info["version"]
    assert pred.uns["log1p"] == {"base": None}


def test_predict_names_the_encoder_given(fold_inputs, registry):
    model_dir = _train(fold_inputs, registry, fold_inputs["root"] / "m" / "fold0")
    out_dir = fold_inputs["root"] / "p"
    predict_fold(model_dir, splits=fold_inputs["splits"], fold="fold0", genes=fold_inputs["genes"],
                 st_dir=fold_inputs["st"], features_dir=fold_inputs["features"], graph_dir=None,
                 out_dir=out_dir, encoder="uni")
    assert ad.read_h5ad(out_dir / "P2S1.h5ad").uns["stflow"]["encoder"] == "uni"


def test_unknown_fold_and_missing_inputs_are_explained(fold_inputs, registry, tmp_path):
    with pytest.raises(StflowError, match="no fold named 'fold7'"):
        read_fold(fold_inputs["splits"], "fold7")
    with pytest.raises(StflowError, match="splits file does not exist"):
        read_fold(tmp_path / "nope.json", "fold0")
    shutil.rmtree(fold_inputs["features"] / "P1S1.zarr")
    with pytest.raises(StflowError, match="P1S1.zarr: features store does not exist"):
        _train(fold_inputs, registry, tmp_path / "out")


def test_unknown_model_and_bad_params_are_refused(fold_inputs, registry, tmp_path):
    with pytest.raises(StflowError, match="unknown model"):
        _train(fold_inputs, "nope", tmp_path / "out")
    with pytest.raises(StflowError, match=r"unknown parameters \[.no_such_param.\]"):
        _train(fold_inputs, registry, tmp_path / "out", {"no_such_param": 1})


def test_cli_parses_params_json(fold_inputs, registry):
    import argparse

    from stflow.cli import models as fold

    parser = argparse.ArgumentParser()
    fold.register(parser.add_subparsers())
    out = fold_inputs["root"] / "cli" / "fold0"
    args = parser.parse_args([
        "train", "--splits", str(fold_inputs["splits"]), "--fold", "fold0",
        "--genes-json", str(fold_inputs["genes"]), "--st-dir", str(fold_inputs["st"]),
        "--features-dir", str(fold_inputs["features"]), "--graph-dir", str(fold_inputs["graph"]),
        "--model", registry, "--params", '{"offset": 1.0, "epochs": 1}', "--out", str(out)])
    args.func(args)
    assert len(pd.read_csv(out / "history.tsv", sep="\t")) == 1
    bad = parser.parse_args(["train", "--splits", "s", "--fold", "f", "--genes-json", "g",
                             "--st-dir", "s", "--features-dir", "f", "--model", "m",
                             "--params", "[1, 2]", "--out", "o"])
    with pytest.raises(StflowError, match="--params"):
        bad.func(bad)


def _predict(inputs, model_dir, out_dir, genes=None):
    return predict_fold(model_dir, splits=inputs["splits"], fold="fold0",
                        genes=genes or inputs["genes"], st_dir=inputs["st"],
                        features_dir=inputs["features"], graph_dir=inputs["graph"],
                        out_dir=out_dir)


def test_a_biomarker_is_trained_predicted_and_scored_apart_from_the_benchmark(fold_inputs,
                                                                                registry):
    from stflow.evaluation.fold_scores import evaluate_fold

    genes = fold_inputs["root"] / "with_biomarker.json"
    genes.write_text(json.dumps({"genes": GENES[1:], "protocol": "list", "n_top": 2,
                                 "scope": "list", "biomarkers": ["ERBB2"]}))
    model_dir = train_fold(splits=fold_inputs["splits"], fold="fold0", genes=genes,
                           st_dir=fold_inputs["st"], features_dir=fold_inputs["features"],
                           graph_dir=fold_inputs["graph"], model=registry,
                           out=fold_inputs["root"] / "m" / "fold0", seed=3)
    written = _predict(fold_inputs, model_dir, fold_inputs["root"] / "p", genes=genes)
    pred = ad.read_h5ad(written[0])
    assert pred.var_names.tolist() == ["GATA3", "ACTB", "ERBB2"]  # benchmark, then biomarker
    assert list(pred.uns["stflow"]["biomarkers"]) == ["ERBB2"]
    scores = evaluate_fold(written, fold_inputs["splits"], "E", registry, "fold0")
    assert scores["n_genes"] == 2 and set(scores["pearson_per_gene"]) == {"GATA3", "ACTB"}
    assert set(scores["biomarker_pearson"]) == {"ERBB2"}


def test_predict_refuses_other_genes_than_the_model_was_trained_on(fold_inputs, registry):
    model_dir = _train(fold_inputs, registry, fold_inputs["root"] / "m" / "fold0")
    other = fold_inputs["root"] / "other_genes.json"
    other.write_text(json.dumps({"genes": GENES[1:], "protocol": "list", "n_top": 2,
                                 "scope": "list"}))
    with pytest.raises(StflowError, match=r"other_genes.json: lists 2 genes that differ .*"
                       r"params.json"):
        _predict(fold_inputs, model_dir, fold_inputs["root"] / "p", genes=other)
    assert not (fold_inputs["root"] / "p").exists()


def test_predict_refuses_features_of_another_encoder_or_weights(fold_inputs, registry):
    for sample in SAMPLES:
        zarr.open_group(str(fold_inputs["features"] / f"{sample}.zarr"), mode="r+").attrs.update(
            {"encoder": "uni", "weights_sha256": "a" * 64})
    model_dir = _train(fold_inputs, registry, fold_inputs["root"] / "m" / "fold0")
    trained = json.loads((model_dir / "params.json").read_text())["features"]
    assert trained == {"encoder": "uni", "weights_sha256": "a" * 64}
    _predict(fold_inputs, model_dir, fold_inputs["root"] / "ok")  # same features: fine
    zarr.open_group(str(fold_inputs["features"] / "P2S1.zarr"), mode="r+").attrs[
        "weights_sha256"] = "b" * 64
    with pytest.raises(StflowError, match="features made by .*'bbbb.*trained on"):
        _predict(fold_inputs, model_dir, fold_inputs["root"] / "p")


class DeviceEstimator(MeanEstimator):
    """An estimator that, like STFlow, takes a device; load takes one too."""

    def __init__(self, seed: int, device: str = "auto") -> None:
        super().__init__(seed)
        self.device = device

    def save(self, directory: Path) -> None:
        super().save(directory)
        (directory / "device.txt").write_text(self.device)

    @classmethod
    def load(cls, directory: Path, device: str = "auto") -> DeviceEstimator:
        estimator = cls(seed=0, device=device)
        estimator.mean = np.load(directory / "mean.npy")
        return estimator


def test_device_is_a_flag_given_to_models_that_take_one_and_not_a_parameter(
        fold_inputs, monkeypatch):
    monkeypatch.setitem(models.MODELS, "dev", models.ModelSpec(f"{__name__}:DeviceEstimator",
                                                            DeviceSettings))
    out = train_fold(splits=fold_inputs["splits"], fold="fold0", genes=fold_inputs["genes"],
                     st_dir=fold_inputs["st"], features_dir=fold_inputs["features"],
                     graph_dir=None, model="dev", out=fold_inputs["root"] / "d", device="cuda")
    assert (out / "device.txt").read_text() == "cuda"
    assert json.loads((out / "params.json").read_text())["params"] == {}
    assert models.load_estimator(out, device="cpu").device == "cpu"


def test_cli_takes_a_device(registry):
    import argparse

    from stflow.cli import models as fold

    parser = argparse.ArgumentParser()
    fold.register(parser.add_subparsers())
    common = ["--splits", "s", "--fold", "f", "--genes-json", "g", "--st-dir", "s",
              "--features-dir", "f"]
    args = parser.parse_args(["predict", "--model-dir", "m", *common, "--device", "cpu",
                              "--out", "o"])
    assert args.device == "cpu"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", *common, "--model", "m", "--device", "tpu", "--out", "o"])


class SelectingMeanEstimator(MeanEstimator):
    """MeanEstimator that 'selects' its epoch on validation and can refit with it fixed."""

    refits = True

    def refit_params(self, history):
        best = max(history, key=lambda row: row["val_pearson"])
        return {"epochs": int(best["epoch"])}


def test_refit_retrains_on_train_and_validation_with_the_validated_choice(
        fold_inputs, monkeypatch):
    monkeypatch.setitem(models.MODELS, "selecting", models.ModelSpec(
        f"{__name__}:SelectingMeanEstimator", MeanSettings, {}, "test"))
    out = fold_inputs["root"] / "models" / "selecting" / "fold0"
    train_fold(splits=fold_inputs["splits"], fold="fold0", genes=fold_inputs["genes"],
               st_dir=fold_inputs["st"], features_dir=fold_inputs["features"],
               graph_dir=fold_inputs["graph"], model="selecting", out=out, params={"epochs": 4},
               seed=3, refit=True)
    # the kept model saw train + validation, nothing held out, and the test slide never
    assert json.loads((out / "seen.json").read_text()) == [["P1S1", "P1S2"], []]
    params = json.loads((out / "params.json").read_text())
    assert params["refit"] == {"epochs": 4}  # the epoch with the best validation score
    # a model that selects nothing is kept as fitted, and says so
    plain = fold_inputs["root"] / "models" / "mean" / "fold0"
    monkeypatch.setitem(models.MODELS, "mean", models.ModelSpec(
        f"{__name__}:MeanEstimator", MeanSettings, {}, "test"))
    train_fold(splits=fold_inputs["splits"], fold="fold0", genes=fold_inputs["genes"],
               st_dir=fold_inputs["st"], features_dir=fold_inputs["features"],
               graph_dir=fold_inputs["graph"], model="mean", out=plain, seed=3, refit=True)
    assert json.loads((plain / "params.json").read_text())["refit"] is None
    assert json.loads((plain / "seen.json").read_text()) == [["P1S1"], ["P1S2"]]


def test_a_search_records_the_chosen_values_and_every_trial(fold_inputs, registry):
    out = fold_inputs["root"] / "models" / "mean" / "fold0"
    train_fold(splits=fold_inputs["splits"], fold="fold0", genes=fold_inputs["genes"],
               st_dir=fold_inputs["st"], features_dir=fold_inputs["features"],
               graph_dir=fold_inputs["graph"], model="mean", out=out, seed=3,
               search={"trials": 3, "space": {"offset": [0.0, 1.0], "epochs": [2, 5]}})
    record = json.loads((out / "search.json").read_text())
    assert record["selected_on"] == ["P1S2"]  # the fold's validation sample, never its test
    trials = pd.read_csv(out / "search.tsv", sep="\t")
    assert len(trials) == 3 and {"offset", "epochs", "val_pearson"} <= set(trials.columns)
    chosen = json.loads((out / "params.json").read_text())["chosen"]
    assert chosen["epochs"] == 5  # MeanEstimator's best validation score grows with epochs
    assert chosen["offset"] in (0.0, 1.0)
    with pytest.raises(StflowError, match="search.mean.space.layers"):
        train_fold(splits=fold_inputs["splits"], fold="fold0", genes=fold_inputs["genes"],
                   st_dir=fold_inputs["st"], features_dir=fold_inputs["features"],
                   graph_dir=fold_inputs["graph"], model="mean", out=out, seed=3,
                   search={"space": {"layers": [1]}})


STFLOW_TINY = {"hidden": 16, "layers": 1, "heads": 2, "dropout": 0.0, "k": 4, "epochs": 3,
               "patience": 3, "regions_per_slide": 2, "regions_per_step": 2}


def _train_cli(inputs: dict[str, Path], model: str, params: dict, out: Path) -> int:
    from stflow.cli import main

    return main(["train", "--splits", str(inputs["splits"]), "--fold", "fold0",
                 "--genes-json", str(inputs["genes"]), "--st-dir", str(inputs["st"]),
                 "--features-dir", str(inputs["features"]), "--graph-dir", str(inputs["graph"]),
                 "--model", model, "--params", json.dumps(params), "--device", "cpu",
                 "--out", str(out)])


def test_train_reports_each_epoch_as_it_ends_and_history_tsv_keeps_the_rows(
        fold_inputs, monkeypatch, caplog):
    """`stflow train` logs every epoch (loss, validation Pearson, the best so far) and appends
    its row to {out}.progress.tsv when the epoch ends, so a long run can be followed before
    the model folder appears; the folder's history.tsv then holds the same rows."""
    import logging
    import re

    from stflow.models import progress
    from stflow.models.progress import HISTORY_COLUMNS

    out = fold_inputs["root"] / "models" / "fold0"
    seen: list[tuple[dict, int]] = []  # (row, rows in the progress file as the epoch ended)
    stage = progress.ProgressFile.stage

    def watched(self, name):
        write = stage(self, name)

        def on_epoch(row):
            write(row)
            seen.append((dict(row), len(pd.read_csv(self.path, sep="\t"))))
        return on_epoch

    monkeypatch.setattr(progress.ProgressFile, "stage", watched)
    with caplog.at_level(logging.INFO):
        assert _train_cli(fold_inputs, "stflow", STFLOW_TINY, out) == 0

    assert [row["epoch"] for row, _ in seen] == [1, 2, 3]
    assert [rows for _, rows in seen] == [1, 2, 3]  # the file grew as each epoch ended
    assert not list(out.glob("*progress*"))  # beside the atomically written folder, not in it
    rows = pd.read_csv(out.parent / "fold0.progress.tsv", sep="\t")
    history = pd.read_csv(out / "history.tsv", sep="\t")
    assert list(history.columns) == HISTORY_COLUMNS  # history.tsv as before
    assert list(rows["stage"]) == ["fit"] * 3 and (rows["seconds"] >= 0).all()
    pd.testing.assert_frame_equal(rows[HISTORY_COLUMNS], history, rtol=1e-5)
    pd.testing.assert_frame_equal(pd.DataFrame([row for row, _ in seen])[HISTORY_COLUMNS],
                                  history, rtol=1e-5)
    for epoch in (1, 2, 3):
        assert re.search(rf"epoch {epoch}/3 train_loss \d+\.\d{{4}} val_pearson -?\d\.\d{{4}} "
                         rf"\(best -?\d\.\d{{4}} @[1-3]\) \d+\.\d s", caplog.text), caplog.text


def test_a_model_without_epochs_logs_one_line_and_its_rows_end_the_progress_file(
        fold_inputs, registry, caplog):
    import logging

    out = fold_inputs["root"] / "models" / "mean"
    with caplog.at_level(logging.INFO):
        assert _train_cli(fold_inputs, registry, {"epochs": 2}, out) == 0
    assert len([r for r in caplog.records if r.getMessage().startswith("fitted ")]) == 1
    rows = pd.read_csv(f"{out}.progress.tsv", sep="\t")
    history = pd.read_csv(out / "history.tsv", sep="\t")
    pd.testing.assert_frame_equal(rows[list(history.columns)], history)

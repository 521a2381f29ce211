"""The simulator writes her2st's raw layout, and its images and counts carry the designed truth."""

from __future__ import annotations

import argparse
import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage

from stflow.atomic import sha256_file
from stflow.cli.data import register
from stflow.config_checks import check_config, with_defaults
from stflow.data.simulator import SPOT_COLUMNS, simulate
from stflow.data.simulator.expression import Batch, make_programme
from stflow.data.simulator.image import EOSIN, HAEMATOXYLIN, SHIFT, Stain
from stflow.errors import StflowError
from stflow.schema import load_schema
from stflow.study import Study

REPO = Path(__file__).resolve().parents[1]

PATCH_UM = 112.0


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("sim") / "synthetic"
    return out, simulate(out, n_patients=2, sections_per_patient=2, grid=12, n_genes=50, seed=3)


def load(out: Path, sample: str) -> tuple[dict, pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Truth, count table, spot file and image of one section."""
    truth = dict(np.load(out / "truth" / f"{sample}.npz"))
    counts = pd.read_csv(out / "data" / "ST-cnts" / f"{sample}.tsv.gz", sep="\t", index_col=0)
    spots = pd.read_csv(out / "data" / "ST-spotfiles" / f"{sample}_selection.tsv", sep="\t")
    patient = sample[: sample.index("S")]
    image = np.asarray(Image.open(out / "data" / "ST-imgs" / patient / sample / f"{sample}_HE.jpg"))
    return truth, counts, spots, image


def patches(image: np.ndarray, pixel_xy: np.ndarray, mpp: float) -> np.ndarray:
    """(N, S, S, 3) crops of PATCH_UM around each spot centre."""
    half = int(PATCH_UM / mpp / 2)
    return np.stack([image[int(y) - half:int(y) + half, int(x) - half:int(x) + half]
                     for x, y in pixel_xy])


def test_raw_layout_is_exactly_her2st(sim: tuple[Path, list]) -> None:
    out, sections = sim
    assert [(s.patient, s.sample) for s in sections] == [
        ("P1", "P1S1"), ("P1", "P1S2"), ("P2", "P2S1"), ("P2", "P2S2")]
    for section in sections:
        assert section.counts == out / "data" / "ST-cnts" / f"{section.sample}.tsv.gz"
        assert section.spots == out / "data" / "ST-spotfiles" / f"{section.sample}_selection.tsv"
        assert section.image.parent == out / "data" / "ST-imgs" / section.patient / section.sample
        header = gzip.decompress(section.counts.read_bytes()).decode().split("\n", 1)[0]
        assert header.startswith("\t")  # first column unnamed, then gene symbols
        counts = pd.read_csv(section.counts, sep="\t", index_col=0)
        assert counts.shape == (section.n_spots, 50)
        assert {"ERBB2", "GATA3", "GENE001"} <= set(counts.columns)
        assert all(re.fullmatch(r"\d+x\d+", spot) for spot in counts.index)
        assert list(counts.index) == sorted(counts.index)
        assert all(dtype.kind == "i" for dtype in counts.dtypes)
        spots = pd.read_csv(section.spots, sep="\t")
        assert list(spots.columns) == SPOT_COLUMNS
        assert (spots["selected"] == 1).all()
        ids = spots["x"].astype(str) + "x" + spots["y"].astype(str)
        assert set(counts.index) < set(ids)  # a handful of listed spots have no counts
        assert 1 <= len(spots) - len(counts) <= 3 and len(spots) == section.n_listed
        # pixel centres sit on a 100 px (200 µm at 2 µm/px) grid with small jitter
        for axis in "xy":
            slope = np.polyfit(spots[axis], spots[f"pixel_{axis}"], 1)[0]
            assert slope == pytest.approx(100.0, rel=0.01)
            residual = spots[f"pixel_{axis}"] - spots[f"new_{axis}"] * 100.0
            assert np.ptp(residual) < 0.2 and np.ptp(spots[f"new_{axis}"] - spots[axis]) > 0.02
        with Image.open(section.image) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            width, height = image.size
        assert spots["pixel_x"].between(0, width).all() and spots["pixel_y"].between(0, height).all()


def test_sha256sums_lists_every_data_file_with_its_hash(sim: tuple[Path, list]) -> None:
    out, _ = sim
    lines = (out / "SHA256SUMS").read_text().splitlines()
    listed = {}
    for line in lines:
        digest, path = re.fullmatch(r"([0-9a-f]{64})  (\./data/\S+)", line).groups()
        listed[path[2:]] = digest
    on_disk = {p.relative_to(out).as_posix() for p in (out / "data").rglob("*") if p.is_file()}
    assert set(listed) == on_disk and len(on_disk) == 4 * 3
    assert all(sha256_file(out / rel) == digest for rel, digest in listed.items())


def test_her2st_reader_ingests_it(sim: tuple[Path, list]) -> None:
    from stflow.data.sources.her2st import read_sample

    out, sections = sim
    sample = read_sample(out, "P2S1")
    truth = dict(np.load(out / "truth" / "P2S1.npz"))
    assert sample.patient == "P2" and sample.mpp == pytest.approx(2.0, rel=0.005)
    assert list(sample.counts.obs_names) == list(truth["barcode"])
    assert sample.counts.n_obs == sections[2].n_spots
    np.testing.assert_allclose(sample.spatial_px, truth["pixel_xy"], atol=0.01)


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    args = dict(n_patients=1, sections_per_patient=1, grid=8, n_genes=46)
    simulate(tmp_path / "a", seed=7, **args)
    simulate(tmp_path / "b", seed=7, **args)
    simulate(tmp_path / "c", seed=8, **args)
    sums = [(tmp_path / d / "SHA256SUMS").read_text() for d in "abc"]
    assert sums[0] == sums[1] and sums[0] != sums[2]
    truth_a, truth_b = (np.load(tmp_path / d / "truth" / "P1S1.npz") for d in "ab")
    assert all(np.array_equal(truth_a[k], truth_b[k]) for k in truth_a.files)
    simulate(tmp_path / "a", seed=8, **args)  # an earlier simulation is replaced whole
    assert (tmp_path / "a" / "SHA256SUMS").read_text() == sums[2]


def test_counts_are_zero_inflated_nonnegative_integers(sim: tuple[Path, list]) -> None:
    out, _ = sim
    truth, counts, _, _ = load(out, "P1S1")
    x = counts.to_numpy()
    assert x.dtype.kind == "i" and x.min() >= 0 and x.max() > 50
    mean, theta, pi = truth["mean"], truth["theta"], truth["pi"]
    nb_zero = ((theta / (theta + mean)) ** theta).mean(axis=0)  # zeros without inflation
    observed = (x == 0).mean(axis=0)
    inflated = pi > 0.15
    assert inflated.sum() >= 10
    assert np.mean(observed[inflated] - nb_zero[inflated]) > 0.1
    np.testing.assert_allclose(observed[inflated] - nb_zero[inflated],
                               pi[inflated] * (1 - nb_zero[inflated]), atol=0.12)
    role = truth["gene_role"]
    assert (observed[role == "rare"] > 0.85).all()  # rare genes: almost never seen
    library = x.sum(axis=1)
    assert library.std() / library.mean() > 0.15  # library sizes vary between spots


def test_nuclei_in_image_patches_follow_the_domain(sim: tuple[Path, list]) -> None:
    out, _ = sim
    dark, blob = {}, {}
    for sample in ("P1S1", "P1S2", "P2S1", "P2S2"):
        truth, _, _, image = load(out, sample)
        crops = patches(image, truth["pixel_xy"], float(truth["mpp"]))
        nuclear = crops.astype(int).sum(axis=-1) < 330  # dark purple pixels
        pure = truth["domain_fraction"].max(axis=1) > 0.9
        for d, name in enumerate(truth["domain_names"]):
            for crop in nuclear[pure & (truth["domain"] == d)]:
                dark.setdefault(name, []).append(crop.mean())
                labels, n = ndimage.label(crop)
                if n:
                    blob.setdefault(name, []).append(crop.sum() / n)
    dark = {k: float(np.mean(v)) for k, v in dark.items()}
    blob = {k: float(np.median(v)) for k, v in blob.items()}
    assert dark["immune"] > dark["tumour"] > 2 * dark["stroma"]
    assert dark["stroma"] > dark["adipose"]
    assert blob["tumour"] > 1.3 * blob["immune"]  # large nuclei versus small lymphocytes


def test_image_is_white_outside_the_tissue(sim: tuple[Path, list]) -> None:
    out, _ = sim
    _, _, _, image = load(out, "P1S1")
    corner = image[:20, :20].astype(int)
    assert corner.min() > 225


def partial_corr(y: np.ndarray, x: np.ndarray, design: np.ndarray) -> float:
    """Correlation of y and x after regressing both on design."""
    ry = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    rx = x - design @ np.linalg.lstsq(design, x, rcond=None)[0]
    return float(np.corrcoef(ry, rx)[0, 1])


def test_receivers_follow_neighbour_ligand_beyond_their_own_domain(sim: tuple[Path, list]) -> None:
    out, _ = sim
    receivers, noise = [], []
    for sample in ("P1S1", "P1S2", "P2S1", "P2S2"):
        truth, counts, _, _ = load(out, sample)
        y = np.log1p(counts.to_numpy(dtype=float))
        own = np.column_stack([np.eye(4)[truth["domain"]], truth["domain_fraction"],
                               truth["ligand_activity"], truth["density"]])
        signal = truth["neighbor_signal"]
        assert (truth["gene_role"][truth["receiver_index"]] == "receiver").all()
        for gene, pair in zip(truth["receiver_index"], truth["receiver_pair"], strict=True):
            receivers.append(partial_corr(y[:, gene], signal[:, pair], own))
        for gene in np.flatnonzero(truth["gene_role"] == "noise")[:6]:
            noise.append(partial_corr(y[:, gene], signal[:, 0], own))
    assert np.mean(receivers) > 0.2 and np.mean(np.array(receivers) > 0) > 0.8
    assert abs(np.mean(noise)) < 0.08


def test_patients_differ_by_a_batch_shift(sim: tuple[Path, list]) -> None:
    out, _ = sim
    log_means, nuclei_colour = {}, {}
    for sample in ("P1S1", "P1S2", "P2S1", "P2S2"):
        truth, counts, _, image = load(out, sample)
        # genes without spatial structure, so only depth and the patient's shift move them
        steady = np.isin(truth["gene_role"], ["housekeeping", "noise"])
        log_means[sample] = np.log(counts.to_numpy()[:, steady].mean(axis=0) + 0.5)
        # stain hue (chromaticity) of nuclei and of eosin-stained tissue: brightness and the
        # domain mix change little of it, the patient's stain vectors do
        pixels = image.reshape(-1, 3).astype(float)
        brightness = pixels.sum(axis=1)
        hue = pixels / np.maximum(brightness, 1)[:, None]
        nuclei_colour[sample] = 100 * np.concatenate([
            hue[brightness < 330].mean(axis=0), hue[(brightness > 450) & (brightness < 700)].mean(0)])

    def spread(a: str, b: str) -> float:
        return float(np.std(log_means[a] - log_means[b]))

    def colour(a: str, b: str) -> float:
        return float(np.linalg.norm(nuclei_colour[a] - nuclei_colour[b]))

    within = max(spread("P1S1", "P1S2"), spread("P2S1", "P2S2"))
    assert min(spread("P1S1", "P2S1"), spread("P1S2", "P2S2")) > 1.5 * within
    assert min(colour("P1S1", "P2S1"), colour("P1S2", "P2S2")) > 2 * max(
        colour("P1S1", "P1S2"), colour("P2S1", "P2S2"))


@pytest.mark.parametrize(("kwargs", "words"), [
    (dict(grid=4), "--grid"),
    (dict(n_genes=20), "--n-genes"),
    (dict(mpp=0.0), "--um-per-px"),
    (dict(mpp=-1.0), "--um-per-px"),
    (dict(mpp=float("nan")), "--um-per-px"),
    (dict(n_patients=0), "patient"),
    (dict(expression_shift=-1.0), r"--expression-shift \(simulate.expression_shift\)"),
    (dict(stain_shift=float("nan")), r"--stain-shift \(simulate.stain_shift\)"),
])
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict, words: str) -> None:
    with pytest.raises(StflowError, match=words):
        simulate(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_a_folder_with_other_files_is_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(StflowError, match="not empty"):
        simulate(tmp_path, grid=8, n_genes=46)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_cli_subcommand_writes_the_dataset(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["simulate", "--out", str(tmp_path / "syn"), "--n-patients", "1",
                              "--n-sections", "1", "--grid", "8", "--n-genes", "46",
                              "--um-per-px", "2.0", "--expression-shift", "0",
                              "--stain-shift", "0.5", "--seed", "1"])
    args.func(args)
    assert (tmp_path / "syn" / "data" / "ST-cnts" / "P1S1.tsv.gz").is_file()
    assert (tmp_path / "syn" / "truth" / "README").read_text().startswith("stflow simulate")
    assert not np.load(tmp_path / "syn" / "truth" / "P1S1.npz")["patient_log_shift"].any()


# --- how much patients differ: simulate.expression_shift and simulate.stain_shift ---------

def test_shift_scales_of_one_draw_exactly_the_unscaled_batch_and_stain() -> None:
    """The formulas before the setting existed, drawn from the same generator: at scale 1
    the same numbers, so the default study's files do not change."""
    programme = make_programme(np.random.default_rng(0), 50)
    rng = np.random.default_rng(11)
    shift = rng.normal(0.0, 0.25, 50)
    shift[programme.genes == "ERBB2"] += rng.normal(0.0, 0.6)
    depth, ambient = float(np.exp(rng.normal(0.0, 0.3))), float(rng.uniform(0.02, 0.15))
    steps = []
    for vector in (HAEMATOXYLIN, EOSIN):
        step = rng.standard_normal(3)
        moved = np.clip(vector + SHIFT * step / np.linalg.norm(step), 0.03, None)
        steps.append(moved / np.linalg.norm(moved) * np.linalg.norm(vector))
    strengths = float(np.exp(rng.normal(0, 0.12))), float(np.exp(rng.normal(0, 0.15)))
    again = np.random.default_rng(11)
    batch, stain = Batch.draw(again, programme, 1.0), Stain.draw(again, 1.0)
    assert np.array_equal(batch.log_shift, shift)
    assert (batch.depth, batch.ambient) == (depth, ambient)
    assert np.array_equal(stain.haematoxylin, steps[0]) and np.array_equal(stain.eosin, steps[1])
    assert (stain.h_strength, stain.e_strength) == strengths


def test_default_arguments_are_the_scales_of_one(tmp_path: Path) -> None:
    args = dict(n_patients=1, sections_per_patient=1, grid=8, n_genes=46, seed=5)
    simulate(tmp_path / "a", **args)
    simulate(tmp_path / "b", expression_shift=1.0, stain_shift=1.0, **args)
    assert (tmp_path / "a" / "SHA256SUMS").read_text() == (
        tmp_path / "b" / "SHA256SUMS").read_text()


def patient_spreads(out: Path, samples: list[str]) -> tuple[float, float, float, float]:
    """Spread of steady genes' log mean counts and distance of nuclei colour, between
    patients (first sections) and within them (a patient's two sections), worst case."""
    log_means, colours = {}, {}
    for sample in samples:
        truth, counts, _, image = load(out, sample)
        steady = np.isin(truth["gene_role"], ["housekeeping", "noise"])
        log_means[sample] = np.log(counts.to_numpy()[:, steady].mean(axis=0) + 0.5)
        pixels = image.reshape(-1, 3).astype(float)
        nuclei = pixels[pixels.sum(axis=1) < 330]
        colours[sample] = 100 * (nuclei / nuclei.sum(axis=1, keepdims=True)).mean(axis=0)
    firsts = [s for s in samples if s.endswith("S1")]
    pairs_between = [(a, b) for i, a in enumerate(firsts) for b in firsts[i + 1:]]
    pairs_within = [(s, s[:-1] + "2") for s in firsts]

    def spread(pairs: list, values: dict, gap) -> float:
        return float(np.mean([gap(values[a] - values[b]) for a, b in pairs]))

    return (spread(pairs_between, log_means, np.std), spread(pairs_within, log_means, np.std),
            spread(pairs_between, colours, np.linalg.norm),
            spread(pairs_within, colours, np.linalg.norm))


def test_larger_shift_scales_make_patients_differ_more(tmp_path: Path) -> None:
    args = dict(n_patients=3, sections_per_patient=2, grid=8, n_genes=46, seed=2)
    samples = [f"P{p}S{s}" for p in (1, 2, 3) for s in (1, 2)]
    simulate(tmp_path / "one", **args)
    simulate(tmp_path / "three", expression_shift=3.0, stain_shift=3.0, **args)
    one, three = (patient_spreads(tmp_path / d, samples) for d in ("one", "three"))
    ratios = [(b / w, cb / cw) for b, w, cb, cw in (one, three)]
    assert ratios[1][0] > 1.5 * ratios[0][0]  # expression: between vs within patients
    assert ratios[1][1] > 1.5 * ratios[0][1]  # stain colour: between vs within patients
    spots = "data/ST-spotfiles/P3S2_selection.tsv"  # the same tissue and spot grid
    assert (tmp_path / "one" / spots).read_text() == (tmp_path / "three" / spots).read_text()


def test_shift_scales_of_zero_make_patients_alike() -> None:
    programme = make_programme(np.random.default_rng(0), 50)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        batch, stain = Batch.draw(rng, programme, 0.0), Stain.draw(rng, 0.0)
        assert not batch.log_shift.any() and batch.depth == 1.0
        np.testing.assert_allclose(np.stack([stain.haematoxylin, stain.eosin]),
                                   np.stack([HAEMATOXYLIN, EOSIN]))
        assert stain.h_strength == stain.e_strength == 1.0


def merged(base: dict, over: dict) -> dict:
    """``over`` merged into ``base`` key by key, as Snakemake merges a --configfile."""
    out = dict(base)
    for key, value in over.items():
        out[key] = (merged(base[key], value) if isinstance(value, dict)
                    and isinstance(base.get(key), dict) else value)
    return out


def test_the_cohort_preset_is_valid_and_leaves_one_of_six_patients_out(tmp_path: Path) -> None:
    import yaml

    config = merged(yaml.safe_load((REPO / "config" / "config.yaml").read_text()),
                    yaml.safe_load((REPO / "config" / "cohort.yaml").read_text()))
    schema = load_schema(REPO / "config" / "schema.yaml")
    assert check_config(config, schema, cwd=tmp_path) == []
    study = Study(with_defaults(config, schema))
    name = config["dataset"]["name"]
    samples = study.samples(name)
    patients = {study.patient(name, s) for s in samples}
    assert len(patients) >= 6 and len(samples) >= 2 * len(patients)
    assert config["splits"]["scheme"] == "patient" and len(study.folds(name)) == len(patients)
    assert config["simulate"]["expression_shift"] > 1 and config["simulate"]["stain_shift"] > 1


def test_the_cohort_benchmark_measures_under_coverage_of_a_shifted_patient() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "cohort_coverage", REPO / "benchmarks" / "cohort_coverage.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from stflow.data.dataset import Slide

    rng = np.random.default_rng(0)
    weights = rng.normal(size=(4, 8))
    slides, patients = {}, {}
    for p in range(6):  # a patient's expression offset, and a stain the features show
        offset, stain = rng.normal(0.0, 0.5, 8), rng.normal(0.0, 1.0, 6)
        x = rng.normal(size=(60, 4))
        y = (x @ weights + offset + rng.normal(0.0, 0.3, (60, 8))).astype(np.float32)
        features = np.c_[x, stain + rng.normal(0.0, 0.05, (60, 6))].astype(np.float32)
        slides[f"P{p}S1"] = Slide(f"P{p}S1", features, rng.uniform(0, 1e3, (60, 2)),
                                  np.arange(60).astype(str), y)
        patients[f"P{p}S1"] = f"P{p}"
    folds = [bench.fold_coverage(slides, patients, f"P{p}") for p in range(6)]
    within = np.mean([f["within"] for f in folds])
    across = np.mean([f["across"] for f in folds])
    # the ridge learns the training patients' offsets through their stain: calibrated on
    # their own spots, the intervals miss a new patient; out-of-patient residuals do not
    assert within < 0.6 and across > within + 0.2
    with pytest.raises(ValueError, match="at least 2 training patients"):
        bench.fold_coverage({"P0S1": slides["P0S1"], "P1S1": slides["P1S1"]},
                            patients, "P0")


def test_the_schema_refuses_what_the_simulator_cannot_honour():
    """A config the checks pass must simulate: the schema's floors are the simulator's."""
    from stflow.data.simulator import MIN_GRID, MIN_NOISE_GENES, programme_size
    from stflow.schema import load_schema

    schema = load_schema(Path(__file__).resolve().parents[1] / "config" / "schema.yaml")
    simulate = schema["properties"]["simulate"]["properties"]
    assert simulate["grid"]["minimum"] == MIN_GRID
    assert simulate["genes"]["minimum"] == programme_size() + MIN_NOISE_GENES

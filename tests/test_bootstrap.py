"""The 95 % interval of a fold score: test spots resampled in square spatial blocks within each
test slide, the same draws for every model of the fold, each replicate scored as the fold is."""

from __future__ import annotations

import numpy as np
import pytest

from stflow.errors import StflowError
from stflow.evaluation.bootstrap import (
    DEFAULT_BOOTSTRAP,
    BootstrapSettings,
    bca_interval,
    fold_bootstrap,
    fold_resamples,
    percentile_interval,
)
from stflow.evaluation.hest_metric import fold_metrics

PITCH_UM = 200.0  # legacy ST: spots 200 µm apart, as in her2st
GENES = 12


def grid(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Spot centres of a section on the ST lattice, jittered a little, in microns."""
    cells = np.stack(np.meshgrid(np.arange(cols), np.arange(rows)), -1).reshape(-1, 2)
    return cells * PITCH_UM + rng.uniform(-5, 5, size=cells.shape)


def smooth_field(coords: np.ndarray, rng: np.random.Generator, genes: int) -> np.ndarray:
    """Per gene a sum of random waves 1–3 mm long: expression that varies across regions, so
    neighbouring spots are alike."""
    field = np.zeros((len(coords), genes))
    for _ in range(4):
        direction = rng.normal(size=(2, genes))
        direction /= np.linalg.norm(direction, axis=0)
        wavelength = rng.uniform(1000, 3000, size=genes)
        field += np.sin(2 * np.pi * coords @ direction / wavelength + rng.uniform(0, 6, genes))
    return field


def simulated_fold(seed: int = 0, shapes=((14, 16), (12, 18), (15, 15))) -> dict:
    """Test slides of a fold: smooth truth plus spot noise, and a model that gets the regions
    partly right with a smooth error of its own."""
    rng = np.random.default_rng(seed)
    coords = [grid(r, c, rng) for r, c in shapes]
    truths, preds = [], []
    for xy in coords:
        signal = smooth_field(xy, rng, GENES)
        truths.append(2 + signal + 0.5 * rng.normal(size=signal.shape))
        preds.append(1 + 0.6 * signal + 0.8 * smooth_field(xy, rng, GENES)
                     + 0.3 * rng.normal(size=signal.shape))
    return {"truths": truths, "preds": preds, "coords": coords,
            "samples": [f"S{k}" for k in range(len(shapes))]}


def bootstrap(fold: dict, preds=None, settings=DEFAULT_BOOTSTRAP, name="fold0") -> np.ndarray:
    """The replicate fold scores of ``preds`` (default: the fold's model)."""
    result = fold_bootstrap(fold["truths"], preds or fold["preds"], fold["coords"],
                            fold["samples"], name, settings)
    return np.array(result["replicates"], dtype=float)


def resampled_spots(resamples, b: int) -> np.ndarray:
    """Replicate b spelled out: the pooled spots of every drawn block, as often as drawn."""
    return np.concatenate([np.repeat(np.flatnonzero(resamples.block == k), int(count))
                           for k, count in enumerate(resamples.counts[b])])


def test_each_replicate_is_the_fold_metric_of_its_resampled_spots():
    fold = simulated_fold()
    fold["truths"][1][:, 3] = 1.5   # constant in one slide's truth: varies only when pooled
    fold["preds"][0][:, 5] = 0.7    # constant in one slide's prediction
    resamples = fold_resamples(fold["coords"], fold["samples"], "fold0")
    replicates = bootstrap(fold)
    truth, pred = np.concatenate(fold["truths"]), np.concatenate(fold["preds"])
    for b in (0, 1, 500, 999):
        spots = resampled_spots(resamples, b)
        expected = fold_metrics([truth[spots]], [pred[spots]], list(range(GENES)), ["all"])
        assert replicates[b] == pytest.approx(expected["pearson_mean"], abs=1e-12)


def test_every_model_of_a_fold_is_scored_on_the_same_resamples():
    fold = simulated_fold()
    rng = np.random.default_rng(7)
    other = [p + 0.3 * rng.normal(size=p.shape) for p in fold["preds"]]  # the model plus noise
    first, second = bootstrap(fold), bootstrap(fold, preds=other)
    ci_width = np.subtract(*percentile_interval(second)[::-1])
    diff_width = np.subtract(*percentile_interval(second - first)[::-1])
    # paired: the draws move both models alike, so their difference varies far less
    assert diff_width < ci_width / 3
    shuffled = dict(fold)
    for key in ("truths", "preds", "coords"):  # the spots of slide 1 in another order
        shuffled[key] = [*fold[key][:1], fold[key][1][::-1], *fold[key][2:]]
    np.testing.assert_allclose(bootstrap(shuffled), first, atol=1e-12)


def test_the_draws_depend_on_the_seed_fold_and_sample_only():
    fold = simulated_fold()
    draws = fold_resamples(fold["coords"], fold["samples"], "fold0").counts
    assert np.array_equal(fold_resamples(fold["coords"], fold["samples"], "fold0").counts, draws)
    assert not np.array_equal(
        fold_resamples(fold["coords"], fold["samples"], "fold1").counts, draws)
    assert not np.array_equal(fold_resamples(fold["coords"], fold["samples"], "fold0",
                                             BootstrapSettings(seed=1)).counts, draws)
    # a slide's draws do not change with the other test slides of the fold
    alone = fold_resamples(fold["coords"][:1], fold["samples"][:1], "fold0").counts
    assert np.array_equal(alone, draws[:, :alone.shape[1]])


def test_blocks_are_squares_within_one_slide_and_each_slide_draws_its_own_number():
    fold = simulated_fold()
    resamples = fold_resamples(fold["coords"], fold["samples"], "fold0")
    assert resamples.side_um == {s: pytest.approx(4 * PITCH_UM, rel=0.05)
                                 for s in fold["samples"]}
    slide = np.repeat(np.arange(3), [len(c) for c in fold["coords"]])
    pooled = np.concatenate(fold["coords"])
    first = 0
    for k, sample in enumerate(fold["samples"]):
        n_blocks = resamples.n_blocks[sample]
        own = range(first, first + n_blocks)
        for block in own:
            spots = resamples.block == block
            assert set(slide[spots]) == {k}  # a block never spans two slides
            spread = pooled[spots].max(axis=0) - pooled[spots].min(axis=0)
            assert (spread < resamples.side_um[sample]).all()
        # every replicate draws exactly as many blocks from the slide as it has
        assert (resamples.counts[:, own].sum(axis=1) == n_blocks).all()
        first += n_blocks
    assert first == resamples.counts.shape[1]


def test_perfectly_correlated_predictions_collapse_the_interval_at_one():
    fold = simulated_fold()
    replicates = bootstrap(fold, preds=[3 * t - 1 for t in fold["truths"]])
    assert percentile_interval(replicates) == (pytest.approx(1.0), pytest.approx(1.0))


def test_the_interval_holds_the_fold_score_and_blocks_widen_it_for_smooth_errors():
    fold = simulated_fold()
    score = fold_metrics(fold["truths"], fold["preds"], list(range(GENES)),
                         fold["samples"])["pearson_mean"]
    result = fold_bootstrap(fold["truths"], fold["preds"], fold["coords"], fold["samples"],
                            "fold0")
    low, high = bca_interval(np.array(result["replicates"], dtype=float), score,
                             np.array(result["jackknife"], dtype=float))
    assert low < score < high
    assert high - low < 0.2
    # blocks smaller than the spot spacing resample single spots, as if neighbours were
    # independent: on errors that are alike in neighbouring spots that is too narrow
    spot_low, spot_high = percentile_interval(
        bootstrap(fold, settings=BootstrapSettings(block_um=PITCH_UM / 4)))
    assert spot_high - spot_low < 0.8 * (high - low)


def test_too_few_replicates_or_a_block_side_of_zero_is_refused_naming_it():
    with pytest.raises(StflowError, match=r"evaluation.bootstrap \(--bootstrap\): 50 "
                       r"replicates are too few.*Fix: set it to at least 100"):
        BootstrapSettings(n=50)
    with pytest.raises(StflowError, match=r"evaluation.block_um \(--block-um\): block side 0 "):
        BootstrapSettings(block_um=0)


def test_a_slide_whose_spots_share_one_position_needs_an_explicit_block_side():
    fold = simulated_fold(shapes=((3, 3),))
    fold["coords"] = [np.zeros_like(fold["coords"][0])]
    with pytest.raises(StflowError, match="S0: its 9 test spots have fewer than two distinct "
                       "positions.*set evaluation.block_um"):
        bootstrap(fold)
    assert np.isfinite(bootstrap(fold, settings=BootstrapSettings(block_um=800))).all()


def test_a_gene_constant_in_a_replicate_counts_as_zero_so_the_genes_stay_the_fold_s():
    fold = simulated_fold()
    resamples = fold_resamples(fold["coords"], fold["samples"], "fold0")
    region = np.flatnonzero(resamples.block == 0)   # gene 3 varies in one block only
    truth = np.concatenate(fold["truths"])
    truth[:, 3] = 1.5
    truth[region, 3] = 1.5 + np.arange(len(region))
    sizes = [len(t) for t in fold["truths"]]
    fold["truths"] = np.split(truth, np.cumsum(sizes)[:-1])
    replicates = bootstrap(fold)
    pred = np.concatenate(fold["preds"])
    missed = np.flatnonzero(resamples.counts[:, 0] == 0)[:3]
    assert len(missed) == 3
    for b in missed:
        spots = resampled_spots(resamples, b)
        others = fold_metrics([truth[spots]], [pred[spots]], list(range(GENES)), ["all"])
        assert others["n_constant_genes"] == 1   # scored alone, the gene would drop out
        assert replicates[b] == pytest.approx(others["pearson_mean"] * (GENES - 1) / GENES,
                                              abs=1e-12)


def test_the_bca_arithmetic_is_scipy_s_on_an_iid_sample():
    from scipy.stats import bootstrap as scipy_bootstrap

    x = np.random.default_rng(3).exponential(size=60)  # skewed: BCa moves the interval
    result = scipy_bootstrap((x,), np.mean, method="BCa", n_resamples=2000, rng=0)
    jackknife = (x.sum() - x) / (len(x) - 1)
    ours = bca_interval(result.bootstrap_distribution, x.mean(), jackknife)
    assert ours == pytest.approx(tuple(result.confidence_interval), rel=1e-12)
    assert ours != pytest.approx(percentile_interval(result.bootstrap_distribution))
    # all replicates equal: the point; the estimate outside the replicates: no interval
    assert bca_interval(np.ones(100), 1.0, np.ones(5)) == (1.0, 1.0)
    assert np.isnan(bca_interval(np.linspace(0, 1, 100), 2.0, jackknife)).all()


def test_the_jackknife_leaves_out_each_block_and_wider_blocks_are_bootstrapped_too():
    fold = simulated_fold()
    result = fold_bootstrap(fold["truths"], fold["preds"], fold["coords"], fold["samples"],
                            "fold0")
    resamples = fold_resamples(fold["coords"], fold["samples"], "fold0")
    truth, pred = np.concatenate(fold["truths"]), np.concatenate(fold["preds"])
    assert len(result["jackknife"]) == resamples.counts.shape[1]
    for k in (0, 7):
        rest = resamples.block != k
        expected = fold_metrics([truth[rest]], [pred[rest]], list(range(GENES)), ["all"])
        assert result["jackknife"][k] == pytest.approx(expected["pearson_mean"], abs=1e-12)
    assert set(result["wider"]) == {"2x", "8x"}
    for key, multiple in (("2x", 2), ("8x", 8)):
        wider = result["wider"][key]
        assert wider["block_um"] == {s: pytest.approx(multiple * result["block_um"][s])
                                     for s in fold["samples"]}
        assert sum(wider["n_blocks"].values()) < sum(result["n_blocks"].values())
        assert len(wider["replicates"]) == 1000
        assert len(wider["jackknife"]) == sum(wider["n_blocks"].values())
    # more blocks than replicates: the jackknife leaves out groups of blocks instead
    few = fold_bootstrap(fold["truths"], fold["preds"], fold["coords"], fold["samples"],
                         "fold0", BootstrapSettings(n=100, block_um=PITCH_UM))
    assert sum(few["n_blocks"].values()) > 100 and len(few["jackknife"]) == 100

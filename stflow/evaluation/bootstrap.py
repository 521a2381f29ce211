"""A 95 % interval for the fold score: a spatial block bootstrap of the test spots.

Neighbouring spots share tissue, so they are not independent observations: resampling spots
one by one would give too narrow an interval. Each test slide is therefore cut into square
blocks of ``block_um`` microns (default: 4 × the slide's median nearest-neighbour spot
distance), and a replicate draws, from every test slide separately, as many blocks as the
slide has, with replacement. The drawn spots of all test slides are pooled and scored as
:func:`~stflow.evaluation.metrics.fold_metrics` scores the fold: Pearson per gene over the
pooled spots, mean over the genes that vary.

The draws depend only on the bootstrap seed, the fold, the sample and the spots'
coordinates, never on the model: every model (and every training seed) of a fold is scored
on the same resamples, so the difference between two models can be bootstrapped pairwise.

A replicate is not built spot by spot: each block's count, means, centred sums of squares
and cross-products and largest absolute values are computed once, and a replicate combines
them with the number of times it draws each block (the stable pairwise update of Chan et
al.), then applies the rules of :func:`~stflow.metrics.pearson_per_gene` through
the same function.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stflow.errors import check_finite, check_shape, input_error
from stflow.metrics import correlation_from_moments

MIN_REPLICATES = 100
BLOCK_NEIGHBOUR_DISTANCES = 4  # default block side, in median nearest-neighbour distances
CHUNK_ELEMENTS = 2_000_000  # replicates × blocks × genes held at once while combining


@dataclass(frozen=True)
class BootstrapSettings:
    """The config's ``evaluation:`` section: replicates, block side (None: per slide from
    its spot spacing) and the seed of the draws."""

    n: int = 1000
    block_um: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n < MIN_REPLICATES:
            raise input_error("evaluation.bootstrap (--bootstrap)", f"{self.n} replicates are "
                              f"too few for a 95 % percentile interval (its tails would rest on "
                              f"{self.n * 0.025:g} replicates each)",
                              f"set it to at least {MIN_REPLICATES} (default 1000)")
        if self.block_um is not None and not self.block_um > 0:
            raise input_error("evaluation.block_um (--block-um)", f"block side {self.block_um} "
                              "µm is not positive", "give a side in microns larger than 0, or "
                              "null for 4 × each slide's median spot distance")
        if self.seed < 0:
            raise input_error("evaluation.seed (--bootstrap-seed)", f"seed {self.seed} is "
                              "negative", "give a seed of 0 or more")


DEFAULT_BOOTSTRAP = BootstrapSettings()


@dataclass(frozen=True)
class FoldResamples:
    """The blocks of a fold's test spots and how often each replicate draws each block.

    ``block``: (spots,) block of each spot of the pooled slides, numbered slide after slide;
    ``counts``: (replicates, blocks) draws of each block, each slide's row part summing to
    its number of blocks; ``side_um`` and ``n_blocks`` per sample.
    """

    block: np.ndarray
    counts: np.ndarray
    side_um: dict[str, float]
    n_blocks: dict[str, int]


def default_block_um(coords_um: np.ndarray, sample: str) -> float:
    """4 × the median distance from a spot to its nearest neighbour: blocks of a few spots
    per side, wider than the range over which neighbouring spots share tissue."""
    from scipy.spatial import cKDTree

    distance = cKDTree(coords_um).query(coords_um, k=2)[0][:, 1] if len(coords_um) > 1 else []
    distance = np.asarray(distance)
    distance = distance[np.isfinite(distance) & (distance > 0)]
    if not distance.size:
        raise input_error(sample, f"its {len(coords_um)} test spots have fewer than two distinct "
                          "positions, so no block side follows from their spacing",
                          "check obsm['spatial_um'] of its prediction file, or set "
                          "evaluation.block_um")
    return float(BLOCK_NEIGHBOUR_DISTANCES * np.median(distance))


def block_of_spots(coords_um: np.ndarray, side_um: float) -> np.ndarray:
    """Block of each spot: the square of side ``side_um`` (grid anchored at the slide's lowest
    coordinates) it falls in, numbered in grid order so the spots' order does not matter."""
    cells = np.floor((coords_um - coords_um.min(axis=0)) / side_um).astype(np.int64)
    return np.unique(cells, axis=0, return_inverse=True)[1].ravel()


def slide_generator(seed: int, fold: str, sample: str) -> np.random.Generator:
    """The random stream of one test slide in one fold: the same for every model."""
    digest = hashlib.sha256(f"{fold}\n{sample}".encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:16], "little")])


def fold_resamples(coords_um: Sequence[np.ndarray], samples: Sequence[str], fold: str,
                   settings: BootstrapSettings = DEFAULT_BOOTSTRAP) -> FoldResamples:
    """Cut each test slide into blocks and draw, per replicate and slide, as many blocks as
    the slide has, with replacement (counts of a uniform multinomial)."""
    blocks, counts, side_um, n_blocks = [], [], {}, {}
    offset = 0
    for coords, sample in zip(coords_um, samples, strict=True):
        coords = np.asarray(coords, dtype=np.float64)
        check_shape(coords, "spot coordinates (µm)", (None, 2), sample)
        check_finite(coords, "spot coordinates (µm)", sample)
        side = settings.block_um or default_block_um(coords, sample)
        block = block_of_spots(coords, side)
        k = int(block.max()) + 1
        draws = slide_generator(settings.seed, fold, sample).multinomial(
            k, np.full(k, 1.0 / k), size=settings.n)
        blocks.append(block + offset)
        counts.append(draws)
        side_um[sample], n_blocks[sample] = float(side), k
        offset += k
    return FoldResamples(np.concatenate(blocks), np.hstack(counts).astype(np.float64),
                         side_um, n_blocks)


def _block_moments(values: np.ndarray, order: np.ndarray, starts: np.ndarray,
                   sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per block: means, deviations of its spots from them (spots in ``order``), and the
    largest absolute values."""
    values = values[order]
    means = np.add.reduceat(values, starts, axis=0) / sizes[:, None]
    deviations = values - np.repeat(means, sizes, axis=0)
    return means, deviations, np.maximum.reduceat(np.abs(values), starts, axis=0)


def replicate_scores(truth: np.ndarray, pred: np.ndarray, block: np.ndarray,
                     counts: np.ndarray) -> np.ndarray:
    """Mean per-gene Pearson of each replicate (NaN where no gene varies): the pooled spots of
    the blocks, each taken ``counts[b, block]`` times."""
    order = np.argsort(block, kind="stable")
    sizes = np.bincount(block)
    starts = np.cumsum(sizes) - sizes
    mean_t, dev_t, max_t = _block_moments(truth, order, starts, sizes)
    mean_p, dev_p, max_p = _block_moments(pred, order, starts, sizes)
    ss_t = np.add.reduceat(dev_t * dev_t, starts, axis=0)
    ss_p = np.add.reduceat(dev_p * dev_p, starts, axis=0)
    cross = np.add.reduceat(dev_t * dev_p, starts, axis=0)
    chunk = max(1, CHUNK_ELEMENTS // (len(sizes) * truth.shape[1]))
    scores = []
    for first in range(0, len(counts), chunk):
        w = counts[first:first + chunk]                       # (b, blocks)
        spots = w * sizes                                     # spots drawn from each block
        n = spots.sum(axis=1, keepdims=True)                  # (b, 1)
        between_t = mean_t[None] - (spots @ mean_t / n)[:, None]  # block mean − replicate mean
        between_p = mean_p[None] - (spots @ mean_p / n)[:, None]
        drawn = (w > 0)[:, :, None]
        r = correlation_from_moments(
            w @ ss_t + np.einsum("bk,bkg->bg", spots, between_t * between_t),
            w @ ss_p + np.einsum("bk,bkg->bg", spots, between_p * between_p),
            w @ cross + np.einsum("bk,bkg->bg", spots, between_t * between_p),
            np.where(drawn, max_t[None], 0.0).max(axis=1),
            np.where(drawn, max_p[None], 0.0).max(axis=1), n)
        scores.append(_mean_over_varying_genes(r))
    return np.concatenate(scores)


def _mean_over_varying_genes(r: np.ndarray) -> np.ndarray:
    """Row means over the finite entries (NaN for a row without any), as the fold score."""
    finite = np.isfinite(r)
    total = np.where(finite, r, 0.0).sum(axis=1)
    count = finite.sum(axis=1)
    return np.divide(total, count, out=np.full(len(r), np.nan), where=count > 0)


def percentile_interval(replicates: np.ndarray) -> tuple[float, float]:
    """The 95 % percentile interval of replicate scores (NaN replicates left out; NaN, NaN
    when none is finite)."""
    finite = np.asarray(replicates, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


def fold_bootstrap(truths: Sequence[np.ndarray], preds: Sequence[np.ndarray],
                   coords_um: Sequence[np.ndarray], samples: Sequence[str], fold: str,
                   settings: BootstrapSettings = DEFAULT_BOOTSTRAP) -> dict:
    """The ``bootstrap`` entry of a metrics JSON: settings, blocks per sample and the fold
    score of every replicate (None where no gene varies in it)."""
    for truth, coords, sample in zip(truths, coords_um, samples, strict=True):
        if len(coords) != len(truth):
            raise input_error(sample, f"{len(coords)} spot coordinates for {len(truth)} spots",
                              "keep obsm['spatial_um'] aligned with the spots of X")
    resamples = fold_resamples(coords_um, samples, fold, settings)
    scores = replicate_scores(np.concatenate(truths).astype(np.float64),
                              np.concatenate(preds).astype(np.float64),
                              resamples.block, resamples.counts)
    return {"n": settings.n, "seed": settings.seed, "block_um": resamples.side_um,
            "n_blocks": resamples.n_blocks,
            "replicates": [float(s) if np.isfinite(s) else None for s in scores]}

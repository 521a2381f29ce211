"""A 95 % interval for the fold score: a spatial block bootstrap of the test spots.

Neighbouring spots share tissue, so they are not independent observations: resampling spots
one by one would give too narrow an interval. Each test slide is therefore cut into square
blocks of ``block_um`` microns (default: 4 × the slide's median nearest-neighbour spot
distance), and a replicate draws, from every test slide separately, as many blocks as the
slide has, with replacement. The drawn spots of all test slides are pooled and scored as
:func:`~stflow.evaluation.hest_metric.fold_metrics` scores the fold: Pearson per gene over the
pooled spots, mean over the genes that vary in the whole fold. A gene that varies in the
fold but happens to be constant in a replicate's spots (a gene expressed in one region whose
blocks were not drawn) counts as r = 0 there, as a constant prediction does: the replicate is
still the mean over the fold's genes, so every replicate scores the same statistic, and a draw
that misses a gene's only varying region is scored as one that learns nothing about it
(leaving the gene out instead would score an easier statistic on exactly those draws).

The interval is the bias-corrected and accelerated (BCa) one of Efron: the fold score is a
mean of correlations, skewed towards its bound of 1, so the plain percentile interval is
shifted. The bias correction comes from the share of replicates below the fold score; the
acceleration from a jackknife over blocks (each left out in turn; groups of consecutive
blocks where a fold has more blocks than replicates), scored by the same function. The
replicates are redrawn at 2× and 8× the block side too (``wider``): the default side
(4 spot distances) is not checked against the range of the errors' spatial correlation, and
an interval that widens with the side shows it was too short.

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
WIDER_SIDES = (2, 8)  # the block side's multiples also bootstrapped, keys "2x", "8x"
LEVEL = 0.95
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
                   settings: BootstrapSettings = DEFAULT_BOOTSTRAP,
                   multiple: float = 1.0) -> FoldResamples:
    """Cut each test slide into blocks (``multiple`` × the configured or default side) and
    draw, per replicate and slide, as many blocks as the slide has, with replacement (counts
    of a uniform multinomial)."""
    blocks, counts, side_um, n_blocks = [], [], {}, {}
    offset = 0
    for coords, sample in zip(coords_um, samples, strict=True):
        coords = np.asarray(coords, dtype=np.float64)
        check_shape(coords, "spot coordinates (µm)", (None, 2), sample)
        check_finite(coords, "spot coordinates (µm)", sample)
        side = multiple * (settings.block_um or default_block_um(coords, sample))
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


@dataclass(frozen=True)
class BlockSums:
    """Per block of a fold's pooled spots: spot count, means, centred sums of squares and
    cross-products, and largest absolute values, of truth (``_t``) and prediction (``_p``)."""

    sizes: np.ndarray
    mean_t: np.ndarray
    mean_p: np.ndarray
    ss_t: np.ndarray
    ss_p: np.ndarray
    cross: np.ndarray
    max_t: np.ndarray
    max_p: np.ndarray

    @classmethod
    def of(cls, truth: np.ndarray, pred: np.ndarray, block: np.ndarray) -> BlockSums:
        order = np.argsort(block, kind="stable")
        sizes = np.bincount(block)
        starts = np.cumsum(sizes) - sizes
        mean_t, dev_t, max_t = _block_moments(truth, order, starts, sizes)
        mean_p, dev_p, max_p = _block_moments(pred, order, starts, sizes)
        return cls(sizes, mean_t, mean_p, np.add.reduceat(dev_t * dev_t, starts, axis=0),
                   np.add.reduceat(dev_p * dev_p, starts, axis=0),
                   np.add.reduceat(dev_t * dev_p, starts, axis=0), max_t, max_p)

    def correlations(self, w: np.ndarray) -> np.ndarray:
        """(b, genes) per-gene Pearson of the pooled spots of the blocks, block k taken
        ``w[b, k]`` times (Chan et al.'s pairwise update)."""
        spots = w * self.sizes                                # spots drawn from each block
        n = spots.sum(axis=1, keepdims=True)                  # (b, 1)
        between_t = self.mean_t[None] - (spots @ self.mean_t / n)[:, None]
        between_p = self.mean_p[None] - (spots @ self.mean_p / n)[:, None]
        drawn = (w > 0)[:, :, None]
        return correlation_from_moments(
            w @ self.ss_t + np.einsum("bk,bkg->bg", spots, between_t * between_t),
            w @ self.ss_p + np.einsum("bk,bkg->bg", spots, between_p * between_p),
            w @ self.cross + np.einsum("bk,bkg->bg", spots, between_t * between_p),
            np.where(drawn, self.max_t[None], 0.0).max(axis=1),
            np.where(drawn, self.max_p[None], 0.0).max(axis=1), n)


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
    """Fold score of each replicate (NaN where no gene varies in the fold): mean per-gene
    Pearson over the fold's varying genes of the pooled spots of the blocks, each taken
    ``counts[b, block]`` times; a fold gene constant in a replicate counts as 0."""
    sums = BlockSums.of(truth, pred, block)
    fold_genes = np.isfinite(sums.correlations(np.ones((1, len(sums.sizes)))))[0]
    if not fold_genes.any() or not len(counts):
        return np.full(len(counts), np.nan)
    chunk = max(1, CHUNK_ELEMENTS // (len(sums.sizes) * truth.shape[1]))
    scores = [np.nan_to_num(sums.correlations(counts[first:first + chunk])[:, fold_genes],
                            nan=0.0).mean(axis=1)
              for first in range(0, len(counts), chunk)]
    return np.concatenate(scores)


def jackknife_counts(n_blocks: int, max_groups: int) -> np.ndarray:
    """(groups, blocks) counts leaving out one group of consecutive blocks each (one block per
    group when there are at most ``max_groups`` blocks): the jackknife of the acceleration,
    at no more cost than the replicates; none for a single block."""
    groups = min(n_blocks, max_groups) if n_blocks > 1 else 0
    group = np.arange(n_blocks) * groups // n_blocks
    return (group[None, :] != np.arange(groups)[:, None]).astype(np.float64)


def percentile_interval(replicates: np.ndarray) -> tuple[float, float]:
    """The 95 % percentile interval of replicate scores (NaN replicates left out; NaN, NaN
    when none is finite)."""
    finite = np.asarray(replicates, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


def bca_interval(replicates: np.ndarray, estimate: float, jackknife: np.ndarray,
                 level: float = LEVEL) -> tuple[float, float]:
    """Efron's BCa interval (as scipy.stats.bootstrap computes it) from the replicates, the
    full-data ``estimate`` and its jackknife values: percentiles moved by the bias (share of
    replicates below the estimate) and the acceleration (skew of the jackknife). The point
    where every replicate is equal; NaN without finite replicates or where the estimate
    lies outside them (the bias correction is then unbounded)."""
    from scipy.special import ndtr, ndtri

    reps = np.asarray(replicates, dtype=np.float64)
    reps = reps[np.isfinite(reps)]
    if not reps.size or not np.isfinite(estimate):
        return float("nan"), float("nan")
    if np.ptp(reps) == 0:
        return float(reps[0]), float(reps[0])
    z0 = ndtri(((reps < estimate).sum() + (reps <= estimate).sum()) / (2 * reps.size))
    if not np.isfinite(z0):
        return float("nan"), float("nan")
    jack = np.asarray(jackknife, dtype=np.float64)
    u = np.nanmean(jack) - jack[np.isfinite(jack)]
    spread = (u * u).sum() ** 1.5
    accel = (u ** 3).sum() / (6 * spread) if spread > 0 else 0.0
    z = z0 + ndtri(np.array([(1 - level) / 2, (1 + level) / 2]))
    low, high = np.quantile(reps, ndtr(z0 + z / (1 - accel * z)))
    return float(low), float(high)


def side_bootstrap(truth: np.ndarray, pred: np.ndarray, coords_um: Sequence[np.ndarray],
                   samples: Sequence[str], fold: str, settings: BootstrapSettings,
                   multiple: float = 1.0) -> dict:
    """Blocks, replicate scores and jackknife scores of the fold at one block side (None
    where no gene varies)."""
    resamples = fold_resamples(coords_um, samples, fold, settings, multiple)
    n_blocks = resamples.counts.shape[1]
    scores = (replicate_scores(truth, pred, resamples.block, counts)
              for counts in (resamples.counts, jackknife_counts(n_blocks, settings.n)))

    def listed(values: np.ndarray) -> list[float | None]:
        return [float(s) if np.isfinite(s) else None for s in values]

    return {"block_um": resamples.side_um, "n_blocks": resamples.n_blocks,
            "replicates": listed(next(scores)), "jackknife": listed(next(scores))}


def fold_bootstrap(truths: Sequence[np.ndarray], preds: Sequence[np.ndarray],
                   coords_um: Sequence[np.ndarray], samples: Sequence[str], fold: str,
                   settings: BootstrapSettings = DEFAULT_BOOTSTRAP) -> dict:
    """The ``bootstrap`` entry of a metrics JSON: settings, blocks per sample, the fold score
    of every replicate and jackknife resample, and the same at the WIDER_SIDES under
    ``wider`` ("2x", "8x")."""
    for truth, coords, sample in zip(truths, coords_um, samples, strict=True):
        if len(coords) != len(truth):
            raise input_error(sample, f"{len(coords)} spot coordinates for {len(truth)} spots",
                              "keep obsm['spatial_um'] aligned with the spots of X")
    truth = np.concatenate(truths).astype(np.float64)
    pred = np.concatenate(preds).astype(np.float64)
    wider = {f"{m}x": side_bootstrap(truth, pred, coords_um, samples, fold, settings, m)
             for m in WIDER_SIDES}
    return {"n": settings.n, "seed": settings.seed,
            **side_bootstrap(truth, pred, coords_um, samples, fold, settings), "wider": wider}

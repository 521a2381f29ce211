"""The fast sampler computes exactly what a plain implementation of the paper computes.

``benchmarks/plain_denoiser.py`` is the yardstick of the sampling benchmark: dense kNN,
geometry and edge encodings recomputed in every layer, the attention MLP run per edge on the
concatenated inputs, every frame through the whole MLP. Same weights, same prior draws: the
same sample, to float tolerance — so the speed-up changes nothing that is computed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from stflow.data.graph import knn_graph
from stflow.models.stflow.networks import build_denoiser, prepare_geometry
from stflow.models.stflow.networks.base import gather_rows
from stflow.models.stflow.priors import make_prior
from stflow.models.stflow.settings import STFlowSettings
from stflow.models.stflow.trainer import SlideArrays, predict_arrays

PLAIN = Path(__file__).resolve().parents[1] / "benchmarks" / "plain_denoiser.py"


@pytest.fixture(scope="module")
def plain():
    spec = importlib.util.spec_from_file_location("plain_denoiser", PLAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _slide(n_spots: int = 400, dim: int = 24, seed: int = 0) -> SlideArrays:
    """A jittered 100 µm grid (anisotropic frames at the edges, near-isotropic inside)."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n_spots)))
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2)[:n_spots]
    coords = grid * 100.0 + rng.uniform(-10, 10, size=grid.shape)
    return SlideArrays("s", rng.normal(size=(n_spots, dim)).astype(np.float32), coords)


@pytest.mark.parametrize("chunk_size", [None, 64])
def test_the_sampler_gives_the_plain_implementations_sample(plain, chunk_size):
    slide, genes = _slide(), 7
    torch.manual_seed(1)
    model = build_denoiser("fa", slide.features.shape[1], genes).eval()
    prior = make_prior("zinb")
    fast = predict_arrays(model, prior, slide, genes, STFlowSettings(chunk_size=chunk_size),
                         torch.device("cpu"), torch.Generator().manual_seed(3))
    with torch.inference_mode():
        reference = plain.plain_sample(model, torch.from_numpy(slide.features),
                                       torch.from_numpy(slide.coords_um), prior, genes,
                                       generator=torch.Generator().manual_seed(3)).numpy()
    assert fast.shape == reference.shape == (len(slide.features), genes)
    assert np.abs(fast - reference).max() < 1e-5 * max(1.0, np.abs(reference).max())
    assert np.abs(reference).max() > 0.01  # a real output, not zeros on both sides


def test_the_dense_knn_finds_the_kd_trees_neighbours(plain):
    coords = _slide().coords_um
    dense = plain.dense_knn(torch.from_numpy(coords), 8).numpy()
    tree = knn_graph(coords, 8)[0]
    assert (np.sort(dense, 1) == np.sort(tree, 1)).all()


def test_the_plain_reference_refuses_what_it_does_not_cover(plain):
    slide = _slide(50)
    model = build_denoiser("fa", slide.features.shape[1], 3, spatial_skip=True).eval()
    with pytest.raises(ValueError, match="spatial_skip"):
        plain.plain_sample(model, torch.from_numpy(slide.features),
                           torch.from_numpy(slide.coords_um), make_prior("zero"), 3)


def test_gathering_rows_picks_each_batch_elements_own_rows():
    values = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    index = torch.tensor([[[4, 0], [1, 1]], [[0, 2], [3, 4]]])
    gathered = gather_rows(values, index)
    expected = torch.stack([values[b][index[b]] for b in range(2)])
    assert gathered.shape == (2, 2, 2, 3)
    assert torch.equal(gathered, expected)


def test_edges_are_reused_whole_or_by_their_hidden_layer_with_the_same_output():
    """A sampling run keeps each layer's edge encoding when the cache has room, else its
    16-wide hidden layer (big slides), and always the projected features; either way the
    output is the uncached one."""
    slide, genes = _slide(), 7
    torch.manual_seed(1)
    model = build_denoiser("fa", slide.features.shape[1], genes).eval()
    neighbors = knn_graph(slide.coords_um, 8)[0]
    features = torch.from_numpy(slide.features)[None]
    y_t = torch.randn(1, len(features[0]), genes, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.4])

    def run(budget: int | None):
        geometry = prepare_geometry(slide.coords_um, neighbors)
        if budget is not None:
            geometry.cache, geometry.cache_budget_bytes = {}, budget
        with torch.inference_mode():
            first = model(features, y_t, t, geometry)
            again = model(features, y_t, t, geometry)  # a later step reads the cache
        assert torch.equal(first, again)
        return first, [key[0] for key in (geometry.cache or {})]

    uncached, _ = run(None)
    whole, kept = run(256 * 1024**2)
    assert sorted(kept) == ["edges"] * 4 + ["features"]
    # a layer's edges (1.6 MB) do not fit, the 4 layers' hidden edges (0.8 MB) do, and the
    # projected features (0.2 MB, one row per spot) are kept outside the budget
    hidden, kept_small = run(900_000)
    assert sorted(kept_small) == ["edge_hidden"] * 4 + ["features"]
    assert torch.equal(whole, uncached) and torch.equal(hidden, uncached)

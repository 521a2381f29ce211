"""The denoisers: E(2) invariance by frame averaging, padding that never leaks, chunking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stflow.data.graph import knn_graph
from stflow.errors import StflowError
from stflow.models.stflow.networks import build_denoiser, prepare_geometry

N, D, G, K = 50, 12, 5, 8


def _inputs(seed: int = 0):
    rng = np.random.default_rng(seed)
    coords = rng.uniform(0, 1500, size=(N, 2))
    neighbors, _ = knn_graph(coords, K)
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(1, N, D, generator=gen, dtype=torch.float64)
    y_t = torch.randn(1, N, G, generator=gen, dtype=torch.float64)
    return coords, neighbors, features, y_t, torch.tensor([0.4], dtype=torch.float64)


def _grid_inputs(jitter_um: float = 0.0, seed: int = 0):
    """A 9×9 square grid at 200 µm (legacy ST): interior neighbourhoods are isotropic."""
    rng = np.random.default_rng(seed)
    axis = np.arange(9) * 200.0
    coords = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
    neighbors, _ = knn_graph(coords, K)
    coords = coords + rng.normal(scale=jitter_um, size=coords.shape)
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(1, len(coords), D, generator=gen, dtype=torch.float64)
    y_t = torch.randn(1, len(coords), G, generator=gen, dtype=torch.float64)
    return coords, neighbors, features, y_t, torch.tensor([0.4], dtype=torch.float64)


def _model(name: str, frame_averaging: bool = True):
    torch.manual_seed(0)
    return build_denoiser(name, D, G, hidden=32, layers=2, heads=4,
                          frame_averaging=frame_averaging).double().eval()


def _e2(coords: np.ndarray) -> np.ndarray:
    """A rotation by 1.1 rad, a reflection and a translation."""
    angle = 1.1
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return coords @ (rotation @ np.diag([1.0, -1.0])).T + np.array([250.0, -4000.0])


def _relative_change(model, coords, neighbors, features, y_t, t):
    geo = prepare_geometry(coords, neighbors, dtype=torch.float64)
    moved = prepare_geometry(_e2(coords), neighbors, dtype=torch.float64)
    with torch.no_grad():
        a, b = model(features, y_t, t, geo), model(features, y_t, t, moved)
    return float((a - b).norm() / a.norm())


@pytest.mark.parametrize("name", ["fa", "egnn"])
@pytest.mark.parametrize("layout", ["random", "jittered grid"])
def test_outputs_are_invariant_to_rotation_reflection_translation(name, layout):
    inputs = _inputs() if layout == "random" else _grid_inputs(jitter_um=1e-6)
    assert _relative_change(_model(name), *inputs) < 1e-5


@pytest.mark.parametrize("name", ["fa", "egnn"])
def test_a_tiny_jitter_of_a_regular_grid_barely_changes_the_output(name):
    """Isotropic neighbourhoods have no PCA frame; the encoding must not jump with noise."""
    model = _model(name)
    coords, neighbors, features, y_t, t = _grid_inputs()
    jittered = _grid_inputs(jitter_um=1e-6)[0]
    with torch.no_grad():
        a = model(features, y_t, t, prepare_geometry(coords, neighbors, dtype=torch.float64))
        b = model(features, y_t, t, prepare_geometry(jittered, neighbors, dtype=torch.float64))
    assert float((a - b).norm() / a.norm()) < 1e-4


def test_isotropic_neighbourhoods_get_zero_frame_weight_and_keep_distances():
    coords, neighbors = _grid_inputs()[:2]
    geo = prepare_geometry(coords, neighbors, dtype=torch.float64)
    interior = 4 * 9 + 4
    assert float(geo.anisotropy[0, interior, 0]) == pytest.approx(0.0, abs=1e-9)
    assert float(geo.projected[0, interior].abs().max()) == pytest.approx(0.0, abs=1e-9)
    assert sorted(geo.distances[0, interior, :, 0].tolist()) == pytest.approx(
        [2.0] * 4 + [2.0 * 2**0.5] * 4)
    assert float(geo.anisotropy[0, 0, 0]) > 0  # a corner's neighbourhood is lopsided


def test_without_frame_averaging_the_output_depends_on_orientation():
    assert _relative_change(_model("fa", frame_averaging=False), *_inputs()) > 1e-3


@pytest.mark.parametrize("name", ["fa", "egnn"])
def test_padded_spots_change_nothing_for_real_spots(name):
    coords, neighbors, features, y_t, t = _inputs()
    model = _model(name)
    alone = model(features, y_t, t, prepare_geometry(coords, neighbors, dtype=torch.float64))
    pad = 7
    coords_p = np.concatenate([coords, np.full((pad, 2), 3.0)])[None]
    neighbors_p = np.concatenate([neighbors, np.zeros((pad, K), np.int64)])[None]
    mask = np.r_[np.ones(N, bool), np.zeros(pad, bool)][None]
    junk = torch.full((1, pad, D), 1e3, dtype=torch.float64)
    geo = prepare_geometry(coords_p, neighbors_p, mask, dtype=torch.float64)
    padded = model(torch.cat([features, junk], 1), torch.cat([y_t, junk[..., :G]], 1), t, geo)
    assert torch.allclose(padded[:, :N], alone, atol=1e-12, rtol=0)


def test_batched_regions_match_single_regions_and_chunking_matches_whole():
    coords, neighbors, features, y_t, t = _inputs()
    coords2, neighbors2, features2, y_t2, _ = _inputs(seed=1)
    model = _model("fa")
    geo = prepare_geometry(np.stack([coords, coords2]), np.stack([neighbors, neighbors2]),
                           dtype=torch.float64)
    both = model(torch.cat([features, features2]), torch.cat([y_t, y_t2]), t.repeat(2), geo)
    second = model(features2, y_t2, t, prepare_geometry(coords2, neighbors2,
                                                         dtype=torch.float64))
    assert torch.allclose(both[1:], second, atol=1e-12)
    single = prepare_geometry(coords2, neighbors2, dtype=torch.float64)
    assert torch.allclose(model(features2, y_t2, t, single, chunk_size=7), second, atol=1e-12)


def test_time_enters_the_prediction_and_unknown_denoiser_is_refused():
    coords, neighbors, features, y_t, _ = _inputs()
    model = _model("fa")
    geo = prepare_geometry(coords, neighbors, dtype=torch.float64)
    early = model(features, y_t, torch.tensor([0.0], dtype=torch.float64), geo)
    late = model(features, y_t, torch.tensor([0.8], dtype=torch.float64), geo)
    assert not torch.allclose(early, late)
    with pytest.raises(StflowError, match="unknown"):
        build_denoiser("e2cnn", D, G)


def test_sampling_cache_reuses_geometry_work_without_changing_outputs():
    coords, neighbors, features, y_t, t = _inputs()
    model = _model("fa")
    plain = prepare_geometry(coords, neighbors, dtype=torch.float64)
    cached = prepare_geometry(coords, neighbors, dtype=torch.float64)
    cached.cache = {}
    with torch.no_grad():
        expected = [model(features, y_t * s, t * s, plain) for s in (1.0, 0.5)]
        got = [model(features, y_t * s, t * s, cached) for s in (1.0, 0.5)]
    assert len(cached.cache) == 1 + 2  # the feature embedding and one edge encoding per layer
    assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))


def test_spatial_skip_is_the_linear_map_of_own_and_neighbour_mean_features():
    """The skip path adds exactly W_own·x_i + W_nb·mean_j x_j + b, padding excluded."""
    coords, neighbors, features, y_t, t = _inputs()
    torch.manual_seed(0)
    model = build_denoiser("fa", D, G, hidden=32, layers=2, heads=4,
                           spatial_skip=True).double().eval()
    geo = prepare_geometry(coords, neighbors, dtype=torch.float64)
    with torch.no_grad():
        with_skip = model(features, y_t, t, geo)
        skip = model.skip
        model.skip = None
        without = model(features, y_t, t, geo)
        x = features[0].numpy()
        own = x @ skip.own.weight.double().numpy().T + skip.own.bias.double().numpy()
        mean_nb = x[neighbors].mean(1) @ skip.neighbours.weight.double().numpy().T
    assert np.allclose((with_skip - without)[0].numpy(), own + mean_nb, atol=1e-10)
    # invariant like the rest of the network
    model.skip = skip
    assert _relative_change(model, coords, neighbors, features, y_t, t) < 1e-10

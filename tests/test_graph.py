"""The kNN graph: exact against brute force, O(N·k) memory, refuses bad coordinates."""

from __future__ import annotations

import tracemalloc

import h5py
import numpy as np
import pytest

from stflow.data.graph import edge_offsets, knn_graph, write_graph
from stflow.errors import StflowError


def test_knn_equals_brute_force_and_excludes_self():
    coords = np.random.default_rng(0).uniform(0, 1000, size=(300, 2))
    neighbors, distances = knn_graph(coords, 8)
    full = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    np.fill_diagonal(full, np.inf)
    expected = np.argsort(full, axis=1)[:, :8]
    assert neighbors.dtype == np.int64 and distances.dtype == np.float32
    assert np.array_equal(neighbors, expected)
    assert np.allclose(distances, np.take_along_axis(full, expected, 1), rtol=1e-6)
    assert not (neighbors == np.arange(300)[:, None]).any()


def test_edge_offsets_are_the_papers_direction_vectors():
    coords = np.array([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]])
    neighbors = np.array([[1, 2], [0, 2], [1, 0]])
    offsets = edge_offsets(coords, neighbors)
    assert offsets.shape == (3, 2, 2)
    assert np.array_equal(offsets[0, 0], [-3.0, -4.0])  # C_0 - C_1
    assert np.array_equal(offsets[2, 1], [10.0, 0.0])


def test_200k_spots_never_allocate_an_n_by_n_matrix():
    coords = np.random.default_rng(1).uniform(0, 1e5, size=(200_000, 2))
    tracemalloc.start()
    neighbors, _ = knn_graph(coords, 8)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert neighbors.shape == (200_000, 8)
    assert peak < 200 * 1024**2  # N² float64 would be 320 GB
    assert peak < 200_000**2 * 8 / 1000


@pytest.mark.parametrize(("coords", "message"), [
    (np.array([[0.0, 0.0], [1.0, np.nan], [2.0, 2.0]] + [[i, 5.0] for i in range(10)]), "NaN"),
    (np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]), "fewer than k"),
    (np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0]] + [[i, 9.0] for i in range(10)]),
     "2 spots duplicate"),
])
def test_bad_coordinates_raise_a_helpful_error(coords, message):
    with pytest.raises(StflowError, match=message):
        knn_graph(coords, 8)


def test_write_graph_reads_patches_in_pixels_and_writes_microns(tmp_path):
    rng = np.random.default_rng(2)
    coords_px = rng.choice(5000, size=(40, 2), replace=False).astype(np.int64)
    patches = tmp_path / "S1.h5"
    with h5py.File(patches, "w") as handle:
        handle["coords"] = coords_px
        handle["barcode"] = np.array([[f"AC{i}".encode()] for i in range(40)])
        handle.attrs["mpp"] = 0.5
    out = tmp_path / "graph" / "S1.npz"
    write_graph(patches, out, k=6)
    assert sorted(p.name for p in out.parent.iterdir()) == ["S1.npz", "S1.npz.sha256"]
    with np.load(out, allow_pickle=False) as data:
        assert np.allclose(data["coords_um"], coords_px * 0.5)
        assert data["neighbors"].shape == (40, 6) and int(data["k"]) == 6
        assert data["barcode"][3] == "AC3"
        expected = data["coords_um"][:, None] - data["coords_um"][data["neighbors"]]
        assert np.allclose(data["offsets_um"], expected, atol=1e-3)
        assert np.allclose(data["distances_um"], np.linalg.norm(expected, axis=-1), rtol=1e-5)


def test_write_graph_names_a_missing_file(tmp_path):
    with pytest.raises(StflowError, match="does not exist"):
        write_graph(tmp_path / "nope.h5", tmp_path / "g.npz", k=8)


def test_graph_subcommand_parses_and_runs(tmp_path):
    import argparse

    from stflow.cli.data import register

    patches = tmp_path / "S2.h5"
    with h5py.File(patches, "w") as handle:
        handle["coords"] = np.arange(40, dtype=np.int64).reshape(20, 2) * np.array([1, 3])
        handle["barcode"] = np.array([[f"B{i}".encode()] for i in range(20)])
        handle.attrs["mpp"] = 2.0
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["graph", "--patches", str(patches), "--k", "4",
                              "--out", str(tmp_path / "S2.npz")])
    args.func(args)
    with np.load(tmp_path / "S2.npz") as data:
        assert data["neighbors"].shape == (20, 4)

"""A plain implementation of STFlow's sampler, the yardstick of ``benchmarks/denoiser.py``.

It computes what :func:`stflow.models.stflow.flow.draw` computes with the same weights,
but with the published code's algorithmic choices instead of ours:

- the kNN graph from a dense N×N distance matrix;
- the edge geometry (offsets, PCA frames, frame projections) and the edge encoding C'_ij
  recomputed in every layer of every sampling step;
- frame averaging as Eq. 7 reads: each MLP (edge and position encodings) run whole in each
  of the four frames on the concatenation of its inputs, and the four outputs averaged;
- the attention MLP's first layer applied per edge to the concatenation
  ``[h_i ‖ h_j ‖ C'_ij ‖ (Y_i − Y_j)]``, and the values computed per edge;
- the features' input projection recomputed at every step.

Only the frame-averaging denoiser (``fa``, frame averaging on) without the spatial skip
path is covered: that is the paper's model. ``tests/test_plain_denoiser.py`` checks it gives our sampler's numbers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stflow.models.stflow.flow import _prior_batch
from stflow.models.stflow.networks.fa_transformer import FrameAveragingLayer, STFlowDenoiser
from stflow.models.stflow.networks.geometry import Geometry, prepare_geometry
from stflow.models.stflow.priors import Prior


def dense_knn(coords: torch.Tensor, k: int) -> torch.Tensor:
    """(N, k) nearest other spots from the full N×N distance matrix."""
    distances = torch.cdist(coords, coords)
    distances.fill_diagonal_(float("inf"))
    return distances.topk(k, largest=False).indices


def _frames(inputs: torch.Tensor, first: torch.Tensor, bias: torch.Tensor,
            last: torch.nn.Linear) -> torch.Tensor:
    """MLP(inputs) in every frame (axis -2), averaged over the frames."""
    return last(F.silu(inputs @ first.T + bias)).mean(-2)


def plain_edge_encoding(layer: FrameAveragingLayer, geometry: Geometry) -> torch.Tensor:
    """C'_ij = mean over the frames g of MLP([w_i·C_ij^(g) ‖ ‖C_ij‖ ‖ w_i]): (1, N, k, H)."""
    projected = geometry.projected  # (1, N, k, 4, 2)
    invariants = torch.cat([geometry.distances, geometry.anisotropy[:, :, None, :].expand_as(
        geometry.distances)], -1)[..., None, :].expand(*projected.shape[:-1], 2)
    first = torch.cat([layer.edge_in.weight, layer.edge_invariant.weight], 1)
    return _frames(torch.cat([projected, invariants], -1), first, layer.edge_in.bias,
                   layer.edge_out)


def plain_position_encoding(layer: FrameAveragingLayer, attention: torch.Tensor,
                            geometry: Geometry) -> torch.Tensor:
    """Σ_j A_ij C_ij in each frame, with the invariant reach and w_i, through the position
    MLP in each frame and averaged: (1, N, H)."""
    batch, rows, _, heads = attention.shape
    framed = (attention[:, :, :, None, :, None]
              * geometry.projected[:, :, :, :, None, :]).sum(2)
    framed = framed.reshape(batch, rows, 4, 2 * heads)  # (1, N, 4 frames, heads · 2)
    reach = (attention * geometry.distances).sum(2)  # (1, N, heads)
    invariants = torch.cat([reach, geometry.anisotropy], -1)[..., None, :].expand(
        batch, rows, 4, heads + 1)
    first = torch.cat([layer.position_in.weight, layer.position_invariant.weight], 1)
    return _frames(torch.cat([framed, invariants], -1), first, layer.position_in.bias,
                   layer.position_out)


def plain_layer(layer: FrameAveragingLayer, z: torch.Tensor, y: torch.Tensor,
                coords: torch.Tensor, neighbors: torch.Tensor, length_scale_um: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """One attention layer on (N, ·) tensors, every edge quantity computed per edge."""
    geometry = prepare_geometry(coords, neighbors, None, length_scale_um, z.dtype)
    edges = plain_edge_encoding(layer, geometry)[0]  # (N, k, H): C'_ij
    h = layer.norm(z)
    n_spots, k = neighbors.shape
    hidden = h.shape[-1]
    h_i = h[:, None, :].expand(n_spots, k, hidden)
    h_j = h[neighbors]
    gene_diff = y[:, None, :] - y[neighbors]
    weight = torch.cat([layer.query.weight, layer.key.weight,
                        torch.eye(hidden, dtype=h.dtype), layer.gene_diff.weight], 1)
    pre = torch.cat([h_i, h_j, edges, gene_diff], -1) @ weight.T + layer.query.bias
    heads = layer.heads
    pre = F.leaky_relu(pre, 0.2).reshape(n_spots, k, heads, hidden // heads)
    attention = torch.softmax((pre * layer.score).sum(-1), dim=1)  # (N, k, heads)
    values = layer.value(h_j).reshape(n_spots, k, heads, hidden // heads)
    aggregated = (attention[..., None] * values).sum(1).reshape(n_spots, hidden)
    position = plain_position_encoding(layer, attention[None], geometry)[0]
    z = z + layer.update(torch.cat([aggregated, position], -1))
    return z, layer.genes_out(z)


def plain_forward(model: STFlowDenoiser, features: torch.Tensor, y_t: torch.Tensor,
                  t: torch.Tensor, coords: torch.Tensor, neighbors: torch.Tensor,
                  length_scale_um: float) -> torch.Tensor:
    """The denoiser's output for one slide: features (N, D), y_t (N, G), t (1,)."""
    if model.skip is not None or not model.layers[0].frame_averaging:
        raise ValueError("the plain reference covers the paper's model: frame averaging on, "
                         "no spatial_skip")
    z = model.features_in(features) + model.genes_in(y_t) + model.time(t)
    y, total = y_t, torch.zeros_like(y_t)
    for layer in model.layers:
        z, y = plain_layer(layer, z, y, coords, neighbors, length_scale_um)
        total = total + y
    return total / len(model.layers)


def plain_sample(model: STFlowDenoiser, features: torch.Tensor, coords_um: torch.Tensor,
                 prior: Prior, n_genes: int, k: int = 8, steps: int = 5,
                 generator: torch.Generator | None = None,
                 length_scale_um: float = 100.0) -> torch.Tensor:
    """Algorithm 2 (S Euler steps from the prior) for one slide; returns the last Ŷ (N, G).

    Draws the prior exactly as :func:`stflow.models.stflow.flow.draw` does, so the same
    generator seed gives the same sample.
    """
    coords = coords_um.to(torch.float64)
    neighbors = dense_knn(coords, k)
    n_spots = len(features)
    y = _prior_batch(prior, torch.Size((1, n_spots, n_genes)), generator, features.device)[0]
    for step in range(steps):
        t1, t2 = step / steps, (step + 1) / steps
        pred = plain_forward(model, features, y, torch.full((1,), t1), coords, neighbors,
                             length_scale_um)
        if step == steps - 1:
            return pred
        y = y + (pred - y) / (1 - t1) * (t2 - t1)
    raise ValueError(f"steps ({steps}) must be at least 1")

"""Pieces every denoiser shares: time embedding, neighbour gather, the layered gene readout."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn

from stflow.models.stflow.networks.geometry import Geometry


class TimeEmbedding(nn.Module):
    """Sinusoidal embedding of t ∈ [0, 1] scaled to [0, 1000], then an MLP.

    The published code fed unscaled t into an embedding built for 0..1000, so all time
    steps looked almost alike; scaling spreads them over the embedding's frequencies.
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        half = hidden // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * half, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = (t.float() * 1000.0)[:, None] * self.freqs[None]
        return self.mlp(torch.cat([angles.sin(), angles.cos()], -1).to(self.mlp[0].weight.dtype))


def gather_rows(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values (B, N, F) at index (B, M, k) → (B, M, k, F), per batch element.

    Whole rows are copied by ``index_select`` on the flattened batch: 5–10× faster on a CPU
    than ``gather`` with an index expanded over F, which reads one index per value.
    """
    batch, rows, k = index.shape
    n_rows, width = values.shape[1], values.shape[2]
    flat = index.reshape(-1) if batch == 1 else (
        index + torch.arange(batch, device=index.device)[:, None, None] * n_rows).reshape(-1)
    return values.reshape(batch * n_rows, width).index_select(0, flat).reshape(
        batch, rows, k, width)


def row_chunks(n_rows: int, chunk_size: int | None) -> Iterator[tuple[int, int]]:
    """Spot ranges for the per-edge work, so big slides never hold all N·k edge tensors."""
    step = n_rows if not chunk_size else chunk_size
    for start in range(0, n_rows, max(step, 1)):
        yield start, min(start + step, n_rows)


def gene_head(hidden: int, n_genes: int) -> nn.Module:
    """Y'_i = MLP(Z'_i) (Eq. 10)."""
    return nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.GELU(),
                         nn.Linear(hidden, n_genes))


class LayeredDenoiser(nn.Module):
    """Embed features + Y_t + time, run message-passing layers, average their gene outputs.

    Each layer sees the previous layer's gene estimate (Y_t for the first) and emits its own;
    the prediction is the mean of the layers' estimates (paper §3.3).
    """

    def __init__(self, in_dim: int, n_genes: int, hidden: int, layers: list[nn.Module],
                 dropout: float, spatial_skip: bool = False) -> None:
        super().__init__()
        self.in_dim, self.n_genes = in_dim, n_genes
        self.features_in = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, hidden))
        self.genes_in = nn.Linear(n_genes, hidden)
        self.time = TimeEmbedding(hidden)
        self.layers = nn.ModuleList(layers)
        self.skip = SpatialSkip(in_dim, n_genes, dropout) if spatial_skip else None

    def zero_gene_outputs(self) -> None:
        """Start every layer's gene estimate at 0, so that a network learning the residual
        of a base prediction starts as that base and early stopping can only improve on it."""
        for layer in self.layers:
            last = layer.genes_out[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, features: torch.Tensor, y_t: torch.Tensor, t: torch.Tensor,
                geometry: Geometry, chunk_size: int | None = None) -> torch.Tensor:
        """features (B, N, D), y_t (B, N, G), t (B,) → clean-expression estimate (B, N, G)."""
        embedded = geometry.cached(("features", id(self)), lambda: self.features_in(features),
                                   per_spot=True)
        z = embedded + self.genes_in(y_t) + self.time(t)[:, None, :]
        y = y_t
        total = torch.zeros_like(y_t)
        for layer in self.layers:
            z, y = layer(z, y, geometry, chunk_size)
            total = total + y
        out = total / len(self.layers)
        if self.skip is not None:
            out = out + geometry.cached(("skip", id(self)),
                                        lambda: self.skip(features, geometry), per_spot=True)
        return out


class SpatialSkip(nn.Module):
    """Ŷ_skip,i = W_own·x_i + W_nb·mean_{j∈N(i)} x_j + b: a linear path from a spot's own and
    its neighbours' mean features straight to the genes.

    This is the map the spatial ridge baseline fits; with it the network can represent that
    baseline from the start and the attention layers learn what it misses. The neighbour
    term is projected before it is gathered (W_nb·mean x_j = mean W_nb·x_j), so a slide
    costs N·k·G, never N·k·D.
    """

    def __init__(self, in_dim: int, n_genes: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.own = nn.Linear(in_dim, n_genes)
        self.neighbours = nn.Linear(in_dim, n_genes, bias=False)

    def forward(self, features: torch.Tensor, geometry: Geometry) -> torch.Tensor:
        x = self.dropout(features)
        projected = self.neighbours(x)
        valid = geometry.neighbor_mask[..., None].to(projected.dtype)
        pooled = (gather_rows(projected, geometry.neighbors) * valid).sum(2)
        pooled = pooled / valid.sum(2).clamp_min(1)
        return self.own(x) + pooled

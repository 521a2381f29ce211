"""The frame-averaging spatial transformer of STFlow (paper Eq. 4–10).

Attention logits come from a GATv2-style MLP over [Z_Q,i ‖ Z_K,j ‖ C'_ij ‖ (Y_i − Y_j)].
Its first linear layer is linear in the concatenation, so the query, key and gene parts are
computed once per spot and gathered; only the geometric part C'_ij is per edge.

With frame averaging, each frame's MLP sees the anisotropy-weighted frame coordinates
w_i·(C_{i→j} − ĉ_i)U_g together with the invariants ‖C_{i→j}‖ and w_i (see
:mod:`stflow.models.stflow.networks.geometry`): exactly E(2)-invariant, and continuous in the coordinates
on regular grids where the PCA frame is undefined.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from stflow.models.stflow.networks.base import LayeredDenoiser, gather_rows, gene_head, row_chunks
from stflow.models.stflow.networks.geometry import Geometry


class FrameAveragingLayer(nn.Module):
    """One E(2)-invariant spatial-attention layer: returns (Z', Y')."""

    def __init__(self, hidden: int, n_genes: int, heads: int, dropout: float,
                 frame_averaging: bool = True, edge_dim: int = 16) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not divisible by {heads} heads")
        self.heads, self.frame_averaging = heads, frame_averaging
        self.norm = nn.LayerNorm(hidden)
        self.query = nn.Linear(hidden, hidden)  # W_Q and the attention MLP's query block
        self.key = nn.Linear(hidden, hidden, bias=False)
        self.value = nn.Linear(hidden, hidden)
        self.gene_diff = nn.Linear(n_genes, hidden, bias=False)  # acts on (Y_i − Y_j)
        # C'_ij (Eq. 7): MLP per frame, averaged over frames; its last linear layer commutes
        # with the mean and also serves as the attention MLP's C' block.
        # Linear in [frame coordinates ‖ ‖C_ij‖, w_i], split so the invariant part is
        # computed once and broadcast over the 4 frames.
        self.edge_in = nn.Linear(2, edge_dim)
        self.edge_out = nn.Linear(edge_dim, hidden)
        self.score = nn.Parameter(torch.randn(heads, hidden // heads) / (hidden // heads) ** 0.5)
        # Σ_j A_ij C_{i→j}, aggregated in each frame and embedded frame-averaged (invariant).
        self.position_in = nn.Linear(2 * heads, edge_dim)
        self.position_out = nn.Linear(edge_dim, hidden)
        if frame_averaging:
            self.edge_invariant = nn.Linear(2, edge_dim, bias=False)
            # [Σ_j A_ij ‖C_ij‖ per head ‖ w_i]
            self.position_invariant = nn.Linear(heads + 1, edge_dim, bias=False)
        self.update = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.GELU(),
                                    nn.Linear(hidden, hidden))
        self.dropout = nn.Dropout(dropout)
        self.genes_out = gene_head(hidden, n_genes)

    def _edge_encoding(self, geometry: Geometry) -> torch.Tensor:
        return self.edge_out(self._edge_hidden(geometry))

    def _edge_hidden(self, geometry: Geometry) -> torch.Tensor:
        """The edge MLP's hidden layer, frame-averaged: (B, M, k, edge_dim)."""
        if self.frame_averaging:
            weight = geometry.anisotropy[:, :, None].expand_as(geometry.distances)
            invariant = self.edge_invariant(torch.cat([geometry.distances, weight], -1))
            framed = self.edge_in(geometry.projected) + invariant[..., None, :]
            return F.silu(framed).mean(-2)
        return F.silu(self.edge_in(geometry.offsets))

    def _edges(self, geometry: Geometry, rows: Geometry, start: int, end: int) -> torch.Tensor:
        """C'_ij of spots ``start:end``, reused across a sampling run's steps: whole when the
        geometry's cache has room, else its frame-averaged hidden layer (hidden / edge_dim
        times smaller), so that only the last linear layer is redone at each step."""
        shape = (*rows.neighbors.shape, self.edge_out.out_features)
        nbytes = math.prod(shape) * self.edge_out.weight.element_size()
        if geometry.has_room(("edges", id(self), start, end), nbytes):
            return geometry.cached(("edges", id(self), start, end),
                                   lambda: self._edge_encoding(rows))
        return self.edge_out(geometry.cached(("edge_hidden", id(self), start, end),
                                             lambda: self._edge_hidden(rows)))

    def _position_encoding(self, attention: torch.Tensor, geometry: Geometry) -> torch.Tensor:
        batch, rows = attention.shape[:2]
        if self.frame_averaging:
            framed = torch.einsum("bmkh,bmkgc->bmghc", attention, geometry.projected)
            framed = framed.reshape(batch, rows, 4, 2 * self.heads)
            reach = torch.einsum("bmkh,bmkc->bmh", attention, geometry.distances)
            invariant = self.position_invariant(torch.cat([reach, geometry.anisotropy], -1))
            framed = self.position_in(framed) + invariant[..., None, :]
            return self.position_out(F.silu(framed).mean(-2))
        raw = torch.einsum("bmkh,bmkc->bmhc", attention, geometry.offsets)
        return self.position_out(F.silu(self.position_in(raw.reshape(batch, rows, -1))))

    def forward(self, z: torch.Tensor, y: torch.Tensor, geometry: Geometry,
                chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(Z', Y'). Per-edge work runs ``chunk_size`` spots at a time. Without autograd
        (sampling) ``z`` is updated in place and every (N, hidden) temporary is freed before
        the gene head runs, so a million-spot slide holds a few such arrays, not ten."""
        h = self.norm(z)
        gene = self.gene_diff(y)
        target = self.key(h) - gene  # per spot j
        value = self.value(h)
        chunks = list(row_chunks(z.shape[1], chunk_size))
        update = None if len(chunks) == 1 else torch.empty_like(z)
        for start, end in chunks:
            geo = geometry.rows(start, end)
            source = self.query(h[:, start:end]) + gene[:, start:end]  # per spot i
            edges = self._edges(geometry, geo, start, end)
            pre = gather_rows(target, geo.neighbors).add_(source[:, :, None]).add_(edges)
            attention = self._attention(pre, geo.neighbor_mask)
            values = gather_rows(value, geo.neighbors).unflatten(-1, (self.heads, -1))
            aggregated = (attention[..., None] * values).sum(2).flatten(-2)
            position = self._position_encoding(attention, geo)
            rows = self.update(torch.cat([aggregated, position], -1))
            if update is None:
                update = rows
            else:
                update[:, start:end] = rows
        del h, gene, target, value
        update = self.dropout(update)
        z = z + update if torch.is_grad_enabled() else z.add_(update)
        del update
        return z, self.genes_out(z)

    def _attention(self, pre: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Per-head softmax over each spot's neighbours of score · LeakyReLU(pre);
        padding never attends (the masking is skipped when nothing is padded)."""
        pre = F.leaky_relu(pre, 0.2).unflatten(-1, (self.heads, -1))
        logits = torch.einsum("bmkhd,hd->bmkh", pre, self.score)
        if bool(valid.all()):
            return self.dropout(torch.softmax(logits, dim=2))
        valid = valid[..., None]
        logits = logits.masked_fill(~valid, torch.finfo(logits.dtype).min)
        return self.dropout(torch.softmax(logits, dim=2) * valid)


class STFlowDenoiser(LayeredDenoiser):
    """f_θ(C, I, Y_t, t): frame-averaging transformer (defaults from the paper)."""

    def __init__(self, in_dim: int, n_genes: int, hidden: int = 128, layers: int = 4,
                 heads: int = 4, dropout: float = 0.2, frame_averaging: bool = True,
                 spatial_skip: bool = False) -> None:
        stack = [FrameAveragingLayer(hidden, n_genes, heads, dropout, frame_averaging)
                 for _ in range(layers)]
        super().__init__(in_dim, n_genes, hidden, stack, dropout, spatial_skip)

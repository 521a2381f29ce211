"""EGNN denoiser (Satorras et al., 2021) behind the STFlow interface, for the paper's comparison.

Messages use only [h_i, h_j, ‖x_i − x_j‖², Y_i − Y_j], so the output is E(2)-invariant.
Coordinates are not updated: the task needs invariant spot outputs only.
"""

from __future__ import annotations

import torch
from torch import nn

from stflow.models.stflow.networks.base import LayeredDenoiser, gather_rows, gene_head, row_chunks
from stflow.models.stflow.networks.geometry import Geometry


class EGNNLayer(nn.Module):
    """h_i' = h_i + φ_h(h_i, Σ_j φ_e(h_i, h_j, d²_ij, Y_i − Y_j)); returns (h', Y')."""

    def __init__(self, hidden: int, n_genes: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        # The first linear layer of φ_e, split by input block (per spot, then gathered).
        self.source = nn.Linear(hidden, hidden)
        self.target = nn.Linear(hidden, hidden, bias=False)
        self.gene_diff = nn.Linear(n_genes, hidden, bias=False)
        self.distance = nn.Linear(1, hidden, bias=False)
        self.message = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.node = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(),
                                  nn.Linear(hidden, hidden))
        self.dropout = nn.Dropout(dropout)
        self.genes_out = gene_head(hidden, n_genes)

    def forward(self, z: torch.Tensor, y: torch.Tensor, geometry: Geometry,
                chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.norm(z)
        gene = self.gene_diff(y)
        source = self.source(h) + gene
        target = self.target(h) - gene
        updates = []
        for start, end in row_chunks(z.shape[1], chunk_size):
            geo = geometry.rows(start, end)
            squared = (geo.offsets**2).sum(-1, keepdim=True)
            pre = source[:, start:end, None] + gather_rows(target, geo.neighbors)
            messages = self.message(pre + self.distance(squared)) * geo.neighbor_mask[..., None]
            pooled = messages.sum(2) / geo.neighbor_mask.sum(-1, keepdim=True).clamp_min(1)
            updates.append(self.node(torch.cat([h[:, start:end], pooled], -1)))
        z = z + self.dropout(torch.cat(updates, 1))
        return z, self.genes_out(z)


class EGNNDenoiser(LayeredDenoiser):
    """EGNN with the same inputs and outputs as :class:`STFlowDenoiser`."""

    def __init__(self, in_dim: int, n_genes: int, hidden: int = 128, layers: int = 4,
                 dropout: float = 0.2, spatial_skip: bool = False) -> None:
        super().__init__(in_dim, n_genes, hidden,
                         [EGNNLayer(hidden, n_genes, dropout) for _ in range(layers)], dropout,
                         spatial_skip)

"""Denoisers f_θ(C, I, Y_t, t) → Ŷ: the frame-averaging transformer (STFlow) and an EGNN."""

from __future__ import annotations

from torch import nn

from stflow.errors import StflowError
from stflow.models.stflow.networks.egnn import EGNNDenoiser
from stflow.models.stflow.networks.fa_transformer import STFlowDenoiser
from stflow.models.stflow.networks.geometry import Geometry, prepare_geometry
from stflow.models.stflow.settings import DENOISERS

__all__ = ["DENOISERS", "EGNNDenoiser", "Geometry", "STFlowDenoiser", "build_denoiser",
           "prepare_geometry"]


def build_denoiser(name: str, in_dim: int, n_genes: int, hidden: int = 128, layers: int = 4,
                   heads: int = 4, dropout: float = 0.2, frame_averaging: bool = True,
                   spatial_skip: bool = False) -> nn.Module:
    """``fa``: STFlow's frame-averaging transformer; ``egnn``: the EGNN comparison."""
    if name == "fa":
        return STFlowDenoiser(in_dim, n_genes, hidden, layers, heads, dropout, frame_averaging,
                              spatial_skip)
    if name == "egnn":
        return EGNNDenoiser(in_dim, n_genes, hidden, layers, dropout, spatial_skip)
    raise StflowError(f"denoiser '{name}': unknown. Fix: use one of {list(DENOISERS)}")

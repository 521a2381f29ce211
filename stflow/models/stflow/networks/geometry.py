"""Edge geometry of a region: offsets C_{i→j} and their PCA frames (paper Eq. 4–6).

It depends only on coordinates, so it is computed once per region (training) or slide
(inference) and handed to every layer and every sampling step; the published code
recomputed it in each layer of each step.

A PCA frame is only defined when a neighbourhood is anisotropic. On a regular grid
(legacy ST, her2st: an interior spot's 8 neighbours form a square) the covariance is
isotropic, ``eigh`` returns an arbitrary basis and a 1e-6 µm jitter rotates it. The frame
coordinates are therefore scaled by an anisotropy weight w ∈ [0, 1] that is 0 for an
isotropic neighbourhood, so the encoding falls back smoothly to the invariant distances.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import torch

# The four frames (α1, α2) ∈ {±1}²: sign flips of the two principal axes (Eq. 5).
FRAME_SIGNS = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]],
                           dtype=torch.float64)


@dataclass
class Geometry:
    """Batched, padded neighbourhood geometry; every field is indexed (batch, spot, ...)."""

    neighbors: torch.Tensor  # (B, N, k) long, indices within the same region
    neighbor_mask: torch.Tensor  # (B, N, k) bool, False where the spot or neighbour is padding
    mask: torch.Tensor  # (B, N) bool, True for real spots
    offsets: torch.Tensor  # (B, N, k, 2) C_{i→j} / length scale
    projected: torch.Tensor  # (B, N, k, 4, 2) w_i (C_{i→j} − ĉ_i) U_g in each of the 4 frames
    distances: torch.Tensor  # (B, N, k, 1) ‖C_{i→j}‖ / length scale (E(2)-invariant)
    anisotropy: torch.Tensor  # (B, N, 1) w_i: how well spot i's PCA frame is defined
    # Opt-in store for one sampling run (fixed weights and features): layer outputs that
    # depend only on geometry and features are then computed once, not at every step.
    cache: dict | None = field(default=None, compare=False)
    cache_budget_bytes: int = 256 * 1024**2
    per_spot: set = field(default_factory=set, compare=False)  # cache keys outside the budget

    def rows(self, start: int, end: int) -> Geometry:
        """The geometry of spots ``start:end`` (neighbour indices stay region-wide)."""
        return Geometry(**{f.name: getattr(self, f.name)[:, start:end] for f in fields(self)
                           if f.name in _TENSORS})

    def cached(self, key: object, compute, per_spot: bool = False) -> torch.Tensor:
        """``compute()``, memoised in ``cache`` when enabled: within the byte budget, or
        always for a ``per_spot`` value (one row per spot, like the projected features: the
        step recomputing it would allocate as much, so keeping it costs no extra peak)."""
        if self.cache is None:
            return compute()
        if key not in self.cache:
            value = compute()
            if not per_spot and not self.has_room(key, value.numel() * value.element_size()):
                return value
            self.cache[key] = value
            if per_spot:
                self.per_spot.add(key)
        return self.cache[key]

    def has_room(self, key: object, nbytes: int) -> bool:
        """Whether ``cached(key, ...)`` of a value of ``nbytes`` would keep it (per-spot
        values do not count against the budget)."""
        if self.cache is None:
            return False
        if key in self.cache:
            return True
        used = sum(v.numel() * v.element_size() for k, v in self.cache.items()
                   if k not in self.per_spot)
        return used + nbytes <= self.cache_budget_bytes

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Geometry:
        """Move to ``device``; cast the float fields to ``dtype`` when given."""
        moved = {}
        for f in fields(self):
            if f.name not in _TENSORS:
                continue
            value = getattr(self, f.name).to(device)
            if dtype is not None and value.is_floating_point():
                value = value.to(dtype)
            moved[f.name] = value
        return Geometry(**moved)


_TENSORS = ("neighbors", "neighbor_mask", "mask", "offsets", "projected", "distances",
            "anisotropy")

# Relative eigenvalue gap (λ1 − λ2)/(λ1 + λ2) at and above which a frame counts as fully
# defined (w = 1); below it w falls linearly to 0. The frame's rotation under a coordinate
# perturbation δ is ~δ/(λ1 − λ2), so w·(frame coordinates) moves by at most ~δ/τ.
ANISOTROPY_SCALE = 0.15


def prepare_geometry(coords: np.ndarray | torch.Tensor, neighbors: np.ndarray | torch.Tensor,
                     mask: np.ndarray | torch.Tensor | None = None,
                     length_scale_um: float = 100.0,
                     dtype: torch.dtype = torch.float32) -> Geometry:
    """Offsets, PCA frames and invariants for coordinates (B, N, 2) or (N, 2) in microns.

    The PCA runs in float64 (closed form via ``eigh`` on each spot's 2×2 covariance) and the
    result is cast to ``dtype``. ``length_scale_um`` only rescales offsets to order one.
    Frame coordinates are weighted by w = clamp(((λ1 − λ2)/(λ1 + λ2)) / τ, 0, 1), so they
    are continuous in the coordinates even where the frame itself is not (λ1 = λ2).
    """
    coords = torch.as_tensor(coords, dtype=torch.float64)
    neighbors = torch.as_tensor(neighbors, dtype=torch.long)
    if coords.ndim == 2:
        coords, neighbors = coords[None], neighbors[None]
        mask = None if mask is None else torch.as_tensor(mask)[None]
    batch, n_spots, k = neighbors.shape
    mask = (torch.ones(batch, n_spots, dtype=torch.bool) if mask is None
            else torch.as_tensor(mask, dtype=torch.bool))
    index = neighbors.reshape(batch, n_spots * k, 1).expand(-1, -1, 2)
    neighbor_coords = coords.gather(1, index).reshape(batch, n_spots, k, 2)
    neighbor_mask = mask[:, :, None] & mask.gather(1, neighbors.reshape(batch, -1)).reshape(
        batch, n_spots, k)
    offsets = (coords[:, :, None, :] - neighbor_coords) / length_scale_um
    offsets = offsets * neighbor_mask[..., None]
    counts = neighbor_mask.sum(-1, keepdim=True).clamp_min(1)[..., None]
    centroid = offsets.sum(2, keepdim=True) / counts
    centred = (offsets - centroid) * neighbor_mask[..., None]
    covariance = centred.transpose(-1, -2) @ centred / counts
    values, vectors = torch.linalg.eigh(covariance)  # ascending: columns (u2, u1)
    axes = vectors.flip(-1)  # (u1, u2)
    gap = (values[..., 1] - values[..., 0]) / values.sum(-1).clamp_min(1e-12)
    anisotropy = (gap / ANISOTROPY_SCALE).clamp(0.0, 1.0)[..., None]  # (B, N, 1)
    local = centred @ axes * anisotropy[..., None]  # (B, N, k, 2) weighted frame coordinates
    projected = local[..., None, :] * FRAME_SIGNS  # (B, N, k, 4, 2)
    projected = projected * neighbor_mask[..., None, None]
    distances = offsets.norm(dim=-1, keepdim=True)  # zero where masked (offsets are zeroed)
    return Geometry(neighbors=neighbors, neighbor_mask=neighbor_mask, mask=mask,
                    offsets=offsets.to(dtype), projected=projected.to(dtype),
                    distances=distances.to(dtype), anisotropy=anisotropy.to(dtype))

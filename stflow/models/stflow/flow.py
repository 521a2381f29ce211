"""Flow matching for STFlow: the training loss (Algorithm 1) and the sampler (Algorithm 2).

The network predicts the clean expression Ŷ from Y_t = t·Y + (1 − t)·Y0, Y0 drawn from the
prior. With flow matching off (the "w/o FM" ablation) it is one-step regression from
Y_t = 0 at t = 0.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from stflow.models.stflow.networks.geometry import Geometry
from stflow.models.stflow.priors import Prior

Denoiser = Callable[..., torch.Tensor]  # (features, y_t, t, geometry, chunk_size=...) → Ŷ


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over real spots only (padding never enters the loss)."""
    weight = mask[..., None].to(pred.dtype)
    n_values = weight.sum().clamp_min(1) * pred.shape[-1]
    return (((pred - target) ** 2) * weight).sum() / n_values


def _prior_batch(prior: Prior, shape: torch.Size, generator: torch.Generator | None,
                 device: torch.device) -> torch.Tensor:
    batch, n_spots, n_genes = shape
    return prior.draw(batch * n_spots, n_genes, generator, device).reshape(shape)


def flow_matching_loss(model: Denoiser, features: torch.Tensor, targets: torch.Tensor,
                       geometry: Geometry, prior: Prior, generator: torch.Generator | None = None,
                       flow_matching: bool = True) -> torch.Tensor:
    """Algorithm 1 on a padded batch of regions: one t ~ U(0, 1) per region, masked MSE."""
    batch = targets.shape[0]
    device = targets.device
    if flow_matching:
        y0 = _prior_batch(prior, targets.shape, generator, device)
        t = torch.rand(batch, generator=generator).to(device)
        scale = t[:, None, None]
        y_t = scale * targets + (1 - scale) * y0
    else:
        y_t = torch.zeros_like(targets)
        t = torch.zeros(batch, device=device)
    pred = model(features, y_t, t, geometry)
    return masked_mse(pred.float(), targets, geometry.mask)


def draw(model: Denoiser, features: torch.Tensor, geometry: Geometry, prior: Prior,
         n_genes: int, steps: int = 5, n_samples: int = 1,
         generator: torch.Generator | None = None, flow_matching: bool = True,
         chunk_size: int | None = None) -> torch.Tensor:
    """Algorithm 2: S Euler steps from Y0; returns the last Ŷ, averaged over ``n_samples``."""
    batch, n_spots = features.shape[:2]
    shape = torch.Size((batch, n_spots, n_genes))
    device = features.device
    if not flow_matching:
        zeros = torch.zeros(shape, device=device)
        return model(features, zeros, torch.zeros(batch, device=device), geometry,
                     chunk_size=chunk_size).float()
    if steps < 1 or n_samples < 1:
        raise ValueError(f"steps ({steps}) and n_samples ({n_samples}) must be at least 1")
    total = torch.zeros(shape, device=device)
    for _ in range(n_samples):
        y = _prior_batch(prior, shape, generator, device)
        for step in range(steps):
            t1, t2 = step / steps, (step + 1) / steps
            t = torch.full((batch,), t1, device=device)
            pred = model(features, y, t, geometry, chunk_size=chunk_size).float()
            if step == steps - 1:
                break
            y = y + (pred - y) / (1 - t1) * (t2 - t1)
        total += pred
    return total / n_samples

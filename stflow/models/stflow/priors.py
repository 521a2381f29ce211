"""Priors Y0 of the flow, in log1p space: ZINB (paper Eq. 3), ZINB fitted to counts, zero, Gaussian.

The paper fixes π = 0.5 and grid-searches (μ, φ); it names that as a limitation. ``fit_zinb``
fits μ, φ, π per gene by maximum likelihood on the training counts instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from stflow.errors import StflowError, check_finite, input_error
from stflow.models.stflow.settings import PRIOR_NAMES

_LOG_CLAMP = 20.0  # bounds of the unconstrained parameters, so all-zero genes stay finite


class ZINB:
    """Zero-inflated negative binomial with mean ``mu``, inverse dispersion ``phi``, zeros ``pi``.

    Parameters broadcast against each other (one value, or one per gene).
    """

    def __init__(self, mu: torch.Tensor | float, phi: torch.Tensor | float,
                 pi: torch.Tensor | float) -> None:
        self.mu, self.phi, self.pi = (torch.as_tensor(v, dtype=torch.float64)
                                      for v in (mu, phi, pi))
        if (self.mu < 0).any() or (self.phi <= 0).any() or ((self.pi < 0) | (self.pi > 1)).any():
            raise input_error("ZINB prior", "needs mu >= 0, phi > 0 and 0 <= pi <= 1",
                              "pass valid prior parameters (paper: mu 0.2, phi 1, pi 0.5)")

    @property
    def mean(self) -> torch.Tensor:
        """E[y] = (1 - π) μ."""
        return (1 - self.pi) * self.mu

    @property
    def zero_prob(self) -> torch.Tensor:
        """P(y = 0) = π + (1 - π) (φ / (φ + μ))^φ."""
        return self.pi + (1 - self.pi) * (self.phi / (self.phi + self.mu)) ** self.phi

    def sample(self, shape: tuple[int, ...], generator: torch.Generator | None = None
               ) -> torch.Tensor:
        """Counts (float64) by the Gamma–Poisson mixture with Bernoulli(π) structural zeros."""
        mu, phi, pi = (v.expand(shape).contiguous() for v in (self.mu, self.phi, self.pi))
        gamma = torch._standard_gamma(phi, generator=generator)
        rate = gamma * mu / phi
        counts = torch.poisson(rate, generator=generator)
        zero = torch.rand(shape, generator=generator, dtype=torch.float64) < pi
        return counts.masked_fill(zero, 0.0)

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        """Log of the probability mass of Eq. 3 at counts ``y``."""
        y = torch.as_tensor(y, dtype=torch.float64)
        return zinb_log_prob(y, self.mu.log(), self.phi.log(), self.pi)


def zinb_log_prob(y: torch.Tensor, log_mu: torch.Tensor, log_phi: torch.Tensor,
                  pi: torch.Tensor) -> torch.Tensor:
    """ZINB log-pmf in terms of log μ and log φ, stable for μ → 0 and π → 0 or 1."""
    phi = log_phi.exp()
    log_phi_mu = torch.logaddexp(log_phi, log_mu)
    log_nb0 = phi * (log_phi - log_phi_mu)
    y_term = torch.where(y > 0, y * (log_mu - log_phi_mu), torch.zeros_like(y))
    log_nb = (torch.lgamma(y + phi) - torch.lgamma(phi) - torch.lgamma(y + 1) + log_nb0 + y_term)
    log_pi = torch.log(pi.clamp_min(1e-300))
    log_1m_pi = torch.log1p(-pi.clamp_max(1 - 1e-16))
    zero = torch.logaddexp(log_pi, log_1m_pi + log_nb0)
    return torch.where(y > 0, log_1m_pi + log_nb, zero)


def _initial_guess(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Method-of-moments start for (log μ, log φ, logit π), per gene."""
    mean = counts.mean(0)
    var = counts.var(0)
    nonzero = counts > 0
    pi = np.clip(1 - nonzero.mean(0) * 1.1, 0.05, 0.9)
    mu = np.maximum(mean / (1 - pi), 1e-3)
    excess = var - mean
    phi = np.where(excess > 1e-6, mean**2 / np.maximum(excess, 1e-6), 10.0)
    phi = np.clip(phi, 1e-2, 1e3)
    return np.log(mu), np.log(phi), np.log(pi / (1 - pi))


def fit_zinb(counts: np.ndarray, max_iter: int = 200) -> ZINB:
    """Per-gene maximum-likelihood ZINB on raw counts (N spots, G genes), vectorised over genes.

    Uses L-BFGS on unconstrained (log μ, log φ, logit π). All-zero genes get μ ≈ 0, π = 0.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] == 0:
        raise input_error("fit_zinb counts", f"shape {counts.shape} is not (N spots, G genes)",
                          "pass the raw training counts as a 2-D array")
    check_finite(counts, "counts", "fit_zinb")
    if (counts < 0).any():
        raise input_error("fit_zinb counts", "negative values", "pass raw non-negative counts")
    all_zero = counts.sum(0) == 0
    init = _initial_guess(counts)
    params = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in init]
    y = torch.from_numpy(counts)
    optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        log_mu, log_phi, logit_pi = (p.clamp(-_LOG_CLAMP, _LOG_CLAMP) for p in params)
        loss = -zinb_log_prob(y, log_mu, log_phi, torch.sigmoid(logit_pi)).mean(0).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        log_mu, log_phi, logit_pi = (p.clamp(-_LOG_CLAMP, _LOG_CLAMP) for p in params)
        mu, phi, pi = log_mu.exp(), log_phi.exp(), torch.sigmoid(logit_pi)
        zero = torch.from_numpy(all_zero)
        mu = torch.where(zero, torch.full_like(mu, 1e-8), mu)
        phi = torch.where(zero, torch.ones_like(phi), phi)
        pi = torch.where(zero, torch.zeros_like(pi), pi)
    return ZINB(mu, phi, pi)


@dataclass
class Prior:
    """A named prior; ``sample`` gives Y0 in log1p space, shape (n_spots, n_genes)."""

    name: str
    zinb: ZINB | None = None
    # Per-gene affine map into the model's target space: (log1p draw − shift) / scale, so
    # that Y0 lives where the (standardised) targets live. None: log1p space as is.
    shift: torch.Tensor | None = None
    scale: torch.Tensor | None = None

    def standardised(self, shift: np.ndarray, scale: np.ndarray) -> Prior:
        """The same prior seen through the targets' per-gene standardisation."""
        return Prior(self.name, self.zinb, torch.as_tensor(shift, dtype=torch.float32),
                     torch.as_tensor(scale, dtype=torch.float32))

    def draw(self, n_spots: int, n_genes: int, generator: torch.Generator | None = None,
             device: torch.device | str = "cpu") -> torch.Tensor:
        """Draw on the CPU with ``generator`` (so results match across devices), then move."""
        out = self._draw_log1p(n_spots, n_genes, generator)
        if self.shift is not None:
            out = (out - self.shift) / self.scale
        return out.to(device)

    def _draw_log1p(self, n_spots: int, n_genes: int, generator: torch.Generator | None
                      ) -> torch.Tensor:
        shape = (n_spots, n_genes)
        if self.name == "zero":
            out = torch.zeros(shape)
        elif self.name == "gaussian":
            out = torch.randn(shape, generator=generator)
        else:
            if self.zinb.mu.ndim and self.zinb.mu.shape[-1] not in (1, n_genes):
                raise input_error(f"prior {self.name}", f"fitted on {self.zinb.mu.shape[-1]} "
                                  f"genes but asked for {n_genes}",
                                  "fit the prior on counts of the same target genes")
            out = torch.log1p(self.zinb.sample(shape, generator)).float()
        return out

    def state(self) -> dict[str, object]:
        """Plain tensors and strings, for ``torch.save`` and ``weights_only`` loading."""
        state: dict[str, object] = {"name": self.name}
        if self.zinb is not None:
            state.update(mu=self.zinb.mu, phi=self.zinb.phi, pi=self.zinb.pi)
        if self.shift is not None:
            state.update(shift=self.shift, scale=self.scale)
        return state

    @classmethod
    def from_state(cls, state: dict[str, object]) -> Prior:
        name = str(state["name"])
        zinb = ZINB(state["mu"], state["phi"], state["pi"]) if "mu" in state else None
        return cls(name, zinb, state.get("shift"), state.get("scale"))


def make_prior(name: str, mu: float = 0.2, phi: float = 1.0, pi: float = 0.5,
               train_counts: np.ndarray | None = None) -> Prior:
    """Build a prior by name: ``zinb`` (paper), ``zinb-fitted``, ``zero``, ``gaussian``."""
    if name == "zinb":
        return Prior(name, ZINB(mu, phi, pi))
    if name == "zinb-fitted":
        if train_counts is None:
            raise input_error("prior zinb-fitted", "no training counts to fit",
                              "pass raw counts (Slide.counts) of the training slides")
        return Prior(name, fit_zinb(train_counts))
    if name in ("zero", "gaussian"):
        return Prior(name)
    raise StflowError(f"prior '{name}': unknown prior. Fix: use one of {list(PRIOR_NAMES)}")

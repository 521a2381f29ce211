"""Priors: the ZINB of Eq. 3, its maximum-likelihood fit, and the named priors of the flow."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stflow.errors import StflowError
from stflow.models.stflow.priors import ZINB, Prior, fit_zinb, make_prior


def test_zinb_samples_match_analytic_mean_and_zero_probability():
    dist = ZINB(mu=torch.tensor([0.2, 3.0]), phi=torch.tensor([1.0, 2.0]), pi=0.5)
    n = 200_000
    draws = dist.sample((n, 2), torch.Generator().manual_seed(0))
    zero_fraction = (draws == 0).double().mean(0)
    mean = draws.mean(0)
    zero_se = (dist.zero_prob * (1 - dist.zero_prob) / n).sqrt()
    assert torch.all((zero_fraction - dist.zero_prob).abs() < 5 * zero_se)
    # Var of a ZINB = (1-π)μ(1 + μ/φ + πμ); five standard errors of the sample mean.
    var = (1 - dist.pi) * dist.mu * (1 + dist.mu / dist.phi + dist.pi * dist.mu)
    assert torch.all((mean - dist.mean).abs() < 5 * (var / n).sqrt())
    assert torch.allclose(dist.mean, torch.tensor([0.1, 1.5], dtype=torch.float64))


def test_zinb_log_prob_is_a_normalised_pmf_matching_eq3():
    dist = ZINB(mu=1.3, phi=0.7, pi=0.25)
    y = torch.arange(0, 400, dtype=torch.float64)
    probs = dist.log_prob(y).exp()
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-9)
    assert probs[0].item() == pytest.approx(dist.zero_prob.item(), rel=1e-12)
    assert (probs * y).sum().item() == pytest.approx(dist.mean.item(), rel=1e-9)


@pytest.mark.slow
def test_fit_zinb_recovers_simulated_parameters_and_survives_all_zero_genes():
    truth = ZINB(mu=torch.tensor([4.0, 1.0]), phi=torch.tensor([2.0, 5.0]),
                 pi=torch.tensor([0.3, 0.5]))
    counts = truth.sample((20_000, 2), torch.Generator().manual_seed(1)).numpy()
    counts = np.c_[counts, np.zeros(len(counts))]
    fitted = fit_zinb(counts)
    assert np.allclose(fitted.mu[:2], truth.mu, rtol=0.1)
    assert np.allclose(fitted.phi[:2], truth.phi, rtol=0.3)
    assert np.allclose(fitted.pi[:2], truth.pi, atol=0.05)
    assert torch.isfinite(fitted.log_prob(torch.zeros(3))).all()
    assert fitted.mean[2] < 1e-6


def test_named_priors_sample_log1p_values_of_the_requested_shape():
    gen = torch.Generator().manual_seed(0)
    zinb = make_prior("zinb").draw(5000, 4, gen)
    assert zinb.shape == (5000, 4) and zinb.dtype == torch.float32
    counts = torch.expm1(zinb.double())
    assert torch.allclose(counts, counts.round(), atol=1e-4)  # log1p of integer counts
    assert (zinb == 0).float().mean() > 0.5  # π = 0.5 plus NB zeros
    assert torch.count_nonzero(make_prior("zero").draw(10, 3, gen)) == 0
    gauss = make_prior("gaussian").draw(20_000, 2, gen)
    assert abs(gauss.mean()) < 0.05 and abs(gauss.std() - 1) < 0.05


def test_fitted_prior_needs_counts_and_matches_gene_count():
    counts = np.random.default_rng(0).poisson(2.0, size=(500, 3))
    prior = make_prior("zinb-fitted", train_counts=counts)
    assert prior.draw(7, 3).shape == (7, 3)
    with pytest.raises(StflowError, match="same target genes"):
        prior.draw(7, 5)
    with pytest.raises(StflowError, match="no training counts"):
        make_prior("zinb-fitted")
    with pytest.raises(StflowError, match="unknown prior"):
        make_prior("poisson")


def test_a_standardised_prior_draws_in_the_targets_units():
    prior = make_prior("zinb", mu=0.4, phi=2.0, pi=0.5)
    shift, scale = np.array([0.5, 1.0, 2.0]), np.array([2.0, 0.5, 1.0])
    scaled = prior.standardised(shift, scale)
    raw = prior.draw(200, 3, torch.Generator().manual_seed(0))
    drawn = scaled.draw(200, 3, torch.Generator().manual_seed(0))
    assert torch.allclose(drawn, (raw - torch.tensor(shift).float()) / torch.tensor(scale).float())
    restored = Prior.from_state(scaled.state())
    assert torch.equal(restored.draw(200, 3, torch.Generator().manual_seed(0)), drawn)

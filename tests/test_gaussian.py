"""Gaussian utilities and priors: closed forms agree with independent references and with Monte-Carlo estimates."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from seqvae_zoo.gaussian import (DiagGaussian, gaussian_kl, gaussian_log_prob, split_params, standard_normal_kl,
                                 standard_normal_log_prob)
from seqvae_zoo.priors.mixture import MixturePrior
from seqvae_zoo.priors.standard_normal import StandardNormalPrior

SAMPLES = 400_000


def _random_gaussians(generator: torch.Generator, batch: int = 3, dim: int = 4) -> tuple[DiagGaussian, DiagGaussian]:
    def draw() -> DiagGaussian:
        return DiagGaussian(torch.randn(batch, dim, generator=generator, dtype=torch.float64),
                            torch.randn(batch, dim, generator=generator, dtype=torch.float64) * 0.7)
    return draw(), draw()


def _mc_mean_and_error(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over the first dimension, and four standard errors of it."""
    return values.mean(0), 4 * values.std(0) / math.sqrt(values.size(0))


def test_log_prob_matches_torch_distributions():
    generator = torch.Generator().manual_seed(0)
    q, _ = _random_gaussians(generator)
    value = torch.randn(q.mean.shape, generator=generator, dtype=torch.float64)
    reference = Independent(Normal(q.mean, torch.exp(0.5 * q.logvar)), 1).log_prob(value)
    torch.testing.assert_close(gaussian_log_prob(value, q.mean, q.logvar), reference)
    torch.testing.assert_close(q.log_prob(value), reference)
    torch.testing.assert_close(standard_normal_log_prob(value),
                               Independent(Normal(torch.zeros_like(value), 1.0), 1).log_prob(value))


def test_analytic_kl_matches_torch_distributions_and_is_zero_between_equals():
    generator = torch.Generator().manual_seed(1)
    q, p = _random_gaussians(generator)
    reference = kl_divergence(Independent(Normal(q.mean, torch.exp(0.5 * q.logvar)), 1),
                              Independent(Normal(p.mean, torch.exp(0.5 * p.logvar)), 1))
    torch.testing.assert_close(gaussian_kl(q.mean, q.logvar, p.mean, p.logvar), reference)
    torch.testing.assert_close(q.kl(p), reference)
    torch.testing.assert_close(q.kl(q), torch.zeros(q.mean.size(0), dtype=torch.float64))
    zeros = torch.zeros_like(q.mean)
    torch.testing.assert_close(standard_normal_kl(q.mean, q.logvar), gaussian_kl(q.mean, q.logvar, zeros, zeros))
    torch.testing.assert_close(q.kl_standard(), gaussian_kl(q.mean, q.logvar, zeros, zeros))


def test_analytic_kl_equals_a_monte_carlo_estimate():
    """KL(q || p) = E_q[log q(z) - log p(z)], with z drawn by the reparameterized sampler under test."""
    generator = torch.Generator().manual_seed(2)
    q, p = _random_gaussians(generator)
    noise = torch.randn((SAMPLES, *q.mean.shape), generator=generator, dtype=torch.float64)
    z = q.rsample(noise)
    estimate, error = _mc_mean_and_error(q.log_prob(z) - p.log_prob(z))
    analytic = q.kl(p)
    assert torch.all((estimate - analytic).abs() < error), (estimate, analytic, error)
    standard_estimate, standard_error = _mc_mean_and_error(q.log_prob(z) - standard_normal_log_prob(z))
    assert torch.all((standard_estimate - q.kl_standard()).abs() < standard_error)


def test_reparameterized_samples_have_the_right_moments():
    generator = torch.Generator().manual_seed(3)
    q, _ = _random_gaussians(generator, batch=1, dim=3)
    torch.manual_seed(3)
    z = torch.stack([q.rsample() for _ in range(20_000)])  # the noise is drawn inside rsample
    torch.testing.assert_close(z.mean(0), q.mean, atol=0.05, rtol=0)
    torch.testing.assert_close(z.var(0).log(), q.logvar, atol=0.05, rtol=0)


def test_split_params_reads_mean_then_logvar():
    params = torch.arange(6.0).view(1, 6)
    gaussian = split_params(params)
    assert gaussian.mean.tolist() == [[0.0, 1.0, 2.0]] and gaussian.logvar.tolist() == [[3.0, 4.0, 5.0]]


def test_standard_normal_prior_is_n_0_i_in_its_density_its_kl_and_its_samples():
    """Against torch.distributions' N(0, I): the KL the prior gives (at any z) is the exact KL to it."""
    generator = torch.Generator().manual_seed(4)
    q, _ = _random_gaussians(generator)
    prior = StandardNormalPrior(latent_dim=4)
    reference = Independent(Normal(torch.zeros(4, dtype=torch.float64), 1.0), 1)
    z = q.rsample(torch.randn(q.mean.shape, generator=generator, dtype=torch.float64))
    torch.testing.assert_close(prior.kl(q, z), kl_divergence(Independent(Normal(q.mean, torch.exp(0.5 * q.logvar)), 1),
                                                             reference))
    torch.testing.assert_close(prior.log_prob(z), reference.log_prob(z))
    torch.manual_seed(4)
    samples = prior.sample(20_000)
    assert samples.shape == (20_000, 4)
    torch.testing.assert_close(samples.mean(0), torch.zeros(4), atol=0.05, rtol=0)
    torch.testing.assert_close(samples.var(0), torch.ones(4), atol=0.05, rtol=0)


def _mixture(components: int, latent_dim: int, seed: int) -> MixturePrior:
    torch.manual_seed(seed)
    prior = MixturePrior(latent_dim=latent_dim, components=components).double()
    with torch.no_grad():
        prior.logits.normal_()
        prior.logvars.uniform_(-1.0, 0.5)
    return prior


def test_mixture_log_prob_is_a_normalized_density():
    prior = _mixture(components=3, latent_dim=1, seed=5)
    grid = torch.linspace(-12, 12, 200_001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        mass = torch.trapezoid(prior.log_prob(grid).exp(), grid[:, 0])
    assert mass.item() == pytest.approx(1.0, abs=1e-8)


def test_mixture_monte_carlo_kl_is_unbiased_against_quadrature():
    """The mixture has no closed-form KL: its one-sample estimate must average to the integral
    int q(z) (log q(z) - log p(z)) dz, here computed by quadrature in one dimension."""
    prior = _mixture(components=3, latent_dim=1, seed=6)
    q = DiagGaussian(torch.tensor([[0.4]], dtype=torch.float64), torch.tensor([[-0.6]], dtype=torch.float64))
    grid = torch.linspace(-15, 15, 300_001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        log_q = gaussian_log_prob(grid, q.mean[0], q.logvar[0])
        exact = torch.trapezoid(log_q.exp() * (log_q - prior.log_prob(grid)), grid[:, 0])
        generator = torch.Generator().manual_seed(6)
        z = q.rsample(torch.randn(SAMPLES, 1, 1, generator=generator, dtype=torch.float64))
        estimate, error = _mc_mean_and_error(prior.kl(q, z))
    assert abs(estimate.item() - exact.item()) < error.item(), (estimate, exact, error)


def test_mixture_of_identical_components_has_the_gaussian_kl():
    """With every component N(m, s^2), the mixture is that Gaussian: the MC KL averages to the analytic KL."""
    prior = _mixture(components=4, latent_dim=3, seed=7)
    with torch.no_grad():
        prior.means.copy_(torch.tensor([0.5, -1.0, 0.2], dtype=torch.float64).expand(4, 3))
        prior.logvars.copy_(torch.tensor([0.3, -0.2, 0.0], dtype=torch.float64).expand(4, 3))
        generator = torch.Generator().manual_seed(7)
        q, _ = _random_gaussians(generator, batch=2, dim=3)
        z = q.rsample(torch.randn((SAMPLES, 2, 3), generator=generator, dtype=torch.float64))
        torch.testing.assert_close(prior.log_prob(z[:5]), gaussian_log_prob(z[:5], prior.means[0], prior.logvars[0]))
        estimate, error = _mc_mean_and_error(prior.kl(q, z))
    analytic = gaussian_kl(q.mean, q.logvar, prior.means[0], prior.logvars[0])
    assert torch.all((estimate - analytic).abs() < error), (estimate, analytic, error)


def test_mixture_samples_follow_its_weights_and_components():
    prior = _mixture(components=2, latent_dim=1, seed=8)
    with torch.no_grad():
        prior.means.copy_(torch.tensor([[-20.0], [20.0]], dtype=torch.float64))
        prior.logits.copy_(torch.tensor([math.log(0.25), math.log(0.75)], dtype=torch.float64))
        torch.manual_seed(8)
        samples = prior.sample(40_000).double()
    assert samples.shape == (40_000, 1)
    assert (samples > 0).double().mean().item() == pytest.approx(0.75, abs=0.01)

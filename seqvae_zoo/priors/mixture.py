"""A learned mixture-of-Gaussians prior: a multimodal p(z_enc) (KL by one-sample Monte Carlo)."""

from __future__ import annotations

import torch
from torch import nn

from seqvae_zoo.errors import check_sizes
from seqvae_zoo.gaussian import gaussian_log_prob
from seqvae_zoo.priors.base import Prior
from seqvae_zoo.registry import PRIORS


@PRIORS.register("mixture")
class MixturePrior(Prior):
    """sum_k pi_k N(mu_k, diag(sigma_k^2)) with learned weights, means and variances."""

    def __init__(self, latent_dim: int, components: int = 10, init_spread: float = 1.0):
        super().__init__()
        check_sizes("priors.mixture", components=components)
        self.latent_dim = latent_dim
        self.logits = nn.Parameter(torch.zeros(components))
        self.means = nn.Parameter(torch.randn(components, latent_dim) * init_spread)
        self.logvars = nn.Parameter(torch.zeros(components, latent_dim))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        per_component = gaussian_log_prob(z.unsqueeze(-2), self.means, self.logvars)  # (..., K)
        return torch.logsumexp(per_component + torch.log_softmax(self.logits, dim=0), dim=-1)

    def sample(self, count: int) -> torch.Tensor:
        component = torch.multinomial(torch.softmax(self.logits, dim=0), count, replacement=True)
        noise = torch.randn(count, self.latent_dim, device=self.means.device)
        return self.means[component] + torch.exp(0.5 * self.logvars[component]) * noise

"""The prior interface for the sentence latent z_enc."""

from __future__ import annotations

import torch
from torch import nn

from seqvae_zoo.gaussian import DiagGaussian


class Prior(nn.Module):
    """p(z_enc). Constructors take ``latent_dim`` from the model."""

    latent_dim: int

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """log p(z), summed over the latent dimensions: (..., D) -> (...)."""
        raise NotImplementedError

    def sample(self, count: int) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def kl(self, posterior: DiagGaussian, z: torch.Tensor) -> torch.Tensor:
        """KL(q || p) per sentence. This default is the one-sample Monte-Carlo estimate at z ~ q; priors with a
        closed form override it."""
        return posterior.log_prob(z) - self.log_prob(z)

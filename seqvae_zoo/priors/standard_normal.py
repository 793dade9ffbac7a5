"""The standard normal prior N(0, I) of VRAE and VRAE-SA."""

from __future__ import annotations

import torch

from seqvae_zoo.gaussian import (DiagGaussian, standard_normal_kl, standard_normal_kl_per_dimension,
                                 standard_normal_log_prob)
from seqvae_zoo.priors.base import Prior
from seqvae_zoo.registry import PRIORS


@PRIORS.register("standard_normal")
class StandardNormalPrior(Prior):
    """N(0, I), with the analytic KL."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("_device_probe", torch.zeros(()), persistent=False)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return standard_normal_log_prob(z)

    def sample(self, count: int) -> torch.Tensor:
        return torch.randn(count, self.latent_dim, device=self._device_probe.device)

    def kl(self, posterior: DiagGaussian, z: torch.Tensor) -> torch.Tensor:
        return standard_normal_kl(posterior.mean, posterior.logvar)

    def kl_per_dimension(self, posterior: DiagGaussian) -> torch.Tensor:
        return standard_normal_kl_per_dimension(posterior.mean, posterior.logvar)

"""Diagonal Gaussians parameterized by mean and log-variance.

Plain functions on tensors rather than ``torch.distributions`` objects: the decoders call them once per time step,
where argument validation and object construction would cost more than the arithmetic.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from seqvae_zoo.kernels.precision import full_precision

LOG_2PI = math.log(2.0 * math.pi)


class DiagGaussian(NamedTuple):
    """N(mean, diag(exp(logvar))); the last dimension is the event dimension."""

    mean: torch.Tensor
    logvar: torch.Tensor

    def rsample(self, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Reparameterized sample mean + sigma * noise (standard normal noise drawn here unless given)."""
        if noise is None:
            noise = torch.randn_like(self.mean)
        return self.mean + torch.exp(0.5 * self.logvar) * noise

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return gaussian_log_prob(value, self.mean, self.logvar)

    def kl(self, other: "DiagGaussian") -> torch.Tensor:
        return gaussian_kl(self.mean, self.logvar, other.mean, other.logvar)

    def kl_standard(self) -> torch.Tensor:
        return standard_normal_kl(self.mean, self.logvar)

    def index(self, item) -> "DiagGaussian":
        return DiagGaussian(self.mean[item], self.logvar[item])


def split_params(params: torch.Tensor) -> DiagGaussian:
    """A linear layer's output [mean, logvar] (last dimension 2d) as a Gaussian, in float32 (a layer under bfloat16
    autocast gives bfloat16: the densities and KL terms computed from it stay float32)."""
    mean, logvar = full_precision(params).chunk(2, dim=-1)
    return DiagGaussian(mean, logvar)


def gaussian_log_prob(value: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(value; mean, exp(logvar)), summed over the last dimension."""
    return -0.5 * (LOG_2PI + logvar + (value - mean).pow(2) * torch.exp(-logvar)).sum(-1)


def standard_normal_log_prob(value: torch.Tensor) -> torch.Tensor:
    return -0.5 * (LOG_2PI + value.pow(2)).sum(-1)


def gaussian_kl(mean_q: torch.Tensor, logvar_q: torch.Tensor,
                mean_p: torch.Tensor, logvar_p: torch.Tensor) -> torch.Tensor:
    """KL(N_q || N_p) between diagonal Gaussians, summed over the last dimension."""
    return 0.5 * (logvar_p - logvar_q
                  + (torch.exp(logvar_q) + (mean_q - mean_p).pow(2)) * torch.exp(-logvar_p) - 1.0).sum(-1)


def standard_normal_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)), summed over the last dimension."""
    return standard_normal_kl_per_dimension(mean, logvar).sum(-1)


def standard_normal_kl_per_dimension(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean_i, exp(logvar_i)) || N(0, 1)) for each dimension i (N(0, I) factorizes, so they sum to the KL)."""
    return 0.5 * (torch.exp(logvar) + mean.pow(2) - 1.0 - logvar)

"""The diagonal Gaussian family: q(z_enc | x) = N(mu, diag(sigma^2)), the encoder giving [mu, log sigma^2]."""

from __future__ import annotations

import torch

from seqvae_zoo.gaussian import DiagGaussian, split_params
from seqvae_zoo.latents.base import LatentDistribution, LatentFamily, equal_weights
from seqvae_zoo.registry import LATENTS


class GaussianLatent(DiagGaussian, LatentDistribution):
    """:class:`seqvae_zoo.gaussian.DiagGaussian` (its sample, log-density and KL) behind the family interface."""

    __slots__ = ()
    index = LatentDistribution.index

    def rsample(self, noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """mean + sigma * noise, the standard normal noise drawn from ``generator`` (the global one by default)."""
        if noise is None:
            noise = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype, device=self.mean.device)
        return super().rsample(noise)

    def moment_matched(self, weights: torch.Tensor | None = None) -> "GaussianLatent":
        """The Gaussian with the mean and (diagonal) variance of the mixture of the batch (N, D), with ``weights``
        (N,) summing to 1 (equal weights by default): the Gaussian closest to the mixture in KL(mixture || .)."""
        if weights is None:
            weights = equal_weights(self.mean.size(0), self.mean)
        weights = weights.to(self.mean)[:, None]
        mean = (weights * self.mean).sum(dim=0)
        second_moment = (weights * (self.logvar.exp() + self.mean.pow(2))).sum(dim=0)
        return GaussianLatent(mean, (second_moment - mean.pow(2)).clamp_min(1e-8).log())


@LATENTS.register("gaussian")
class GaussianFamily(LatentFamily):
    """Diagonal Gaussian N(mu, diag(sigma^2)); the encoder's output layer gives [mu, log sigma^2]."""

    @property
    def parameter_size(self) -> int:
        return 2 * self.latent_dim

    def posterior(self, parameters: torch.Tensor) -> GaussianLatent:
        return GaussianLatent(*split_params(parameters))

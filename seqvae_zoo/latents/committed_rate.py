"""delta-VAE's committed rate (Razavi et al. 2019, "Preventing posterior collapse with delta-VAEs"): a Gaussian
posterior whose variance is held where its KL to N(0, I) is at least delta per dimension, whatever its mean."""

from __future__ import annotations

import math

import torch

from seqvae_zoo.errors import UserError
from seqvae_zoo.gaussian import split_params
from seqvae_zoo.latents.gaussian import GaussianFamily, GaussianLatent
from seqvae_zoo.registry import LATENTS


def committed_sigma(delta: float) -> float:
    """The sigma < 1 with (1/2)(sigma^2 - log sigma^2 - 1) = delta, by bisection on s = sigma^2 in (0, 1), where
    s - log s - 1 falls from infinity to 0."""
    low, high = 0.0, 1.0
    for _ in range(200):
        middle = (low + high) / 2
        if middle - math.log(middle) - 1 > 2 * delta:
            low = middle
        else:
            high = middle
    return math.sqrt(low)  # the side where the KL is at least delta


@LATENTS.register("delta_gaussian")
class CommittedRateGaussianFamily(GaussianFamily):
    """delta-VAE's committed rate (Razavi et al. 2019): sigma held where the KL is at least delta a dimension.

    N(mu, diag(sigma^2)) with sigma = sigma_l + (sigma_u - sigma_l) sigmoid(a), the encoder giving [mu, a].

    Per dimension, KL(N(mu, sigma^2) || N(0, 1)) = (1/2)(mu^2 + sigma^2 - log sigma^2 - 1) >= (1/2)(sigma^2 - log
    sigma^2 - 1), which falls as sigma rises to 1; sigma_u is the sigma < 1 where it equals ``delta``, so every
    sentence's KL is at least n delta (n latent dimensions), the committed rate. sigma_l = ``sigma_floor`` sigma_u
    bounds the precision from above (the other side of the constraint interval)."""

    def __init__(self, latent_dim: int, delta: float = 0.1, sigma_floor: float = 0.1):
        if not delta > 0:
            raise UserError(f"latents.delta_gaussian.delta is the committed rate per dimension in nats and must be "
                            f"positive; got {delta}")
        if not 0 <= sigma_floor < 1:
            raise UserError(f"latents.delta_gaussian.sigma_floor is the lowest sigma as a fraction of the highest, in "
                            f"[0, 1); got {sigma_floor}")
        super().__init__(latent_dim)
        self.delta = float(delta)
        self.sigma_upper = committed_sigma(self.delta)
        self.sigma_lower = sigma_floor * self.sigma_upper

    def posterior(self, parameters: torch.Tensor) -> GaussianLatent:
        mean, raw = split_params(parameters)
        sigma = self.sigma_lower + (self.sigma_upper - self.sigma_lower) * torch.sigmoid(raw)
        return GaussianLatent(mean, 2 * torch.log(sigma))

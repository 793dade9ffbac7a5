"""The uniform distribution on the unit sphere: the prior of a von Mises-Fisher latent (Xu & Durrett 2018), and of
any other family on the sphere (a :class:`~seqvae_zoo.latents.base.SphericalFamily`)."""

from __future__ import annotations

import torch

from seqvae_zoo.latents.base import LatentDistribution, SphericalFamily
from seqvae_zoo.latents.sphere import log_sphere_area, uniform_on_sphere
from seqvae_zoo.priors.base import Prior
from seqvae_zoo.registry import PRIORS


@PRIORS.register("uniform_sphere")
class UniformSpherePrior(Prior):
    """Uniform on the unit sphere, p(z) = 1 / |S^{d-1}|, for vMF latents; the family's closed-form KL to it."""

    family = SphericalFamily

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("_device_probe", torch.zeros(()), persistent=False)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return z.new_full(z.shape[:-1], -log_sphere_area(self.latent_dim))

    def sample(self, count: int) -> torch.Tensor:
        return uniform_on_sphere((count,), self.latent_dim, self._device_probe.dtype, self._device_probe.device)

    def kl(self, posterior: LatentDistribution, z: torch.Tensor) -> torch.Tensor:
        return posterior.kl_uniform()

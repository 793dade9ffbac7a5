"""The power spherical distribution (De Cao & Aziz 2020) as a latent family for seqvae_zoo: a new family in one file
(see docs/adding-a-variant.md).

PS(z; mu, kappa) = N_d(kappa)^{-1} (1 + mu^T z)^kappa on the unit sphere S^{d-1}, an alternative to von Mises-Fisher
without Bessel functions and without rejection sampling: w = mu^T z is 2t - 1 for t ~ Beta((d-1)/2 + kappa,
(d-1)/2), and the normalizer is N_d(kappa) = 2^{a+b} pi^b Gamma(a) / Gamma(a+b) with a = (d-1)/2 + kappa, b = (d-1)/2.
It is a family on the sphere, so it pairs with ``priors.uniform_sphere`` (its KL to the uniform distribution is in
closed form) as well as with ``priors.vamp``.

Importing this module registers the family as ``latents.power_spherical``: a gin file imports it
(``import power_spherical``), or a package names it in its ``seqvae_zoo.plugins`` entry points.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from seqvae_zoo.latents.base import LatentDistribution, SphericalFamily
from seqvae_zoo.latents.vmf import log_sphere_area, uniform_on_sphere
from seqvae_zoo.registry import LATENTS


class _Parameters(NamedTuple):
    direction: torch.Tensor  # (..., D), unit norm
    kappa: torch.Tensor  # (...,)


class PowerSpherical(_Parameters, LatentDistribution):
    """PS(direction, kappa); ``mean`` is the mean direction."""

    __slots__ = ()
    index = LatentDistribution.index  # not tuple.index

    @property
    def mean(self) -> torch.Tensor:
        return self.direction

    def _beta_parameters(self) -> tuple[torch.Tensor, float]:
        half = (self.direction.size(-1) - 1) / 2
        return half + self.kappa, half

    def log_normalizer(self) -> torch.Tensor:
        """-log N_d(kappa)."""
        a, b = self._beta_parameters()
        return -((a + b) * math.log(2) + b * math.log(math.pi) + torch.lgamma(a) - torch.lgamma(a + b))

    def rsample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """w = 2t - 1, t ~ Beta(a, b); z = H(mu) [w; sqrt(1 - w^2) v], v uniform on S^{d-2}, H(mu) the Householder
        reflection taking the first axis to mu. The Beta draw uses the global random state (torch's Beta takes no
        generator)."""
        dim = self.direction.size(-1)
        direction = self.direction.reshape(-1, dim)
        a, b = self._beta_parameters()
        t = torch.distributions.Beta(a.reshape(-1), torch.full_like(a.reshape(-1), b)).sample()
        w = 2 * t - 1
        tangent = uniform_on_sphere((w.numel(),), dim - 1, direction.dtype, direction.device, generator)
        z = torch.cat([w[:, None], (4 * t * (1 - t)).sqrt()[:, None] * tangent], dim=1)  # 1 - w^2 = 4 t (1 - t)
        axis = torch.zeros_like(direction)
        axis[:, 0] = 1
        reflection = F.normalize(axis - direction, dim=1)
        z = z - 2 * (z * reflection).sum(dim=1, keepdim=True) * reflection
        return z.reshape(self.direction.shape)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return self.log_normalizer() + self.kappa * torch.log1p((self.direction * z).sum(-1))

    def kl_uniform(self) -> torch.Tensor:
        """KL(PS || uniform) = -H(PS) + log |S^{d-1}|, with E[log(1 + w)] = log 2 + psi(a) - psi(a + b)."""
        a, b = self._beta_parameters()
        expected_log = math.log(2) + torch.digamma(a) - torch.digamma(a + b)
        return self.log_normalizer() + self.kappa * expected_log + log_sphere_area(self.direction.size(-1))


@LATENTS.register("power_spherical")
class PowerSphericalFamily(SphericalFamily):
    """Power spherical PS(mu, kappa) on the unit sphere (De Cao & Aziz 2020); the encoder gives mu, kappa is fixed."""

    def __init__(self, latent_dim: int, kappa: float = 50.0):
        super().__init__(latent_dim)
        self.kappa = float(kappa)

    @property
    def parameter_size(self) -> int:
        return self.latent_dim

    def posterior(self, parameters: torch.Tensor) -> PowerSpherical:
        return PowerSpherical(F.normalize(parameters, dim=-1), parameters.new_full(parameters.shape[:-1], self.kappa))

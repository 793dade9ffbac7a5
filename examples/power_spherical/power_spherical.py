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

import torch

from seqvae_zoo.latents.sphere import DirectionalDistribution, FixedConcentrationFamily, around, log_sphere_area
from seqvae_zoo.registry import LATENTS


class PowerSpherical(DirectionalDistribution):
    """PS(direction, kappa) on S^{D-1}."""

    __slots__ = ()

    def _beta_parameters(self) -> tuple[torch.Tensor, float]:
        half = (self.dim - 1) / 2
        return half + self.kappa, half

    def log_normalizer(self) -> torch.Tensor:
        """-log N_d(kappa)."""
        a, b = self._beta_parameters()
        return -((a + b) * math.log(2) + b * math.log(math.pi) + torch.lgamma(a) - torch.lgamma(a + b))

    def rsample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """z at cosine w = 2t - 1 to mu, t ~ Beta(a, b) (1 - w^2 = 4 t (1 - t)). The Beta draw uses the global random
        state (torch's Beta takes no generator)."""
        a, b = self._beta_parameters()
        t = torch.distributions.Beta(a.reshape(-1), torch.full_like(a.reshape(-1), b)).sample()
        return around(self.direction.reshape(-1, self.dim), 2 * t - 1, 4 * t * (1 - t), generator).reshape(
            self.direction.shape)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return self.log_normalizer() + self.kappa * torch.log1p((self.direction * z).sum(-1))

    def kl_uniform(self) -> torch.Tensor:
        """KL(PS || uniform) = -H(PS) + log |S^{d-1}|, with E[log(1 + w)] = log 2 + psi(a) - psi(a + b)."""
        a, b = self._beta_parameters()
        expected_log = math.log(2) + torch.digamma(a) - torch.digamma(a + b)
        return self.log_normalizer() + self.kappa * expected_log + log_sphere_area(self.dim)


@LATENTS.register("power_spherical")
class PowerSphericalFamily(FixedConcentrationFamily):
    """Power spherical PS(mu, kappa) on the unit sphere (De Cao & Aziz 2020); the encoder gives mu, kappa is fixed."""

    distribution = PowerSpherical

"""What the spherical families share: distributions given by a mean direction and a concentration, and the geometry
of the unit sphere S^{d-1} (its area, uniform points, a point at a given cosine to a direction)."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from seqvae_zoo.errors import UserError
from seqvae_zoo.latents.base import LatentDistribution, SphericalFamily


class _DirectionAndConcentration(NamedTuple):
    direction: torch.Tensor  # (..., D), unit norm
    kappa: torch.Tensor  # (...,)


class DirectionalDistribution(_DirectionAndConcentration, LatentDistribution):
    """A distribution on S^{D-1} given by its mean direction and concentration; ``mean`` is the direction (on the
    sphere, the point that stands for a sentence)."""

    __slots__ = ()
    index = LatentDistribution.index  # not tuple.index

    @property
    def dim(self) -> int:
        return self.direction.size(-1)

    @property
    def mean(self) -> torch.Tensor:
        return self.direction


def log_sphere_area(dim: int) -> float:
    """log of the surface area of S^{dim-1}: 2 pi^{d/2} / Gamma(d/2)."""
    return math.log(2) + dim / 2 * math.log(math.pi) - math.lgamma(dim / 2)


def uniform_on_sphere(shape: tuple[int, ...], dim: int, dtype: torch.dtype, device: torch.device,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Points (*shape, dim) drawn uniformly on S^{dim-1}: normalized standard normal vectors."""
    return F.normalize(torch.randn(*shape, dim, dtype=dtype, device=device, generator=generator), dim=-1)


def around(direction: torch.Tensor, w: torch.Tensor, one_minus_w2: torch.Tensor,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Points z with mu^T z = w, uniform in the rest: H(mu) [w; sqrt(1 - w^2) v] for v uniform on S^{d-2} and H(mu)
    the Householder reflection that takes the first axis to mu. ``direction`` (N, D) is mu; ``w`` and
    ``one_minus_w2`` (N,) are w and 1 - w^2 (given apart, where the family computes 1 - w^2 without cancellation).
    The gradient reaches mu through H (Davidson et al. 2018); w and v do not depend on it."""
    tangent = uniform_on_sphere((w.numel(),), direction.size(1) - 1, w.dtype, w.device, generator)
    z = torch.cat([w[:, None], one_minus_w2.sqrt()[:, None] * tangent], dim=1).to(direction.dtype)
    axis = torch.zeros_like(direction)
    axis[:, 0] = 1
    reflection = F.normalize(axis - direction, dim=1)  # 0 where mu is the first axis: H is then the identity
    return z - 2 * (z * reflection).sum(dim=1, keepdim=True) * reflection


class FixedConcentrationFamily(SphericalFamily):
    """The encoder's output layer gives a vector whose direction is mu; kappa is fixed (``latents.<name>.kappa``).
    Subclasses set ``distribution``."""

    distribution: type[DirectionalDistribution]

    def __init__(self, latent_dim: int, kappa: float = 50.0):
        if latent_dim < 2:
            raise UserError(f"{self!r} lives on the sphere S^(d-1), which needs d >= 2; got latent_dim {latent_dim}: "
                            "set the encoder's latent_dim to 2 or more")
        if not kappa > 0:
            raise UserError(f"{self!r}.kappa is the fixed concentration and must be positive; got {kappa}")
        super().__init__(latent_dim)
        self.kappa = float(kappa)

    @property
    def parameter_size(self) -> int:
        return self.latent_dim

    def posterior(self, parameters: torch.Tensor) -> DirectionalDistribution:
        return self.distribution(F.normalize(parameters, dim=-1),
                                 parameters.new_full(parameters.shape[:-1], self.kappa))

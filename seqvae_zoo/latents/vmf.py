"""The von Mises-Fisher family (Xu & Durrett 2018): z_enc on the unit sphere S^{d-1}, concentration kappa fixed.

vMF(z; mu, kappa) = C_d(kappa) exp(kappa mu^T z), C_d(kappa) = kappa^{d/2-1} / ((2 pi)^{d/2} I_{d/2-1}(kappa)),
with I_v the modified Bessel function of the first kind. The encoder gives the mean direction mu; with kappa fixed,
KL(vMF(mu, kappa) || uniform on the sphere) is the same constant for every sentence, so the KL term cannot collapse
the posterior. Bessel functions are evaluated in log space: for the kappa and d of text VAEs (tens to hundreds)
I_v(kappa) overflows float64 well before the models do anything unusual.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from seqvae_zoo.latents.base import equal_weights
from seqvae_zoo.latents.sphere import (DirectionalDistribution, FixedConcentrationFamily, around, log_sphere_area,
                                       uniform_on_sphere)
from seqvae_zoo.registry import LATENTS


def log_bessel_iv(order: float, x: torch.Tensor) -> torch.Tensor:
    """log I_order(x) for x > 0, elementwise, in float64: the power series
    I_v(x) = sum_m (x/2)^{2m+v} / (m! Gamma(m+v+1)) summed in log space. Its terms peak near m = x/2 and fall off
    like a Gaussian of width about sqrt(x)/2 beyond, so x/2 + 12 sqrt(x) + 30 terms reach float64 precision."""
    x = torch.as_tensor(x, dtype=torch.float64)
    terms = int(x.max().item() / 2 + 12 * math.sqrt(x.max().item()) + 30)
    m = torch.arange(terms, dtype=torch.float64, device=x.device)
    log_terms = ((2 * m + order) * torch.log(x / 2)[..., None]
                 - torch.lgamma(m + 1) - torch.lgamma(m + order + 1))
    return torch.logsumexp(log_terms, dim=-1)


def mean_resultant_length(dim: int, kappa: torch.Tensor) -> torch.Tensor:
    """A_d(kappa) = I_{d/2}(kappa) / I_{d/2-1}(kappa) = ||E[z]||, in float64."""
    return torch.exp(log_bessel_iv(dim / 2, kappa) - log_bessel_iv(dim / 2 - 1, kappa))


def log_normalizer(dim: int, kappa: torch.Tensor) -> torch.Tensor:
    """log C_d(kappa), in float64."""
    kappa = torch.as_tensor(kappa, dtype=torch.float64)
    return (dim / 2 - 1) * torch.log(kappa) - dim / 2 * math.log(2 * math.pi) - log_bessel_iv(dim / 2 - 1, kappa)


def _wood_w(kappa: torch.Tensor, dim: int, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Wood's (1994) rejection sampler for w = mu^T z, whose density is proportional to
    exp(kappa w) (1 - w^2)^{(d-3)/2}; kappa (N,) float64. Returns w and 1 - w^2, the latter computed without the
    cancellation of 1 - w^2 near w = 1 (large kappa).

    The Beta((d-1)/2, (d-1)/2) proposal is (1 + t) / 2 for t the first coordinate of a uniform point on S^{d-1},
    so every draw comes from ``generator``. With e the proposal, 1 - x0 w, 1 - w and 1 + w are written in b and e
    (their closed forms), so that nothing cancels when b is small."""
    m = dim - 1
    b = m / (2 * kappa + torch.sqrt(4 * kappa ** 2 + m ** 2))
    x0 = (1 - b) / (1 + b)
    c = kappa * x0 + m * (torch.log(4 * b) - 2 * torch.log1p(b))  # m log(1 - x0^2)
    w = torch.empty_like(kappa)
    one_minus_w2 = torch.empty_like(kappa)
    pending = torch.arange(kappa.numel(), device=kappa.device)
    while pending.numel():
        k, bp, cp = kappa[pending], b[pending], c[pending]
        e = (1 + uniform_on_sphere((pending.numel(),), dim, kappa.dtype, kappa.device, generator)[:, 0]) / 2
        denominator = 1 - (1 - bp) * e
        proposal = (1 - (1 + bp) * e) / denominator
        log_one_minus_x0w = torch.log(2 * bp) - torch.log1p(bp) - torch.log(denominator)
        u = torch.rand(pending.numel(), dtype=kappa.dtype, device=kappa.device, generator=generator)
        accepted = k * proposal + m * log_one_minus_x0w - cp >= torch.log(u)
        rows = pending[accepted]
        w[rows] = proposal[accepted]
        one_minus_w2[rows] = (4 * bp * e * (1 - e) / denominator ** 2)[accepted]  # (1 - w)(1 + w)
        pending = pending[~accepted]
    return w, one_minus_w2


class VonMisesFisher(DirectionalDistribution):
    """vMF(direction, kappa) on S^{D-1}."""

    __slots__ = ()

    def rsample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """z at cosine w to mu, w by Wood's algorithm (kappa is fixed, so the gradient reaches mu through the
        reflection of :func:`~seqvae_zoo.latents.sphere.around` alone)."""
        w, one_minus_w2 = _wood_w(self.kappa.reshape(-1).double(), self.dim, generator)
        return around(self.direction.reshape(-1, self.dim), w, one_minus_w2, generator).reshape(self.direction.shape)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log C_D(kappa) + kappa mu^T z."""
        log_c = log_normalizer(self.dim, self.kappa).to(z.dtype)
        return log_c + self.kappa.to(z.dtype) * (self.direction * z).sum(-1)

    def mean_resultant_length(self) -> torch.Tensor:
        return mean_resultant_length(self.dim, self.kappa).to(self.direction.dtype)

    def kl_uniform(self) -> torch.Tensor:
        """KL(vMF || uniform on S^{D-1}) = kappa A_D(kappa) + log C_D(kappa) + log |S^{D-1}|."""
        kappa = self.kappa.double()
        kl = kappa * mean_resultant_length(self.dim, kappa) + log_normalizer(self.dim, kappa)
        return (kl + log_sphere_area(self.dim)).to(self.direction.dtype)

    def kl(self, other: "VonMisesFisher") -> torch.Tensor:
        """KL(vMF(mu1, k1) || vMF(mu2, k2)) = log C(k1) - log C(k2) + A(k1) (k1 - k2 mu1^T mu2), E[z] = A(k1) mu1."""
        resultant = self.mean_resultant_length()
        log_c = log_normalizer(self.dim, self.kappa) - log_normalizer(self.dim, other.kappa)
        alignment = (self.direction * other.direction).sum(-1)
        return log_c.to(resultant.dtype) + resultant * (self.kappa - other.kappa * alignment)

    def moment_matched(self, weights: torch.Tensor | None = None) -> "VonMisesFisher":
        """The vMF with the mixture's first moment r = sum_i w_i A(k_i) mu_i: direction r / |r|, concentration
        A_D^{-1}(|r|) (Banerjee et al. 2005's approximation, refined by Newton's method on A_D(kappa) = |r|,
        A_D'(kappa) = 1 - A^2 - (D - 1) A / kappa)."""
        if weights is None:
            weights = equal_weights(self.kappa.size(0), self.direction)
        first_moment = (weights.to(self.direction)[:, None] * self.mean_resultant_length()[:, None]
                        * self.direction).sum(dim=0)
        length = first_moment.norm().double().clamp(1e-12, 1 - 1e-12)
        kappa = length * (self.dim - length ** 2) / (1 - length ** 2)
        for _ in range(5):
            resultant = mean_resultant_length(self.dim, kappa)
            slope = 1 - resultant ** 2 - (self.dim - 1) * resultant / kappa
            kappa = (kappa - (resultant - length) / slope).clamp_min(1e-6)
        return VonMisesFisher(F.normalize(first_moment, dim=0), kappa.to(self.kappa))


@LATENTS.register("vmf")
class VMFFamily(FixedConcentrationFamily):
    """von Mises-Fisher vMF(mu, kappa) on the unit sphere; the encoder gives mu, kappa is fixed (Xu & Durrett 2018).

    Pair it with ``priors.uniform_sphere`` (or ``priors.vamp``)."""

    distribution = VonMisesFisher

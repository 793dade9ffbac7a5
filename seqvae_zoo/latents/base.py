"""The latent-family interface: a distribution over z_enc, and the family that builds it from the encoder."""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

import torch

D = TypeVar("D", bound="LatentDistribution")


class LatentDistribution:
    """A batch of distributions over z_enc, held as a tuple of parameter tensors with the batch dimensions first.

    A family's distribution is a ``NamedTuple`` of its parameters that also derives from this class and provides:

    - ``rsample(generator=None)``: z with its gradient reaching the parameters (reparameterized);
    - ``log_prob(z)``: log q(z), broadcasting z (..., D) against the batch (so ``log_prob(z[:, None])`` scores every
      z under every distribution of the batch: the aggregate posterior of MI);
    - ``mean``: the point that stands for the distribution (a sentence's representation, z_enc in
      ``posterior_mean`` mode);
    - ``kl(other)``: KL to another distribution of the same family, in closed form;
    - ``moment_matched(weights)``: the family member closest to the weighted mixture of the batch (summarization's
      topic distribution).
    """

    __slots__ = ()

    def map(self: D, function: Callable[[torch.Tensor], torch.Tensor]) -> D:
        """The same family with ``function`` applied to every parameter tensor (index, move, repeat, expand)."""
        return type(self)(*(function(parameter) for parameter in self))

    def index(self: D, item) -> D:
        return self.map(lambda parameter: parameter[item])

    def rsample(self, generator: torch.Generator | None = None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def kl(self, other) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} gives no closed-form KL between two of its distributions, "
                                  "which the kl and query rankers read")

    def moment_matched(self: D, weights: torch.Tensor | None = None) -> D:
        raise NotImplementedError(f"{type(self).__name__} gives no moment-matched mixture, which a summarization "
                                  "topic is made of")


def concatenate(parts: Sequence[D]) -> D:
    """Distributions of one family, batched along the first dimension."""
    return type(parts[0])(*(torch.cat(parameters) for parameters in zip(*parts)))


def stack(parts: Sequence[D]) -> D:
    """Distributions of one family, stacked along a new first dimension."""
    return type(parts[0])(*(torch.stack(parameters) for parameters in zip(*parts)))


def equal_weights(count: int, like: torch.Tensor) -> torch.Tensor:
    return torch.full((count,), 1.0 / count, dtype=like.dtype, device=like.device)


class LatentFamily:
    """Builds q(z_enc | x) from the encoder's output layer. Constructors take ``latent_dim`` from the encoder; the
    rest comes from gin (``latents.<name>.<argument>``)."""

    latent_dim: int

    def __init__(self, latent_dim: int):
        self.latent_dim = latent_dim

    @property
    def parameter_size(self) -> int:
        """How many numbers the encoder's output layer gives per sentence."""
        raise NotImplementedError  # pragma: no cover

    def posterior(self, parameters: torch.Tensor) -> LatentDistribution:
        """The distribution of ``parameters`` (B, parameter_size)."""
        raise NotImplementedError  # pragma: no cover

    def __repr__(self) -> str:
        return f"latents.{getattr(type(self), 'registry_name', type(self).__name__)}"


class SphericalFamily(LatentFamily):
    """A family on the unit sphere S^{d-1}, which pairs with the uniform prior on it: its distributions give
    ``kl_uniform()``, KL(q || uniform on S^{d-1})."""

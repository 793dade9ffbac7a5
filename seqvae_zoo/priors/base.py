"""The prior interface for the sentence latent z_enc."""

from __future__ import annotations

import torch
from torch import nn

from seqvae_zoo.errors import UserError
from seqvae_zoo.latents.base import LatentDistribution, LatentFamily
from seqvae_zoo.latents.gaussian import GaussianFamily


class FamilyMismatchError(UserError):
    """A prior over one latent family paired with an encoder of another."""


class Prior(nn.Module):
    """p(z_enc). Constructors take ``latent_dim`` from the model; the model then calls :meth:`bind` with its encoder.

    ``family`` is the latent family the prior is a distribution over (the encoder's must be one), or None for a
    prior made of the encoder's own posteriors, which fits every family.
    """

    latent_dim: int
    family: type[LatentFamily] | None = GaussianFamily

    def bind(self, encoder: nn.Module) -> None:
        """Called once, when the model is built: refuses an encoder of another latent family. A prior that holds
        parameters shaped by the encoder, or calls it, overrides this (and calls it first)."""
        family = getattr(encoder, "family", None)
        if not isinstance(family, LatentFamily):
            raise FamilyMismatchError(f"encoder {type(encoder).__name__} declares no latent family: an encoder sets "
                                      "self.family to the LatentFamily of its posterior (see encoders.base.Encoder)")
        if self.family is not None and not isinstance(family, self.family):
            raise FamilyMismatchError(
                f"prior {_name(type(self))} is a distribution over latents of {_name(self.family)}, but the encoder's "
                f"family is {_name(type(family))}: choose a prior of that family (latents.vmf pairs with "
                "priors.uniform_sphere, latents.gaussian with priors.standard_normal or priors.mixture; priors.vamp "
                "fits every family), or set the encoder's family to match the prior")

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """log p(z), summed over the latent dimensions: (..., D) -> (...)."""
        raise NotImplementedError

    def sample(self, count: int) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def kl(self, posterior: LatentDistribution, z: torch.Tensor) -> torch.Tensor:
        """KL(q || p) per sentence. This default is the one-sample Monte-Carlo estimate at z ~ q; priors with a
        closed form override it."""
        return posterior.log_prob(z) - self.log_prob(z)

    def kl_per_dimension(self, posterior: LatentDistribution) -> torch.Tensor:  # pragma: no cover
        """KL(q_i || p_i) of each latent dimension i, (B, D), for a prior and posterior that factorize over the
        dimensions (their sum is the KL); per-dimension regularizers need it. A prior without it leaves this out."""
        raise NotImplementedError


def _name(component: type) -> str:
    """A component's gin name where it has one (``priors.vamp``), else its class name."""
    kind = {Prior: "priors", LatentFamily: "latents"}
    for base, prefix in kind.items():
        if issubclass(component, base) and hasattr(component, "registry_name"):
            return f"{prefix}.{component.registry_name}"
    return component.__name__

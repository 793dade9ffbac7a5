"""VampPrior (Tomczak & Welling 2018): p(z) = (1/K) sum_k q(z | u_k), the encoder's posteriors at K learned
pseudo-inputs.

For text, a pseudo-input u_k is a learned sequence of ``length`` embedding vectors, read by the encoder's recurrence
in place of a sentence's embedded words (:meth:`~seqvae_zoo.encoders.base.Encoder.encode_embeddings`). The prior is
a distribution of the encoder's own family, so it fits every family. There is no closed-form KL to a mixture: the
KL term is the one-sample Monte Carlo estimate log q(z|x) - log p(z) at z ~ q(z|x).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from seqvae_zoo.errors import UserError
from seqvae_zoo.latents.base import LatentDistribution
from seqvae_zoo.priors.base import Prior
from seqvae_zoo.registry import PRIORS


@PRIORS.register("vamp")
class VampPrior(Prior):
    """(1/K) sum_k q(z | u_k): the encoder's posteriors at K learned pseudo-inputs (Tomczak & Welling 2018).

    Each pseudo-input is ``length`` embedding vectors (initialized N(0, init_scale^2), like word embeddings), learned
    with the model; the components are recomputed through the encoder whenever the prior is read."""

    family = None  # the encoder's posteriors: whichever family the encoder has

    def __init__(self, latent_dim: int, components: int = 50, length: int = 10, init_scale: float = 1.0):
        super().__init__()
        if components < 1 or length < 1:
            raise UserError(f"priors.vamp needs at least one pseudo-input of at least one step; got components="
                            f"{components}, length={length}")
        self.latent_dim, self.components, self.length, self.init_scale = latent_dim, components, length, init_scale
        self._encoder: tuple[nn.Module, ...] = ()

    def bind(self, encoder: nn.Module) -> None:
        """Keep the encoder (outside this module's parameters: they are the model's) and create the pseudo-inputs
        at its embedding size."""
        super().bind(encoder)
        if not encoder.embedding_dim:
            raise UserError(f"priors.vamp feeds learned embedding sequences through the encoder, and encoder "
                            f"{type(encoder).__name__} reads only token ids: use an encoder with embedding_dim and "
                            "encode_embeddings, such as encoders.lstm")
        self._encoder = (encoder,)  # a tuple: not registered as a submodule, so its weights are not listed twice
        self.pseudo_inputs = nn.Parameter(self.init_scale * torch.randn(self.components, self.length,
                                                                        encoder.embedding_dim))

    def component_posteriors(self) -> LatentDistribution:
        """q(z | u_k) for the K pseudo-inputs: a batch of K distributions."""
        if not self._encoder:
            raise UserError("priors.vamp reads the model's encoder: build it as a SeqVAE's latent_prior")
        lengths = torch.full((self.components,), self.length, device=self.pseudo_inputs.device)
        return self._encoder[0].encode_embeddings(self.pseudo_inputs, lengths).posterior

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        per_component = self.component_posteriors().log_prob(z.unsqueeze(-2))  # (..., K)
        return torch.logsumexp(per_component, dim=-1) - math.log(self.components)

    def sample(self, count: int) -> torch.Tensor:
        chosen = torch.randint(self.components, (count,), device=self.pseudo_inputs.device)
        return self.component_posteriors().index(chosen).rsample()

"""VRAE's representation: the encoder's posterior over the sentence latent."""

from __future__ import annotations

import torch

from seqvae_zoo.latents.base import LatentDistribution
from seqvae_zoo.summarization import REPRESENTATIONS
from seqvae_zoo.summarization.representations.base import ModelRepresentation


@REPRESENTATIONS.register("posterior")
class Posterior(ModelRepresentation):
    """q(z_enc | x) from the encoder (VRAE, and VRAE-SA's sentence latent), of whatever latent family it has."""

    @classmethod
    def supports(cls, model) -> bool:
        return model.encoder is not None

    def encode_batch(self, tokens: torch.Tensor, lengths: torch.Tensor) -> LatentDistribution:
        return self.model.encoder(tokens, lengths).posterior

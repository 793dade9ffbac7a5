"""VRAE-SA's representation (the paper's section 4.2): the predicted attention context p(c~_T | z_T)."""

from __future__ import annotations

import torch

from seqvae_zoo.latents.gaussian import GaussianLatent
from seqvae_zoo.summarization import REPRESENTATIONS
from seqvae_zoo.summarization.representations.base import ModelRepresentation, last_step


@REPRESENTATIONS.register("context_prior")
class ContextPrior(ModelRepresentation):
    """p(c~_T | z_T) = N(f_c(z_T)) at the sentence's last step, z_T at its posterior mean (VRAE-SA)."""

    @classmethod
    def supports(cls, model) -> bool:
        return "context_prior" in model.decoder.provides

    def encode_batch(self, tokens: torch.Tensor, lengths: torch.Tensor) -> GaussianLatent:
        _, output = self.run_model(tokens, lengths)
        context = output.extras["context_prior"]
        return GaussianLatent(last_step(context.mean, lengths), last_step(context.logvar, lengths))

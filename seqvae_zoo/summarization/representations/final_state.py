"""The LSTM language model's representation: its hidden state after reading the whole sentence."""

from __future__ import annotations

import torch

from seqvae_zoo.latents.gaussian import GaussianLatent
from seqvae_zoo.summarization import REPRESENTATIONS
from seqvae_zoo.summarization.representations.base import ModelRepresentation, last_step


@REPRESENTATIONS.register("final_state")
class FinalState(ModelRepresentation):
    """The decoder's hidden state after the last word, as a unit-variance Gaussian (the LSTM's representation).

    A point as a unit-variance Gaussian: KL between two such Gaussians is half the squared distance. Works for every
    model; the LSTM has nothing else."""

    def encode_batch(self, tokens: torch.Tensor, lengths: torch.Tensor) -> GaussianLatent:
        _, output = self.run_model(tokens, lengths)
        state = last_step(output.hidden, lengths)
        return GaussianLatent(state, torch.zeros_like(state))

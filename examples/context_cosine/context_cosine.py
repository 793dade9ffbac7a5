"""An auxiliary loss for seqvae_zoo that declares the decoder capability it needs: a new variant in one file.

1 - cos(E[c~_t | z_t], c_t) summed over real steps: z_t must predict the direction of the attention context c_t,
whatever its scale (the built-in ``context_prediction`` scores the whole vector). It reads the decoder's predicted
context, so it requires the ``context_prior`` capability: the model refuses, when it is built, a decoder that does not
declare it (``decoders.lstm``, say), with a message naming both.

Importing this module registers the loss as ``aux_losses.context_cosine``: a gin file imports it
(``import context_cosine``), or a package names it in its ``seqvae_zoo.plugins`` entry points.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seqvae_zoo.aux_losses.base import AuxiliaryLoss
from seqvae_zoo.decoders.base import DecoderOutput
from seqvae_zoo.registry import AUX_LOSSES


@AUX_LOSSES.register("context_cosine")
class ContextCosineLoss(AuxiliaryLoss):
    """1 - cos(E[c~_t | z_t], c_t) summed over real steps: z_t predicts the attention context's direction."""

    requires = frozenset({"context_prior"})

    def forward(self, output: DecoderOutput, mask: torch.Tensor) -> torch.Tensor:
        predicted = output.extras["context_prior"].mean
        return ((1 - F.cosine_similarity(predicted, output.extras["context_target"], dim=-1)) * mask).sum(dim=1)

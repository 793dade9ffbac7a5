"""The paper's auxiliary term -log p(c~_t = c_t | z_t): z_t must predict the attention context (eq. 13)."""

from __future__ import annotations

import torch

from seqvae_zoo.aux_losses.base import AuxiliaryLoss
from seqvae_zoo.decoders.base import Decoder, DecoderOutput
from seqvae_zoo.registry import AUX_LOSSES


@AUX_LOSSES.register("context_prediction")
class ContextPredictionLoss(AuxiliaryLoss):
    """Sum over real steps of -log N(c_t; f_c(z_t)). Padded steps are masked out.

    ``detach_target`` stops the gradient into c_t, so only z_t and f_c learn to predict the context and the
    encoder is not pulled towards easily predicted states (the paper does not detach; neither does the default).
    """

    def __init__(self, weight: float = 1.0, detach_target: bool = False, name: str | None = None):
        super().__init__(weight, name)
        self.detach_target = detach_target

    def check_decoder(self, decoder: Decoder) -> None:
        if not hasattr(decoder, "context_prior"):
            raise ValueError(f"aux loss {self.name!r} reads the predicted attention context c~_t, which decoder "
                             f"{type(decoder).registry_name!r} does not give: use @decoders.attentive")

    def forward(self, output: DecoderOutput, mask: torch.Tensor) -> torch.Tensor:
        target = output.extras["context_target"]
        if self.detach_target:
            target = target.detach()
        nll = -output.extras["context_prior"].log_prob(target)  # (B, T)
        return (nll * mask).sum(dim=1)

"""The paper's auxiliary term -log p(c~_t = c_t | z_t): z_t must predict the attention context (eq. 13)."""

from __future__ import annotations

import torch

from seqvae_zoo.aux_losses.base import AuxiliaryLoss
from seqvae_zoo.decoders.base import DecoderOutput
from seqvae_zoo.gaussian import gaussian_log_prob
from seqvae_zoo.registry import AUX_LOSSES


@AUX_LOSSES.register("context_prediction")
class ContextPredictionLoss(AuxiliaryLoss):
    """VRAE-SA's auxiliary loss: -log N(c_t; f_c(z_t)) summed over real steps, so that z_t predicts the attention
    context. Needs a decoder that provides ``context_prior``.

    With the learned variance of f_c (the paper's eq. 16) the term is a density that falls without bound as
    p(c~_t | z_t) narrows, and the objective buys that with per-step KL (docs/models.md shows a run). ``unit_variance``
    scores the mean of f_c(z_t) under unit variance instead, a squared error bounded below. ``detach_target`` stops
    the gradient into c_t, so the encoder is not pulled towards contexts that are easy to predict.
    """

    requires = frozenset({"context_prior"})

    def __init__(self, weight: float = 1.0, detach_target: bool = False, unit_variance: bool = False,
                 name: str | None = None):
        super().__init__(weight, name)
        self.detach_target, self.unit_variance = detach_target, unit_variance

    def forward(self, output: DecoderOutput, mask: torch.Tensor) -> torch.Tensor:
        target = output.extras["context_target"]
        if self.detach_target:
            target = target.detach()
        prior = output.extras["context_prior"]
        logvar = torch.zeros_like(prior.logvar) if self.unit_variance else prior.logvar
        nll = -gaussian_log_prob(target, prior.mean, logvar)  # (B, T)
        return (nll * mask).sum(dim=1)

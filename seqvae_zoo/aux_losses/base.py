"""The auxiliary-loss interface."""

from __future__ import annotations

import torch
from torch import nn

from seqvae_zoo.decoders.base import DecoderOutput


class AuxiliaryLoss(nn.Module):
    """An extra per-sentence term, weighted by ``weight`` (times the schedule's weight for ``name``, if any).

    ``requires`` names the capabilities (``seqvae_zoo.decoders.base.CAPABILITIES``) the decoder must provide for the
    loss to read its output; the model refuses, when it is built, a decoder whose ``provides`` lacks one.
    """

    requires: frozenset[str] = frozenset()

    def __init__(self, weight: float = 1.0, name: str | None = None):
        super().__init__()
        self.weight = weight
        self.name = name or type(self).registry_name

    def forward(self, output: DecoderOutput, mask: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """Per-sentence value (B,) from the decoder's output; ``mask`` (B, T) is True at real steps."""
        raise NotImplementedError

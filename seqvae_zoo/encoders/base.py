"""The encoder interface."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from seqvae_zoo.gaussian import DiagGaussian


class EncoderOutput(NamedTuple):
    """What an encoder gives the rest of the model.

    states: (B, S, state_size) per-step states s_1..s_S, zero at padded positions;
    mask: (B, S) True at real positions; final: (B, state_size) summary of the whole sentence;
    posterior: q(z_enc | x) with (B, latent_dim) parameters.
    """

    states: torch.Tensor
    mask: torch.Tensor
    final: torch.Tensor
    posterior: DiagGaussian


class Encoder(nn.Module):
    """Reads token ids (B, S) with their lengths (B,) and returns an :class:`EncoderOutput`.

    Subclasses set ``state_size`` (the size of each s_i, which attention reads) and ``latent_dim``.
    Their constructors take ``vocab_size`` and ``pad_id`` from the model; the rest comes from gin.
    """

    state_size: int
    latent_dim: int

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:  # pragma: no cover
        raise NotImplementedError

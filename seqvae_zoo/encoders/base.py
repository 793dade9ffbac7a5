"""The encoder interface."""

from __future__ import annotations

from typing import NamedTuple, Union

import torch
from torch import nn

from seqvae_zoo.errors import UserError
from seqvae_zoo.latents.base import LatentDistribution, LatentFamily
from seqvae_zoo.registry import LATENTS


class EncoderOutput(NamedTuple):
    """What an encoder gives the rest of the model.

    states: (B, S, state_size) per-step states s_1..s_S, zero at padded positions;
    mask: (B, S) True at real positions; final: (B, state_size) summary of the whole sentence;
    posterior: q(z_enc | x), a batch of B distributions of the encoder's latent family.
    """

    states: torch.Tensor
    mask: torch.Tensor
    final: torch.Tensor
    posterior: LatentDistribution


FamilyChoice = Union[str, type[LatentFamily]]


def make_family(family: FamilyChoice, latent_dim: int) -> LatentFamily:
    """The latent family an encoder is configured with: a registered name (``"vmf"``) or its class
    (``@latents.vmf`` in gin), built for ``latent_dim``."""
    if isinstance(family, str):
        family = LATENTS.get(family)
    if not (isinstance(family, type) and issubclass(family, LatentFamily)):
        raise UserError(f"an encoder's family is a latent family's name or class (gin: @latents.gaussian, without "
                        f"parentheses), got {family!r}")
    return family(latent_dim=latent_dim)


class Encoder(nn.Module):
    """Reads token ids (B, S) with their lengths (B,) and returns an :class:`EncoderOutput`.

    Subclasses set ``state_size`` (the size of each s_i, which attention reads), ``latent_dim`` and ``family`` (the
    :class:`~seqvae_zoo.latents.base.LatentFamily` of q(z_enc | x)). Their constructors take ``vocab_size`` and
    ``pad_id`` from the model; the rest comes from gin. An encoder that can read embedding vectors in place of token
    ids (a VampPrior's pseudo-inputs) sets ``embedding_dim`` and implements :meth:`encode_embeddings`.
    """

    state_size: int
    latent_dim: int
    family: LatentFamily
    embedding_dim: int | None = None

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:  # pragma: no cover
        raise NotImplementedError

    def encode_embeddings(self, embedded: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:  # pragma: no cover
        """Encode (B, S, embedding_dim) input vectors as if they were the embedded tokens of B sentences."""
        raise NotImplementedError

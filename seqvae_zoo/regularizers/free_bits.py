"""Free bits (Kingma et al. 2016): a KL term below a floor costs nothing, so the posterior may use that much."""

from __future__ import annotations

from typing import Sequence

import torch

from seqvae_zoo.registry import REGULARIZERS
from seqvae_zoo.regularizers.base import Regularizer


@REGULARIZERS.register("free_bits")
class FreeBits(Regularizer):
    """max(nats, batch-mean KL) for each named term (the reported KL is never changed)."""

    def __init__(self, nats: float = 3.0, terms: Sequence[str] = ("z_enc",)):
        if nats < 0:
            raise ValueError(f"regularizers.free_bits.nats must be >= 0, got {nats}")
        self.nats, self.terms = nats, tuple(terms)

    def transform_kl(self, name: str, batch_kl: torch.Tensor) -> torch.Tensor:
        return torch.clamp(batch_kl, min=self.nats) if name in self.terms else batch_kl

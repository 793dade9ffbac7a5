"""Free bits (Kingma et al. 2016): a KL term below a floor costs nothing, so the posterior may use that much."""

from __future__ import annotations

from typing import Sequence

import torch

from seqvae_zoo.registry import REGULARIZERS
from seqvae_zoo.regularizers.base import Regularizer


@REGULARIZERS.register("free_bits")
class FreeBits(Regularizer):
    """max(nats, batch-mean KL) for each named term (the reported KL is never changed).

    ``per_dimension`` floors each latent dimension's batch-mean KL instead, sum_i max(nats, KL_i) (Li et al. 2019's
    target: their lambda per dimension is ``nats``), so no dimension can fall below the floor by another's excess.
    It reads the sentence latent's per-dimension KL, which a prior that factorizes over the dimensions gives
    (``priors.standard_normal``)."""

    def __init__(self, nats: float = 3.0, terms: Sequence[str] = ("z_enc",), per_dimension: bool = False):
        if nats < 0:
            raise ValueError(f"regularizers.free_bits.nats must be >= 0, got {nats}")
        if per_dimension and tuple(terms) != ("z_enc",):
            raise ValueError(f"regularizers.free_bits.per_dimension floors the dimensions of the sentence latent, "
                             f"the one term with a KL per dimension; got terms {list(terms)}: set "
                             "regularizers.free_bits.terms = ['z_enc'], or per_dimension = False")
        self.nats, self.terms, self.per_dimension = nats, tuple(terms), per_dimension

    @property
    def per_dimension_terms(self) -> tuple[str, ...]:
        return self.terms if self.per_dimension else ()

    def transform_kl(self, name: str, batch_kl: torch.Tensor,
                     per_dimension: torch.Tensor | None = None) -> torch.Tensor:
        if name not in self.terms:
            return batch_kl
        if self.per_dimension:
            return torch.clamp(per_dimension, min=self.nats).sum()
        return torch.clamp(batch_kl, min=self.nats)

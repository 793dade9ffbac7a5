"""The regularizer interface: hooks on the decoder's input and on the KL terms, applied in training only."""

from __future__ import annotations

import torch


class Regularizer:
    """Both hooks pass their input through unchanged; a regularizer overrides the one it needs.

    ``per_dimension_terms`` names the KL terms whose per-dimension KL the regularizer reads: the model then gives
    :meth:`transform_kl` their batch-mean KL per dimension (its prior must factorize over the dimensions)."""

    per_dimension_terms: tuple[str, ...] = ()

    def transform_inputs(self, inputs: torch.Tensor, mask: torch.Tensor, unk_id: int) -> torch.Tensor:
        """Decoder input ids (B, T), whose first column is the begin-of-sentence symbol."""
        return inputs

    def transform_kl(self, name: str, batch_kl: torch.Tensor,
                     per_dimension: torch.Tensor | None = None) -> torch.Tensor:
        """The batch mean of KL term ``name`` as it enters the training objective; ``per_dimension`` (D,) is its
        batch mean per latent dimension where ``name`` is in ``per_dimension_terms``, else None."""
        return batch_kl

"""The regularizer interface: hooks on the decoder's input and on the KL terms, applied in training only."""

from __future__ import annotations

import torch


class Regularizer:
    """Both hooks pass their input through unchanged; a regularizer overrides the one it needs."""

    def transform_inputs(self, inputs: torch.Tensor, mask: torch.Tensor, unk_id: int) -> torch.Tensor:
        """Decoder input ids (B, T), whose first column is the begin-of-sentence symbol."""
        return inputs

    def transform_kl(self, name: str, batch_kl: torch.Tensor) -> torch.Tensor:
        """The batch mean of KL term ``name`` as it enters the training objective."""
        return batch_kl

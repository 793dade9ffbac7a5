"""Word dropout (Bowman et al. 2016): replace decoder input words by unk so the decoder leans on the latents."""

from __future__ import annotations

import torch

from seqvae_zoo.registry import REGULARIZERS
from seqvae_zoo.regularizers.base import Regularizer


@REGULARIZERS.register("word_dropout")
class WordDropout(Regularizer):
    """Each real input word (never the begin-of-sentence symbol) becomes unk with probability ``rate``."""

    def __init__(self, rate: float = 0.25):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"regularizers.word_dropout.rate must be in [0, 1], got {rate}")
        self.rate = rate

    def transform_inputs(self, inputs: torch.Tensor, mask: torch.Tensor, unk_id: int) -> torch.Tensor:
        drop = (torch.rand(inputs.shape, device=inputs.device) < self.rate) & mask
        drop[:, 0] = False
        return inputs.masked_fill(drop, unk_id)

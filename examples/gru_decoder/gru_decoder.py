"""A GRU decoder for seqvae_zoo: a new variant in one file (see docs/adding-a-variant.md).

h_t = GRU([dropout(x_t), z_enc], h_{t-1}); p(x_{t+1} | h_t) = softmax(W h_t + b). Like the ``lstm`` decoder it has no
per-step latent, so the whole sentence runs through one fused ``nn.GRU`` call; with an encoder it is VRAE with a GRU.

Importing this module registers the decoder as ``decoders.gru``: a gin file imports it (``import gru_decoder``), or
a package names it in its ``seqvae_zoo.plugins`` entry points.
"""

from __future__ import annotations

import torch
from torch import nn

from seqvae_zoo.decoders.base import Decoder, DecoderOutput
from seqvae_zoo.encoders.base import EncoderOutput
from seqvae_zoo.registry import DECODERS


@DECODERS.register("gru")
class GRUDecoder(Decoder):
    """h_t = GRU([dropout(x_t), z_enc], h_{t-1}); a deterministic decoder with a GRU cell."""

    def __init__(self, vocab_size: int, pad_id: int, z_enc_dim: int = 0, memory_size: int = 0,
                 embedding_dim: int = 512, hidden_size: int = 256, input_dropout: float = 0.5):
        super().__init__(vocab_size, hidden_size)
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.input_dropout = nn.Dropout(input_dropout)
        self.z_enc_dim = z_enc_dim
        self.rnn = nn.GRU(embedding_dim + z_enc_dim, hidden_size, batch_first=True)

    def _inputs(self, tokens: torch.Tensor, z_enc: torch.Tensor | None) -> torch.Tensor:
        embedded = self.input_dropout(self.embedding(tokens))
        if self.z_enc_dim:
            embedded = torch.cat([embedded, z_enc[:, None, :].expand(-1, tokens.size(1), -1)], dim=-1)
        return embedded

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor, z_enc: torch.Tensor | None,
                memory: EncoderOutput | None, mode: str = "posterior",
                return_attention: bool = False) -> DecoderOutput:
        hidden, _ = self.rnn(self._inputs(inputs, z_enc))
        return DecoderOutput(hidden=hidden, log_ratio=hidden.new_zeros(hidden.shape[:2]))

    def start(self, z_enc: torch.Tensor | None, batch_size: int) -> tuple[torch.Tensor, ...]:
        return (self.output.weight.new_zeros(batch_size, self.hidden_size),)

    def step(self, tokens: torch.Tensor, state: tuple[torch.Tensor, ...], z_enc: torch.Tensor | None,
             latent_mode: str = "prior_sample") -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        out, h = self.rnn(self._inputs(tokens[:, None], z_enc), state[0][None])
        return self.logits(out[:, 0]), (h[0],)

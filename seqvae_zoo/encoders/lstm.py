"""LSTM encoder (uni- or bidirectional): s_t = LSTM(x_t, s_{t-1}); q(z_enc|x) = q(f(s_T)) (paper eqs. 5, 10, 12),
a Gaussian N(f(s_T)) unless another latent family is chosen."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqvae_zoo.encoders.base import Encoder, EncoderOutput, FamilyChoice, make_family
from seqvae_zoo.errors import check_sizes
from seqvae_zoo.kernels.precision import full_precision
from seqvae_zoo.registry import ENCODERS


@ENCODERS.register("lstm")
class LSTMEncoder(Encoder):
    """One-layer LSTM over the word embeddings; padding never enters a real position's state.

    Unidirectional, the LSTM runs over the padded batch in one fused library call (oneDNN on a CPU, cuDNN on a GPU):
    a step past a sentence's end comes after all of its real steps, so it changes none of them, and the summary is
    the state at the last real step. On length-bucketed batches that costs a few padded steps and is much faster
    than the packed call, which runs the library's unfused per-step loop on a CPU.
    Bidirectional, the backward direction would start in the padding, so the batch is packed. The states are then
    [forward; backward] (2 * hidden_size) and the summary is the last forward state beside the first backward state.
    ``family`` is the latent family of q(z_enc|x) (``"gaussian"``, ``"vmf"``, or gin's ``@latents.vmf``); its
    parameters are a linear function of the summary.
    """

    def __init__(self, vocab_size: int, pad_id: int, embedding_dim: int = 512, hidden_size: int = 256,
                 latent_dim: int = 32, bidirectional: bool = False, dropout: float = 0.0,
                 family: FamilyChoice = "gaussian"):
        super().__init__()
        check_sizes("encoders.lstm", "the dimensions of z_enc (a model without one is the lstm preset)",
                    latent_dim=latent_dim)
        check_sizes("encoders.lstm", embedding_dim=embedding_dim, hidden_size=hidden_size)
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        self.rnn = nn.LSTM(embedding_dim, hidden_size, batch_first=True, bidirectional=bidirectional)
        self.state_size = hidden_size * (2 if bidirectional else 1)
        self.latent_dim = latent_dim
        self.embedding_dim = embedding_dim
        self.family = make_family(family, latent_dim)
        self.posterior = nn.Linear(self.state_size, self.family.parameter_size)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        return self.encode_embeddings(self.dropout(self.embedding(tokens)), lengths)

    def encode_embeddings(self, embedded: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        mask = torch.arange(embedded.size(1), device=embedded.device)[None, :] < lengths[:, None]
        if self.rnn.bidirectional:
            packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
            output, (final_h, _) = self.rnn(packed)
            states, _ = pad_packed_sequence(output, batch_first=True, total_length=embedded.size(1))
            final = torch.cat(list(final_h), dim=-1)  # (directions, B, H) -> (B, directions * H)
        else:
            output, _ = self.rnn(embedded)
            states = output * mask[:, :, None].to(output.dtype)
            final = output[torch.arange(embedded.size(0), device=embedded.device), lengths - 1]
        # q(z_enc | x)'s parameters in float32, whatever the products' precision: its KL and densities are float32
        return EncoderOutput(states, mask, final, self.family.posterior(full_precision(self.posterior(final))))

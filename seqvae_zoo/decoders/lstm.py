"""Deterministic LSTM decoder (``lstm``; VRAE's decoder given z_enc): h_t = LSTM([x_t, z_enc], h_{t-1}) through one
fused library call."""

from __future__ import annotations

import torch
from torch import nn

from seqvae_zoo.decoders.base import Decoder, DecoderOutput, OutputLayer
from seqvae_zoo.encoders.base import EncoderOutput
from seqvae_zoo.errors import UserError, check_sizes
from seqvae_zoo.registry import DECODERS


class InputDropout(nn.Dropout):
    """``nn.Dropout`` (each element zeroed with probability p, the rest scaled by 1 / (1 - p)) with the mask drawn
    from ``torch.rand`` on the CPU, where ``bernoulli_`` costs three times as much."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or inputs.device.type != "cpu" or self.p == 1:
            return super().forward(inputs)
        return inputs * (torch.rand_like(inputs) >= self.p).to(inputs.dtype).mul_(1 / (1 - self.p))


@DECODERS.register("lstm")
class LSTMDecoder(Decoder):
    """h_t = LSTM([dropout(x_t), z_enc], h_{t-1}); p(x_{t+1} | h_t) = softmax(W dropout'(h_t) + b).

    The paper drops out only the decoder's input (``input_dropout``); ``output_dropout`` (dropout' above, 0 by
    default) also drops out the states before the softmax in training, as LSTM language models usually do
    (Zaremba et al. 2014).

    ``skip_connections`` (skip-VAE, Dieng et al. 2019) feeds z_enc to the output layer as well:
    p(x_{t+1} | h_t, z_enc) = softmax(W [dropout'(h_t); z_enc] + b), so the latent reaches every prediction
    without passing through the recurrence.

    No per-step latent, so the whole batch runs through one fused ``nn.LSTM`` call (oneDNN on a CPU, cuDNN on a GPU),
    padded steps included: on this package's length-bucketed batches that is faster than the packed recurrence
    (:class:`seqvae_zoo.kernels.recurrence.PackedLSTM`), whose Python loop costs more than the few padded steps
    (measured in benchmarks/README.md). What follows a sentence's
    end never reaches its real steps, and the model scores only real steps.
    """

    def __init__(self, vocab_size: int, pad_id: int, z_enc_dim: int = 0, memory_size: int = 0,
                 embedding_dim: int = 512, hidden_size: int = 256, input_dropout: float = 0.5,
                 output_dropout: float = 0.0, skip_connections: bool = False):
        check_sizes("decoders.lstm", embedding_dim=embedding_dim, hidden_size=hidden_size)
        super().__init__(vocab_size, hidden_size)
        if skip_connections and not z_enc_dim:
            raise UserError("decoders.lstm.skip_connections feeds z_enc to the output layer, and this model has no "
                            "sentence latent (no encoder): set models.SeqVAE.encoder or skip_connections = False")
        self.skip_connections = skip_connections
        if skip_connections:
            self.output = OutputLayer(hidden_size + z_enc_dim, vocab_size)
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.input_dropout = InputDropout(input_dropout)
        self.output_dropout = InputDropout(output_dropout)
        self.z_enc_dim = z_enc_dim
        self.rnn = nn.LSTM(embedding_dim + z_enc_dim, hidden_size, batch_first=True)

    def _inputs(self, tokens: torch.Tensor, z_enc: torch.Tensor | None) -> torch.Tensor:
        embedded = self.input_dropout(self.embedding(tokens))
        if self.z_enc_dim:
            embedded = torch.cat([embedded, z_enc[:, None, :].expand(-1, tokens.size(1), -1)], dim=-1)
        return embedded

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor, z_enc: torch.Tensor | None,
                memory: EncoderOutput | None, mode: str = "posterior",
                return_attention: bool = False) -> DecoderOutput:
        hidden, _ = self.rnn(self._inputs(inputs, z_enc))
        return DecoderOutput(hidden=self._output_inputs(self.output_dropout(hidden), z_enc),
                             log_ratio=hidden.new_zeros(hidden.shape[:2]))

    def _output_inputs(self, hidden: torch.Tensor, z_enc: torch.Tensor | None) -> torch.Tensor:
        """What the output layer reads: h_t, with z_enc beside it under skip connections."""
        if not self.skip_connections:
            return hidden
        return torch.cat([hidden, z_enc[:, None, :].expand(-1, hidden.size(1), -1)], dim=-1)

    def start(self, z_enc: torch.Tensor | None, batch_size: int) -> tuple[torch.Tensor, ...]:
        zeros = self.output.weight.new_zeros(batch_size, self.hidden_size)
        return zeros, zeros

    def step(self, tokens: torch.Tensor, state: tuple[torch.Tensor, ...], z_enc: torch.Tensor | None,
             latent_mode: str = "prior_sample") -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        h, c = state
        out, (h, c) = self.rnn(self._inputs(tokens[:, None], z_enc), (h[None], c[None]))
        return self.logits(self._output_inputs(out, z_enc)[:, 0]), (h[0], c[0])

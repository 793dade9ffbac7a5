"""The paper's attentive stochastic decoder (VRAE-SA, Chien & Wang 2019, eqs. 2-19).

Training (Algorithm 1), at step t: additive attention over the encoder's states s_1..s_S,
score(h_{t-1}, s_i) = w^T tanh(W h_{t-1} + V s_i), gives c_t = sum_i alpha_ti s_i; the posterior
q(z_t | h_{t-1}, c_t) draws z_t; p(c~_t | z_t) = N(f_c(z_t)) draws c~_t; h_t = LSTM([x_t, z_t, c~_t, z_enc], h_{t-1})
(the paper's cell; ``cell`` selects another, :mod:`seqvae_zoo.cells`).
Generation (Algorithm 2) draws z_t from p(z_t | h_{t-1}) and never reads the encoder: attention is predicted by c~_t.

c~_t has ``context_dim`` dimensions (32 in the paper) while c_t has the encoder's state size (256), so the
auxiliary term -log p(c~_t = c_t | z_t) compares c~_t with c_t through a fixed orthonormal projection (a buffer, not
trained: a trained projection could shrink to zero and make the term unbounded). With ``context_dim`` equal to the
state size the projection is the identity.

The methods under "the equations" are these formulas; with the LSTM cell the decoder runs them inside the packed
recurrence of :mod:`seqvae_zoo.kernels` (:class:`seqvae_zoo.kernels.latent_heads.AttentiveHead`). In the weights
returned for inspection, a step past a sentence's end attends uniformly to the sentence's words.
"""

from __future__ import annotations

import torch
from torch import nn

from seqvae_zoo.decoders.base import DecoderOutput
from seqvae_zoo.decoders.stochastic import ContextReader, StochasticDecoder, draw
from seqvae_zoo.encoders.base import EncoderOutput
from seqvae_zoo.errors import check_sizes
from seqvae_zoo.gaussian import split_params
from seqvae_zoo.kernels.latent_heads import AttentiveHead
from seqvae_zoo.kernels.matmul import linear_layer
from seqvae_zoo.kernels.recurrence import PackedLayout
from seqvae_zoo.registry import DECODERS


@DECODERS.register("attentive")
class AttentiveDecoder(StochasticDecoder):
    """VRAE-SA's decoder: additive self-attention in the posterior, a predicted context c~_t in the recurrence."""

    provides = frozenset({"context_prior"})

    def __init__(self, vocab_size: int, pad_id: int, z_enc_dim: int = 0, memory_size: int = 0,
                 embedding_dim: int = 512, hidden_size: int = 256, latent_dim: int = 32, context_dim: int = 32,
                 attention_size: int = 256, input_dropout: float = 0.5, projection_seed: int = 0,
                 cell: str = "lstm"):
        check_sizes("decoders.attentive", attention_size=attention_size, context_dim=context_dim)
        self.query_size = attention_size
        self.extra_latent_size = context_dim
        super().__init__(vocab_size, pad_id, z_enc_dim, memory_size, embedding_dim, hidden_size, latent_dim,
                         input_dropout, cell)
        self.key_projection = nn.Linear(memory_size, attention_size, bias=False)
        self.score = nn.Linear(attention_size, 1, bias=False)
        self.context_prior = nn.Linear(latent_dim, 2 * context_dim)
        if context_dim == memory_size:
            projection = torch.eye(memory_size)
        else:
            generator = torch.Generator().manual_seed(projection_seed)
            q, _ = torch.linalg.qr(torch.randn(max(memory_size, context_dim), min(memory_size, context_dim),
                                               generator=generator))
            projection = q if memory_size >= context_dim else q.T
        self.register_buffer("context_target_projection", projection)  # (memory_size, context_dim)

    # -- the equations ------------------------------------------------------------------------------------------
    def attend(self, previous_hidden: torch.Tensor, keys: torch.Tensor,
               memory: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 3-4: alpha_ti = softmax_i(w^T tanh(W h_{t-1} + V s_i)) over the sentence's positions, with the keys
        V s_i given; c_t = sum_i alpha_ti s_i. Returns c_t and alpha_t."""
        query = self._from_hidden("query", previous_hidden)
        scores = self.score(torch.tanh(query[:, None, :] + keys))[..., 0].masked_fill(~memory.mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return (weights[:, None, :] @ memory.states)[:, 0], weights

    def context_reader(self, memory: EncoderOutput) -> ContextReader:
        """e_t = c_t, the attention context of h_{t-1}; c_t and alpha_t are kept."""
        keys = self.key_projection(memory.states)  # V s_i: the same at every step

        def read(previous_hidden: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
            context, weights = self.attend(previous_hidden, keys, memory)
            return context, (context, weights)

        return read

    def extra_latents(self, z: torch.Tensor, noise: torch.Tensor | None) -> list[torch.Tensor]:
        """c~_t drawn from p(c~_t | z_t) = N(f_c(z_t))."""
        return [draw(self.context_prior(z), noise)]

    def _extras(self, layout: PackedLayout, z: torch.Tensor, latents: tuple[torch.Tensor, ...],
                mode: str) -> dict:
        extras = {"context_prior": split_params(layout.unpack(self.context_prior(z)))}
        if mode.startswith("posterior"):
            extras["context_target"] = layout.unpack(latents[2] @ self.context_target_projection)
        return extras

    def _output(self, layout: PackedLayout, hidden: torch.Tensor, latents: tuple[torch.Tensor, ...],
                mode: str, return_attention: bool) -> DecoderOutput:
        output = super()._output(layout, hidden, latents, mode, return_attention)
        if return_attention and mode.startswith("posterior"):
            output.attention = self._attention(layout, latents[3])
        return output

    @staticmethod
    def _attention(layout: PackedLayout, weights: torch.Tensor) -> torch.Tensor:
        """(B, T, S) attention weights; a step past a sentence's end attends uniformly to its words."""
        padded = layout.unpack(weights)
        lengths = torch.zeros(layout.batch_size, dtype=torch.long, device=weights.device)
        lengths = lengths.index_add_(0, layout.sentence, torch.ones_like(layout.sentence))
        positions = torch.arange(padded.size(-1), device=weights.device)
        uniform = (positions[None, :] < lengths[:, None]).to(weights.dtype) / lengths[:, None]
        real_steps = torch.arange(layout.width, device=weights.device)[None, :] < lengths[:, None]
        return torch.where(real_steps[:, :, None], padded, uniform[:, None, :])

    # -- the packed recurrence ----------------------------------------------------------------------------------
    def _head(self, layout: PackedLayout, mode: str, memory: EncoderOutput | None, steps: int,
              like: torch.Tensor) -> AttentiveHead:
        noise, context_noise = self._packed_noise(layout, mode, steps, like)
        attention = None
        if mode.startswith("posterior"):
            padding = torch.zeros_like(memory.mask, dtype=like.dtype).masked_fill_(~memory.mask, float("-inf"))
            states = memory.states
            keys = linear_layer(states.reshape(-1, states.size(-1)), self.key_projection.weight).view(
                *states.shape[:2], -1)
            attention = tuple(t.index_select(0, layout.order) for t in (keys, states, padding))
            attention = (*attention[:2], self.score.weight[0], self.posterior_context.weight, attention[2])
        return AttentiveHead(self.latent_dim, self.latent_projection.weight, noise, self.context_prior.weight,
                             self.context_prior.bias, context_noise, attention)

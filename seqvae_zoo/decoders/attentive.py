"""The paper's attentive stochastic decoder (VRAE-SA, Chien & Wang 2019, eqs. 2-19).

Training (Algorithm 1), at step t: additive attention over the encoder's states s_1..s_S,
score(h_{t-1}, s_i) = w^T tanh(W h_{t-1} + V s_i), gives c_t = sum_i alpha_ti s_i; the posterior
q(z_t | h_{t-1}, c_t) draws z_t; p(c~_t | z_t) = N(f_c(z_t)) draws c~_t; h_t = LSTM([x_t, z_t, c~_t, z_enc], h_{t-1}).
Generation (Algorithm 2) draws z_t from p(z_t | h_{t-1}) and never reads the encoder: attention is predicted by c~_t.

c~_t has ``context_dim`` dimensions (32 in the paper) while c_t has the encoder's state size (256), so the
auxiliary term -log p(c~_t = c_t | z_t) compares c~_t with c_t through a fixed orthonormal projection (a buffer, not
trained: a trained projection could shrink to zero and make the term unbounded). With ``context_dim`` equal to the
state size the projection is the identity.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from seqvae_zoo.decoders.stochastic import StepResult, StochasticDecoder
from seqvae_zoo.encoders.base import EncoderOutput
from seqvae_zoo.gaussian import DiagGaussian, split_params
from seqvae_zoo.registry import DECODERS


class AttentionMemory(NamedTuple):
    states: torch.Tensor  # (B, S, state_size)
    keys: torch.Tensor  # (B, S, attention_size): V s_i, computed once per batch
    padding: torch.Tensor  # (B, S) True at padded positions


@DECODERS.register("attentive")
class AttentiveDecoder(StochasticDecoder):
    """VRAE-SA's decoder: additive self-attention in the posterior, a predicted context c~_t in the recurrence."""

    def __init__(self, vocab_size: int, pad_id: int, z_enc_dim: int = 0, memory_size: int = 0,
                 embedding_dim: int = 512, hidden_size: int = 256, latent_dim: int = 32, context_dim: int = 32,
                 attention_size: int = 256, input_dropout: float = 0.5, projection_seed: int = 0):
        self.query_size = attention_size
        self.extra_latent_size = context_dim
        super().__init__(vocab_size, pad_id, z_enc_dim, memory_size, embedding_dim, hidden_size, latent_dim,
                         input_dropout)
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

    def _prepare_memory(self, memory: EncoderOutput) -> AttentionMemory:
        return AttentionMemory(memory.states, self.key_projection(memory.states), ~memory.mask)

    def _context(self, query: torch.Tensor, prepared: AttentionMemory) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.score(torch.tanh(prepared.keys + query[:, None, :])).squeeze(-1)
        weights = torch.softmax(scores.masked_fill(prepared.padding, float("-inf")), dim=-1)
        return torch.bmm(weights[:, None, :], prepared.states).squeeze(1), weights

    def _latent_input(self, z: torch.Tensor, noise: torch.Tensor | None, mode: str,
                      context: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, Any]]:
        context_prior = split_params(self.context_prior(z))
        predicted = context_prior.mean if mode.endswith("_mean") else context_prior.rsample(noise)
        return torch.cat([z, predicted], dim=-1), {"context_prior": context_prior}

    def _collect_extras(self, steps: list[StepResult]) -> dict[str, Any]:
        means, logvars = zip(*(s.extras["context_prior"] for s in steps))
        extras: dict[str, Any] = {
            "context_prior": DiagGaussian(torch.stack(means, dim=1), torch.stack(logvars, dim=1))}
        if steps[0].context is not None:
            contexts = torch.stack([s.context for s in steps], dim=1)
            extras["context_target"] = contexts @ self.context_target_projection
        return extras

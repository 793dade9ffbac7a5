"""The paper's attentive stochastic decoder (VRAE-SA, Chien & Wang 2019, eqs. 2-19).

Training (Algorithm 1), at step t: additive attention over the encoder's states s_1..s_S,
score(h_{t-1}, s_i) = w^T tanh(W h_{t-1} + V s_i), gives c_t = sum_i alpha_ti s_i; the posterior
q(z_t | h_{t-1}, c_t) draws z_t; p(c~_t | z_t) = N(f_c(z_t)) draws c~_t; h_t = LSTM([x_t, z_t, c~_t, z_enc], h_{t-1}).
Generation (Algorithm 2) draws z_t from p(z_t | h_{t-1}) and never reads the encoder: attention is predicted by c~_t.

c~_t has ``context_dim`` dimensions (32 in the paper) while c_t has the encoder's state size (256), so the
auxiliary term -log p(c~_t = c_t | z_t) compares c~_t with c_t through a fixed orthonormal projection (a buffer, not
trained: a trained projection could shrink to zero and make the term unbounded). With ``context_dim`` equal to the
state size the projection is the identity.

In the packed recurrence the keys V s_i are computed once per batch; W h_{t-1} is the query head of the fused
recurrent projection. The steps a sentence does not have are not run: in the attention weights returned for
inspection, a step past a sentence's end attends uniformly to the sentence's words.
"""

from __future__ import annotations

import torch
from torch import nn

from seqvae_zoo.decoders.base import DecoderOutput
from seqvae_zoo.decoders.lstm import PackedLayout, StepRows
from seqvae_zoo.decoders.stochastic import StochasticDecoder, StochasticHead
from seqvae_zoo.encoders.base import EncoderOutput
from seqvae_zoo.gaussian import split_params
from seqvae_zoo.registry import DECODERS


class AttentiveHead(StochasticHead):
    """z_t and c~_t inside the recurrence.

    In the posterior modes the head's columns are the posterior's h_{t-1} half and the attention query W h_{t-1};
    c_t (eq. 3-4) adds the posterior's context half. c~_t = mean + exp(logvar / 2) * noise of p(c~_t | z_t)
    (``context_noise`` None: the mean). Extra outputs in the posterior modes: c_t (N, state size) and the attention
    weights (N, S), which carry no gradient.
    """

    def __init__(self, latent_dim: int, latent_weight: torch.Tensor, noise: torch.Tensor | None,
                 context_prior_weight: torch.Tensor, context_prior_bias: torch.Tensor,
                 context_noise: torch.Tensor | None, memory: tuple[torch.Tensor, ...] | None = None):
        super().__init__(latent_dim, latent_weight, noise)
        self.context_dim = context_prior_weight.size(0) // 2
        self.context_prior_weight, self.context_prior_bias = context_prior_weight, context_prior_bias
        self.context_noise = context_noise  # (N, context_dim)
        # keys V s_i (B, S, A), states s_i (B, S, state size), score vector w (A,), the posterior's context half
        # (2 latent_dim, state size): in rank order; and the additive mask of padded positions (B, S).
        self.memory = memory
        attention = memory[:4] if memory is not None else (None,) * 4
        self.inputs = (latent_weight, None, context_prior_weight, context_prior_bias, *attention)
        if memory is not None:
            self.width += memory[0].size(-1)
            self.non_differentiable_outputs = 1

    # -- forward ------------------------------------------------------------------------------------------------
    def begin_forward(self, layout: PackedLayout, keep: bool) -> None:
        super().begin_forward(layout, keep)
        self.context_spread = StepRows(self.latent_weight, layout, keep, self.context_dim)
        if self.memory is not None:
            keys, states = self.memory[:2]
            self.contexts = states.new_empty(layout.num_rows, states.size(-1))
            self.attention = states.new_empty(layout.num_rows, states.size(1))
            self.tanh_scores = []  # per step (n, S, A), kept for the backward pass
            self.scratch = keys.new_empty(keys.shape) if not keep else None

    def _params(self, rows: slice, n: int, projected: torch.Tensor) -> torch.Tensor:
        if self.memory is None:
            return super()._params(rows, n, projected)
        keys, states, score, context_weight, padding = self.memory
        query = projected[:, self.width - keys.size(-1):]
        tanh_scores = keys.new_empty(n, *keys.shape[1:]) if self.keep else self.scratch[:n]
        torch.add(keys[:n], query[:, None, :], out=tanh_scores).tanh_()
        if self.keep:
            self.tanh_scores.append(tanh_scores)
        scores = torch.mv(tanh_scores.view(-1, keys.size(-1)), score).view(n, -1).add_(padding[:n])
        weights = torch.softmax(scores, dim=-1, out=self.attention[rows])
        context = torch.bmm(weights[:, None, :], states[:n], out=self.contexts[rows][:, None, :])[:, 0]
        return torch.addmm(projected[:, :2 * self.latent_dim], context, context_weight.t(), out=self.params[rows])

    def _extra_latents(self, rows: slice, n: int, z: torch.Tensor, extras: torch.Tensor) -> None:
        context_prior = torch.addmm(self.context_prior_bias, z, self.context_prior_weight.t())
        mean, logvar = context_prior[:, :self.context_dim], context_prior[:, self.context_dim:]
        if self.context_noise is None:
            extras.copy_(mean)
        else:
            spread = torch.mul(logvar, 0.5, out=self.context_spread(rows, n)).exp_()
            torch.add(mean, spread.mul_(self.context_noise[rows]), out=extras)

    def outputs(self) -> tuple[torch.Tensor, ...]:
        return super().outputs() + ((self.contexts, self.attention) if self.memory is not None else ())

    # -- backward -----------------------------------------------------------------------------------------------
    def begin_backward(self, output_grads: tuple[torch.Tensor | None, ...]) -> None:
        super().begin_backward(output_grads)
        like = self.latent_weight
        self.d_context_prior = like.new_empty(self.layout.num_rows, 2 * self.context_dim)
        if self.memory is not None:
            keys, states, score = self.memory[:3]
            self.d_contexts_out = output_grads[2]
            self.d_contexts = like.new_empty(self.layout.num_rows, states.size(-1))
            self.d_keys, self.d_states, self.d_score = (torch.zeros_like(t) for t in (keys, states, score))

    def _latents_backward(self, rows: slice, n: int, d_gates: torch.Tensor, d_z: torch.Tensor) -> None:
        d_latents = torch.mm(d_gates, self.latent_weight)
        d_context_prior = self.d_context_prior[rows]
        d_mean, d_logvar = d_context_prior[:, :self.context_dim], d_context_prior[:, self.context_dim:]
        d_mean.copy_(d_latents[:, self.latent_dim:])
        if self.context_noise is None:
            d_logvar.zero_()
        else:
            torch.mul(d_mean, self.context_spread(rows, n), out=d_logvar).mul_(0.5)
        torch.addmm(d_latents[:, :self.latent_dim], d_context_prior, self.context_prior_weight, out=d_z)

    def _context_backward(self, rows: slice, n: int, d_params: torch.Tensor, d_projected: torch.Tensor) -> None:
        if self.memory is None:
            return
        keys, states, score, context_weight, _ = self.memory
        d_context = torch.mm(d_params, context_weight, out=self.d_contexts[rows])
        if self.d_contexts_out is not None:
            d_context.add_(self.d_contexts_out[rows])
        weights = self.attention[rows]
        self.d_states[:n].baddbmm_(weights[:, :, None], d_context[:, None, :])
        d_weights = torch.bmm(states[:n], d_context[:, :, None])[:, :, 0]
        d_scores = torch._softmax_backward_data(d_weights, weights, -1, weights.dtype)
        tanh_scores = self.tanh_scores.pop()
        self.d_score.addmv_(tanh_scores.view(-1, keys.size(-1)).t(), d_scores.view(-1))
        d_tanh = torch.mul(d_scores[:, :, None], score)
        d_pre = d_tanh.addcmul_(torch.mul(d_tanh, tanh_scores), tanh_scores, value=-1)  # times 1 - tanh^2
        self.d_keys[:n].add_(d_pre)
        torch.sum(d_pre, dim=1, out=d_projected[:, self.width - keys.size(-1):])

    def input_grads(self, d_projected: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        d_latent_weight, _ = super().input_grads(d_projected)
        z = self.latents[:, :self.latent_dim]
        grads = (d_latent_weight, None, self.d_context_prior.t() @ z, self.d_context_prior.sum(0))
        if self.memory is None:
            return grads + (None,) * 4
        gates = self.latent_weight.size(0)
        d_params = d_projected[:, gates:gates + 2 * self.latent_dim]
        return grads + (self.d_keys, self.d_states, self.d_score, d_params.t() @ self.contexts)


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

    def _head(self, layout: PackedLayout, mode: str, memory: EncoderOutput | None, steps: int,
              like: torch.Tensor) -> AttentiveHead:
        noise, context_noise = self._packed_noise(layout, mode, steps, like)
        attention = None
        if mode.startswith("posterior"):
            padding = torch.zeros_like(memory.mask, dtype=like.dtype).masked_fill_(~memory.mask, float("-inf"))
            attention = tuple(t.index_select(0, layout.order)
                              for t in (self.key_projection(memory.states), memory.states, padding))
            attention = (*attention[:2], self.score.weight[0], self.posterior_context.weight, attention[2])
        return AttentiveHead(self.latent_dim, self.latent_projection.weight, noise, self.context_prior.weight,
                             self.context_prior.bias, context_noise, attention)

    def _extras(self, layout: PackedLayout, z: torch.Tensor, head_outputs: tuple[torch.Tensor, ...],
                mode: str) -> dict:
        extras = {"context_prior": split_params(layout.unpack(self.context_prior(z)))}
        if mode.startswith("posterior"):
            extras["context_target"] = layout.unpack(head_outputs[2] @ self.context_target_projection)
        return extras

    def _output(self, layout: PackedLayout, hidden: torch.Tensor, head_outputs: tuple[torch.Tensor, ...],
                mode: str, return_attention: bool) -> DecoderOutput:
        output = super()._output(layout, hidden, head_outputs, mode, return_attention)
        if return_attention and mode.startswith("posterior"):
            output.attention = self._attention(layout, head_outputs[3])
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

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
recurrent projection. c_t reaches the recurrence only through the posterior's context half W_c c_t =
sum_i alpha_ti (W_c s_i), so the step reads the projected states W_c s_i (2 latent_dim numbers per encoder state,
computed once per batch) instead of the states themselves, and c_t is computed for all steps at once after the loop;
the gradients of the states and of W_c likewise. The steps a sentence does not have are not run: in the attention
weights returned for inspection, a step past a sentence's end attends uniformly to the sentence's words.
"""

from __future__ import annotations

import torch
from torch import nn

from seqvae_zoo.decoders.base import DecoderOutput
from seqvae_zoo.decoders.lstm import PackedLayout, StepRows, step_blocks
from seqvae_zoo.decoders.stochastic import StochasticDecoder, StochasticHead
from seqvae_zoo.encoders.base import EncoderOutput
from seqvae_zoo.gaussian import split_params
from seqvae_zoo.matmul import linear_layer
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
    def begin_forward(self, layout: PackedLayout, keep: bool, projected: StepRows, gates: StepRows) -> None:
        super().begin_forward(layout, keep, projected, gates)
        self.context_spread = StepRows(self.latent_weight, layout, keep, self.context_dim)  # exp(logvar / 2)
        self.context_prior_weight_t = self.context_prior_weight.t()
        self.context_steps = list(zip(self.context_spread.blocks, step_blocks(self.context_noise, layout)))
        if self.memory is None:
            return
        keys, states, score, context_weight, padding = self.memory
        self.projected_states = states @ context_weight.t()  # W_c s_i: (B, S, 2 latent_dim)
        self.attention = states.new_empty(layout.num_rows, states.size(1))
        # sigmoid(2 (V s_i + W h_{t-1})) (n, S, A) of each step: kept for the backward pass
        self.sigmoids = StepRows(keys, layout, keep, *keys.shape[1:])
        doubled_keys = keys * 2
        offsets = (padding - score.sum()).view(-1)  # w^T tanh(u) = 2 w^T sigmoid(2 u) - sum(w)
        sizes = layout.batch_sizes
        query_start = gates.tensor.size(1) + 2 * self.latent_dim
        self.memory_steps = list(zip(
            [doubled_keys[:n] for n in sizes], [offsets[:n * padding.size(1)] for n in sizes],
            projected.step_views(projected.tensor[:, None, query_start:]), self.sigmoids.blocks,
            step_blocks(self.attention, layout), step_blocks(self.attention[:, None, :], layout),
            [self.projected_states[:n] for n in sizes]))

    def _params(self, t: int, from_hidden: torch.Tensor, context: torch.Tensor | None, params: torch.Tensor) -> None:
        if self.memory is None:
            return super()._params(t, from_hidden, context, params)
        doubled_keys, offsets, query, sigmoids, weights, weights_row, projected_states = self.memory_steps[t]
        # tanh(u) = 2 sigmoid(2 u) - 1, and the sigmoid costs a fifth of the tanh on a CPU
        torch.add(doubled_keys, query, alpha=2, out=sigmoids).sigmoid_()
        scores = torch.addmv(offsets, sigmoids.view(-1, sigmoids.size(-1)), self.memory[2], alpha=2)
        torch.softmax(scores.view_as(weights), dim=-1, out=weights)
        torch.baddbmm(from_hidden[:, None, :], weights_row, projected_states, out=params[:, None, :])

    def _extra_latents(self, t: int, z: torch.Tensor, extras: torch.Tensor) -> None:
        mean, logvar = torch.addmm(self.context_prior_bias, z, self.context_prior_weight_t).split(self.context_dim, 1)
        spread, noise = self.context_steps[t]
        if noise is None:
            extras.copy_(mean)
        else:
            torch.addcmul(mean, torch.mul(logvar, 0.5, out=spread).exp_(), noise, out=extras)

    def take_outputs(self) -> tuple[torch.Tensor, ...]:
        outputs = super().take_outputs()
        if self.memory is None:
            return outputs
        layout, states = self.layout, self.memory[1]
        contexts = layout.from_rank(layout.by_rank(self.attention) @ states)  # c_t of every row
        outputs += (contexts, self.attention)
        del self.attention, self.memory_steps
        return outputs

    # -- backward -----------------------------------------------------------------------------------------------
    def begin_backward(self, outputs: tuple[torch.Tensor, ...], output_grads: tuple[torch.Tensor | None, ...],
                       d_projected: torch.Tensor) -> None:
        super().begin_backward(outputs, output_grads, d_projected)
        layout, latent, context = self.layout, self.latent_dim, self.context_dim
        # per row: [d z through the gates | d mean, d logvar of p(c~_t | z_t)]; d mean of c~_t is d c~_t
        self.d_latents = self.latent_weight.new_empty(layout.num_rows, latent + 2 * context)
        half_spread_noise = (self.context_spread.tensor * self.context_noise).mul_(0.5) \
            if self.context_noise is not None else None
        self.context_backward_steps = list(zip(*(step_blocks(x, layout) for x in (
            self.d_latents[:, :latent + context], self.d_latents[:, :latent], self.d_latents[:, latent:],
            self.d_latents[:, latent:latent + context], self.d_latents[:, latent + context:], half_spread_noise))))
        if self.memory is None:
            return
        keys, states, score = self.memory[:3]
        sizes = layout.batch_sizes
        self.contexts, self.attention = outputs[2:]
        self.d_contexts_out = output_grads[2]  # None unless c_t itself is scored
        d_weights = states.new_empty(layout.num_rows, states.size(1))
        self.d_scores = torch.empty_like(d_weights)
        self.d_keys = torch.zeros_like(keys)
        self.quadrupled_score = score * 4  # d tanh(u) / du = 4 sigmoid(2 u) (1 - sigmoid(2 u))
        slopes = torch.empty_like(keys)  # each step's d score / d (V s_i + W h_{t-1}), (n, S, A)
        query_start = self.latent_weight.size(0) + 2 * self.latent_dim
        # d alpha_ti through c_t itself, s_i . d c_t, does not depend on the recurrence: for all steps at once
        d_weights_from_contexts = None
        if self.d_contexts_out is not None:
            d_weights_from_contexts = layout.from_rank(layout.by_rank(self.d_contexts_out)
                                                       @ states.transpose(1, 2))[:, :, None]
        self.memory_backward_steps = list(zip(
            *(step_blocks(x, layout) for x in (d_weights_from_contexts, d_weights,
                d_weights[:, :, None], self.d_scores, self.d_scores[:, None, :], self.d_scores[:, :, None],
                self.attention, d_projected[:, None, query_start:])),
            self.sigmoids.blocks, [slopes[:n] for n in sizes], [self.d_keys[:n] for n in sizes],
            [self.projected_states[:n] for n in sizes]))

    def _latents_backward(self, t: int, d_gates: torch.Tensor, d_z: torch.Tensor) -> None:
        d_through_gates, d_z_through_gates, d_context_prior, d_predicted, d_logvar, half_spread_noise = \
            self.context_backward_steps[t]
        torch.mm(d_gates, self.latent_weight, out=d_through_gates)  # [d z, d c~_t]
        if half_spread_noise is None:
            d_logvar.zero_()
        else:
            torch.mul(d_predicted, half_spread_noise, out=d_logvar)
        torch.addmm(d_z_through_gates, d_context_prior, self.context_prior_weight, out=d_z)

    def _context_backward(self, t: int, d_params: torch.Tensor) -> None:
        if self.memory is None:
            return
        (d_weights_from_contexts, d_weights, d_weights_column, d_scores, d_scores_row, d_scores_column, weights,
         d_query, sigmoids, slopes, d_keys, projected_states) = self.memory_backward_steps[t]
        if d_weights_from_contexts is None:
            torch.bmm(projected_states, d_params[:, :, None], out=d_weights_column)
        else:
            torch.baddbmm(d_weights_from_contexts, projected_states, d_params[:, :, None], out=d_weights_column)
        torch.ops.aten._softmax_backward_data.out(d_weights, weights, -1, weights.dtype, grad_input=d_scores)
        # the gradient of the pre-activation u_ti is d score_ti times the slope: summed over i for the query,
        # accumulated over t for the keys
        torch.ops.aten.sigmoid_backward.grad_input(self.quadrupled_score, sigmoids, grad_input=slopes)
        d_keys.addcmul_(d_scores_column, slopes)
        torch.bmm(d_scores_row, slopes, out=d_query)

    def input_grads(self) -> tuple[torch.Tensor | None, ...]:
        d_latent_weight, _ = super().input_grads()
        z = self.latents[:, :self.latent_dim]
        d_context_prior = self.d_latents[:, self.latent_dim:]
        grads = (d_latent_weight, None, d_context_prior.t() @ z, d_context_prior.sum(0))
        if self.memory is None:
            return grads + (None,) * 4
        start = self.latent_weight.size(0)
        d_params = self.d_projected[:, start:start + 2 * self.latent_dim]
        d_contexts = d_params @ self.memory[3]
        if self.d_contexts_out is not None:
            d_contexts += self.d_contexts_out
        # d s_i = sum over the steps of alpha_ti d c_t: for all steps at once, sentence by sentence
        d_states = self.layout.by_rank(self.attention).transpose(1, 2) @ self.layout.by_rank(d_contexts)
        # the score vector's gradient, from w^T tanh(u) = 2 w^T sigmoid(2 u) - sum(w), over all steps at once
        sigmoids = self.sigmoids.tensor
        d_score = torch.addmv(-self.d_scores.sum().expand(sigmoids.size(-1)), sigmoids.view(-1, sigmoids.size(-1)).t(),
                              self.d_scores.view(-1), alpha=2)
        return grads + (self.d_keys, d_states, d_score, d_params.t() @ self.contexts)


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
            states = memory.states
            keys = linear_layer(states.reshape(-1, states.size(-1)), self.key_projection.weight).view(
                *states.shape[:2], -1)
            attention = tuple(t.index_select(0, layout.order) for t in (keys, states, padding))
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

"""The stochastic decoders' per-step latents inside the packed recurrence (:mod:`seqvae_zoo.kernels.recurrence`),
forward and backward written by hand: the same draws as the decoders' equations (:mod:`seqvae_zoo.decoders.stochastic`,
:mod:`seqvae_zoo.decoders.attentive`), computed in place into buffers allocated once per batch.

Under bfloat16 autocast (:mod:`seqvae_zoo.kernels.precision`) the products of the latents with ``latent_weight``
(into the gates, 4H wide, and back) take bfloat16 operands, that weight cast once per batch; the latents' parameters,
draws and attention are float32: they are small products and elementwise work whose time bfloat16 would not cut, and
the log-variances are exponentiated, where bfloat16's rounding would grow.
"""

from __future__ import annotations

import torch

from seqvae_zoo.kernels.matmul import product_into
from seqvae_zoo.kernels.precision import full_precision
from seqvae_zoo.kernels.recurrence import LatentHead, PackedLayout, StepRows, step_blocks


class StochasticHead(LatentHead):
    """z_t inside the recurrence: its distribution's parameters are the head's columns of the recurrent projection
    plus, for the posterior, the context's half (here one vector per sentence); z_t is their mean plus
    exp(logvar / 2) times the step's noise (``noise`` None: the mean itself). The latents [z_t, extras] enter the
    gates through ``latent_weight``.

    Outputs: z (N, latent_dim) and the parameters (N, 2 latent_dim) it was drawn from.
    """

    def __init__(self, latent_dim: int, latent_weight: torch.Tensor, noise: torch.Tensor | None,
                 context_params: torch.Tensor | None = None):
        self.latent_dim = latent_dim
        self.width = 2 * latent_dim
        self.latent_weight = latent_weight  # (4H, latent_dim + extras)
        self.noise = noise  # (N, latent_dim)
        # (B, 2 latent_dim) in rank order, float32 (the state of the recurrence); None in the prior modes
        self.context_params = full_precision(context_params) if context_params is not None else None
        self.inputs = (latent_weight, self.context_params)

    # -- forward ------------------------------------------------------------------------------------------------
    def begin_forward(self, layout: PackedLayout, keep: bool, projected: StepRows, gates: StepRows,
                      product_dtype: torch.dtype) -> None:
        self.layout, self.keep = layout, keep
        like, latent = self.latent_weight, self.latent_dim
        self.params = like.new_empty(layout.num_rows, 2 * latent)
        self.latents = like.new_empty(layout.num_rows, self.latent_weight.size(1))
        self.spread = StepRows(like, layout, keep, latent)  # exp(logvar / 2)
        self.product_weight = self.latent_weight.to(product_dtype)  # once per batch
        self.latent_weight_t = self.product_weight.t()
        start = gates.tensor.size(1)
        context = [self.context_params[:n] for n in layout.batch_sizes] if self.context_params is not None else None
        self.steps = list(zip(
            projected.step_views(projected.tensor[:, start:start + 2 * latent]), gates.blocks,
            *(step_blocks(x, layout) for x in (self.params, self.params[:, :latent], self.params[:, latent:],
                                               self.latents, self.latents[:, :latent], self.latents[:, latent:])),
            self.spread.blocks, step_blocks(self.noise, layout), context or step_blocks(None, layout)))

    def forward_step(self, t: int) -> None:
        from_hidden, gates, params, mean, logvar, latents, z, extras, spread, noise, context = self.steps[t]
        self._params(t, from_hidden, context, params)
        if noise is None:
            z.copy_(mean)
        else:
            torch.addcmul(mean, torch.mul(logvar, 0.5, out=spread).exp_(), noise, out=z)
        self._extra_latents(t, z, extras)
        product_into(gates, latents, self.latent_weight_t, add=True)

    def _params(self, t: int, from_hidden: torch.Tensor, context: torch.Tensor | None, params: torch.Tensor) -> None:
        """Write the parameters z_t is drawn from into ``params``: the head's columns (``from_hidden``) plus the
        posterior's context half (``context``, None in the prior modes)."""
        if context is None:
            params.copy_(from_hidden)
        else:
            torch.add(from_hidden, context, out=params)

    def _extra_latents(self, t: int, z: torch.Tensor, extras: torch.Tensor) -> None:
        """Latents drawn given z_t that enter the gates beside it (none here)."""

    def take_outputs(self) -> tuple[torch.Tensor, ...]:
        outputs = self.latents[:, :self.latent_dim], self.params
        del self.params, self.steps  # the steps hold views of the parameters
        return outputs

    # -- backward -----------------------------------------------------------------------------------------------
    def begin_backward(self, outputs: tuple[torch.Tensor, ...], output_grads: tuple[torch.Tensor | None, ...],
                       d_projected: torch.Tensor) -> None:
        layout, latent = self.layout, self.latent_dim
        start = self.latent_weight.size(0)
        self.d_projected = d_projected
        d_params = d_projected[:, start:start + 2 * latent]
        d_z, d_params_out = output_grads[:2]
        # d logvar = d z * exp(logvar / 2) * noise / 2, with the second factor known before the loop
        half_spread_noise = (self.spread.tensor * self.noise).mul_(0.5) if self.noise is not None else None
        self.backward_steps = list(zip(*(step_blocks(x, layout) for x in (
            d_projected[:, :start], d_params, d_params[:, :latent], d_params[:, latent:], d_z, d_params_out,
            half_spread_noise))))

    def backward_step(self, t: int) -> None:
        d_gates, d_params, d_mean, d_logvar, d_z, d_params_out, half_spread_noise = self.backward_steps[t]
        self._latents_backward(t, d_gates, d_mean)
        if d_z is not None:
            d_mean.add_(d_z)
        if half_spread_noise is None:
            d_logvar.zero_()
        else:
            torch.mul(d_mean, half_spread_noise, out=d_logvar)
        if d_params_out is not None:
            d_params.add_(d_params_out)
        self._context_backward(t, d_params)

    def _latents_backward(self, t: int, d_gates: torch.Tensor, d_z: torch.Tensor) -> None:
        """Write into ``d_z`` the gradient z_t receives through the gates (and the extra latents drawn from it)."""
        product_into(d_z, d_gates, self.product_weight)

    def _context_backward(self, t: int, d_params: torch.Tensor) -> None:
        """Per step, the gradient into the posterior's context (none here: it is constant over the steps)."""

    def input_grads(self) -> tuple[torch.Tensor | None, ...]:
        start = self.latent_weight.size(0)
        dtype = self.product_weight.dtype
        d_latent_weight = None
        if self.latent_weight.requires_grad:  # not when the decoder is frozen (an encoder-only step)
            d_latent_weight = self.d_projected[:, :start].t().to(dtype) @ self.latents.to(dtype)
            d_latent_weight = d_latent_weight.to(self.latents.dtype)
        d_context = None
        if self.context_params is not None and self.context_params.requires_grad:
            d_params = self.d_projected[:, start:start + 2 * self.latent_dim]
            d_context = d_params.new_zeros(self.context_params.shape).index_add_(0, self.layout.rank, d_params)
        return d_latent_weight, d_context


class AttentiveHead(StochasticHead):
    """z_t and c~_t inside the recurrence.

    In the posterior modes the head's columns are the posterior's h_{t-1} half and the attention query W h_{t-1};
    c_t (eq. 3-4) adds the posterior's context half. c~_t = mean + exp(logvar / 2) * noise of p(c~_t | z_t)
    (``context_noise`` None: the mean). Extra outputs in the posterior modes: c_t (N, state size) and the attention
    weights (N, S), which carry no gradient.

    In the packed recurrence the keys V s_i are computed once per batch; W h_{t-1} is the query head of the fused
    recurrent projection. c_t reaches the recurrence only through the posterior's context half W_c c_t = sum_i
    alpha_ti (W_c s_i), so the step reads the projected states W_c s_i (2 latent_dim numbers per encoder state,
    computed once per batch) instead of the states themselves, and c_t is computed for all steps at once after the
    loop; the gradients of the states and of W_c likewise.
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
        self.memory = tuple(map(full_precision, memory)) if memory is not None else None  # float32 state
        attention = self.memory[:4] if memory is not None else (None,) * 4
        self.inputs = (latent_weight, None, context_prior_weight, context_prior_bias, *attention)
        if memory is not None:
            self.width += memory[0].size(-1)
            self.non_differentiable_outputs = 1

    # -- forward ------------------------------------------------------------------------------------------------
    def begin_forward(self, layout: PackedLayout, keep: bool, projected: StepRows, gates: StepRows,
                      product_dtype: torch.dtype) -> None:
        super().begin_forward(layout, keep, projected, gates, product_dtype)
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
        product_into(d_through_gates, d_gates, self.product_weight)  # [d z, d c~_t]
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

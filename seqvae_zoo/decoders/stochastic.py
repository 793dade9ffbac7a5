"""Stochastic recurrent decoder: a latent z_t at every step, with a learned conditional prior.

At step t: prior p(z_t | h_{t-1}) = N(f_h(h_{t-1})); posterior q(z_t | h_{t-1}, e_t) = N(f_q(h_{t-1}, e_t)), where e_t
is what the posterior reads of the encoder (here its summary of the whole sentence; the attentive decoder attends);
h_t = LSTM([x_t, z_t, z_enc], h_{t-1}); p(x_{t+1} | h_t) = softmax(W h_t + b).

It runs on the packed recurrence of :mod:`seqvae_zoo.decoders.lstm`, where one matmul on h_{t-1} per step gives the
LSTM's recurrent gates and every head the step needs (the posterior's h_{t-1} half, the attention query; the prior
in the prior modes). The noise of all steps is drawn before the loop; the prior in the posterior modes, the KL terms
and the importance weights read only the states and the drawn latents, so they are computed for all steps at once
after it.

``recurrent``'s rows: the 4H gates, the posterior's h_{t-1} half (2 latent_dim), the attention query (query_size),
the prior (2 latent_dim).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqvae_zoo.decoders.base import Decoder, DecoderOutput, check_mode
from seqvae_zoo.decoders.lstm import InputDropout, LatentHead, PackedLayout, StepRows, run_packed_lstm, step_blocks
from seqvae_zoo.encoders.base import EncoderOutput
from seqvae_zoo.gaussian import gaussian_kl, gaussian_log_prob, split_params
from seqvae_zoo.matmul import linear_layer
from seqvae_zoo.registry import DECODERS


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
        self.context_params = context_params  # (B, 2 latent_dim) in rank order; None in the prior modes
        self.inputs = (latent_weight, context_params)

    # -- forward ------------------------------------------------------------------------------------------------
    def begin_forward(self, layout: PackedLayout, keep: bool, projected: StepRows, gates: StepRows) -> None:
        self.layout, self.keep = layout, keep
        like, latent = self.latent_weight, self.latent_dim
        self.params = like.new_empty(layout.num_rows, 2 * latent)
        self.latents = like.new_empty(layout.num_rows, self.latent_weight.size(1))
        self.spread = StepRows(like, layout, keep, latent)  # exp(logvar / 2)
        self.latent_weight_t = self.latent_weight.t()
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
        gates.addmm_(latents, self.latent_weight_t)

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
        torch.mm(d_gates, self.latent_weight, out=d_z)

    def _context_backward(self, t: int, d_params: torch.Tensor) -> None:
        """Per step, the gradient into the posterior's context (none here: it is constant over the steps)."""

    def input_grads(self) -> tuple[torch.Tensor | None, ...]:
        start = self.latent_weight.size(0)
        d_latent_weight = self.d_projected[:, :start].t() @ self.latents
        d_context = None
        if self.context_params is not None and self.context_params.requires_grad:
            d_params = self.d_projected[:, start:start + 2 * self.latent_dim]
            d_context = d_params.new_zeros(self.context_params.shape).index_add_(0, self.layout.rank, d_params)
        return d_latent_weight, d_context


@DECODERS.register("stochastic")
class StochasticDecoder(Decoder):
    """Per-step latents z_t; the posterior reads the encoder's final state. Needs an encoder.

    The LSTM's weights are ``input_projection`` (x_t, with the input bias), ``z_enc_projection`` (z_enc),
    ``latent_projection`` ([z_t, extra latents]) and the gate rows of ``recurrent`` (h_{t-1}, with the recurrent
    bias), initialized as ``nn.LSTM`` initializes its own.
    """

    reads_memory = True
    per_step_latents = ("z_t",)
    #: Width of the attention query head in ``recurrent`` (0: no attention).
    query_size = 0
    #: Width of extra per-step latent input beside z_t (the attentive decoder's c~_t).
    extra_latent_size = 0

    def __init__(self, vocab_size: int, pad_id: int, z_enc_dim: int = 0, memory_size: int = 0,
                 embedding_dim: int = 512, hidden_size: int = 256, latent_dim: int = 32, input_dropout: float = 0.5):
        if memory_size <= 0:
            raise ValueError(f"decoder {type(self).registry_name!r} has a posterior that reads the encoder: "
                             "configure an encoder (SeqVAE.encoder = @encoders.lstm)")
        super().__init__(vocab_size, hidden_size)
        self.latent_dim = latent_dim
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.input_dropout = InputDropout(input_dropout)
        gates = 4 * hidden_size
        self.input_projection = nn.Linear(embedding_dim, gates)
        self.z_enc_projection = nn.Linear(z_enc_dim, gates, bias=False) if z_enc_dim else None
        self.recurrent = nn.Linear(hidden_size, gates + 2 * latent_dim + self.query_size + 2 * latent_dim)
        bound = hidden_size ** -0.5
        with torch.no_grad():
            for parameter in (self.input_projection.weight, self.input_projection.bias, self.recurrent.weight[:gates],
                              self.recurrent.bias[:gates],
                              *([self.z_enc_projection.weight] if self.z_enc_projection is not None else [])):
                parameter.uniform_(-bound, bound)
        self.latent_projection = nn.Linear(latent_dim + self.extra_latent_size, gates, bias=False)
        self.posterior_context = nn.Linear(memory_size, 2 * latent_dim, bias=False)

    # -- the recurrence -----------------------------------------------------------------------------------------
    def _gate_inputs(self, layout: PackedLayout, inputs: torch.Tensor, z_enc: torch.Tensor | None) -> torch.Tensor:
        """Gate pre-activations from x_t and z_enc, for every packed row at once: (N, 4H).

        Without dropout (scoring), a token's projection is the same wherever it occurs, so each distinct token of
        the batch is projected once: IW-NLL's K copies of a sentence, say, cost one projection per word type."""
        tokens, occurrence = layout.pack(inputs), None
        if self.training and self.input_dropout.p > 0:
            embedded = self.input_dropout(self.embedding(tokens))
        else:
            distinct, occurrence = torch.unique(tokens, return_inverse=True)
            embedded = self.embedding(distinct)
        gate_inputs = linear_layer(embedded, self.input_projection.weight, self.input_projection.bias)
        if occurrence is not None:
            gate_inputs = gate_inputs.index_select(0, occurrence)
        if self.z_enc_projection is not None:  # added into the gathered rows: one (N, 4H) block less
            gate_inputs = self.z_enc_projection(z_enc).index_select(0, layout.sentence).add_(gate_inputs)
        return gate_inputs

    def _step_weights(self, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows of ``recurrent`` the loop reads in ``mode``: the gates, then the head's columns."""
        weight, bias = self.recurrent.weight, self.recurrent.bias
        if mode.startswith("posterior"):
            posterior_end = 4 * self.hidden_size + 2 * self.latent_dim + self.query_size
            return weight[:posterior_end], bias[:posterior_end]
        prior = self._prior_rows()
        gates = slice(0, 4 * self.hidden_size)
        return torch.cat([weight[gates], weight[prior]]), torch.cat([bias[gates], bias[prior]])

    def _prior_rows(self) -> slice:
        return slice(self.recurrent.out_features - 2 * self.latent_dim, self.recurrent.out_features)

    def _run(self, layout: PackedLayout, inputs: torch.Tensor, z_enc: torch.Tensor | None, mode: str,
             memory: EncoderOutput | None, state: tuple[torch.Tensor, ...] | None = None
             ) -> tuple[torch.Tensor, ...]:
        """The packed recurrence over ``inputs`` from ``state`` (batch order; zeros by default): hidden and cell
        states (N, H), then the head's outputs."""
        head = self._head(layout, mode, memory, inputs.size(1), self.output.weight)
        weight, bias = self._step_weights(mode)
        if state is None:
            initial_h = initial_c = weight.new_zeros(layout.batch_size, self.hidden_size)
        else:
            initial_h, initial_c = (s.index_select(0, layout.order) for s in state)
        return run_packed_lstm(layout, head, self._gate_inputs(layout, inputs, z_enc), weight, bias,
                               initial_h, initial_c)

    def _draw_noise(self, steps: int, batch: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Standard normal noise for z_t and the extra latents of every step, (T, B, size), drawn before the loop."""
        noise = like.new_empty(steps, batch, self.latent_dim).normal_()
        extra = like.new_empty(steps, batch, self.extra_latent_size).normal_() if self.extra_latent_size else None
        return noise, extra

    def _packed_noise(self, layout: PackedLayout, mode: str, steps: int,
                      like: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The noise of each packed row (None in the modes that take means)."""
        if mode.endswith("_mean"):
            return None, None
        noise = self._draw_noise(steps, layout.batch_size, like)
        return tuple(n.reshape(-1, n.size(-1)).index_select(0, layout.time_major_index) if n is not None else None
                     for n in noise)

    def _head(self, layout: PackedLayout, mode: str, memory: EncoderOutput | None, steps: int,
              like: torch.Tensor) -> LatentHead:
        """The per-step latents in ``mode``, for a batch ``steps`` wide (the attentive decoder's add attention)."""
        noise, _ = self._packed_noise(layout, mode, steps, like)
        context = None
        if mode.startswith("posterior"):
            context = self.posterior_context(memory.final).index_select(0, layout.order)
        return StochasticHead(self.latent_dim, self.latent_projection.weight, noise, context)

    # -- scoring ------------------------------------------------------------------------------------------------
    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor, z_enc: torch.Tensor | None,
                memory: EncoderOutput | None, mode: str = "posterior",
                return_attention: bool = False) -> DecoderOutput:
        check_mode(mode)
        layout = PackedLayout.from_lengths(lengths, inputs.size(1))
        hidden, _, *head_outputs = self._run(layout, inputs, z_enc, mode, memory)
        return self._output(layout, hidden, tuple(head_outputs), mode, return_attention)

    def _output(self, layout: PackedLayout, hidden: torch.Tensor, head_outputs: tuple[torch.Tensor, ...],
                mode: str, return_attention: bool) -> DecoderOutput:
        z, params = head_outputs[:2]
        output = DecoderOutput(hidden=layout.unpack(hidden), extras=self._extras(layout, z, head_outputs, mode))
        if mode.startswith("posterior"):
            prior_rows = self._prior_rows()
            previous = layout.with_previous(hidden.new_zeros(layout.batch_size, self.hidden_size), hidden)
            prior = split_params(F.linear(previous, self.recurrent.weight[prior_rows],
                                          self.recurrent.bias[prior_rows]))
            posterior = split_params(params)
            output.kl["z_t"] = layout.unpack(gaussian_kl(posterior.mean, posterior.logvar, prior.mean, prior.logvar))
            output.log_ratio = layout.unpack(gaussian_log_prob(z, prior.mean, prior.logvar)
                                             - gaussian_log_prob(z, posterior.mean, posterior.logvar))
        else:
            # The proposal is the prior itself (or its mean, for the paper's protocol): no KL, no weight.
            output.kl["z_t"] = output.log_ratio = hidden.new_zeros(layout.batch_size, layout.width)
        return output

    def _extras(self, layout: PackedLayout, z: torch.Tensor, head_outputs: tuple[torch.Tensor, ...],
                mode: str) -> dict:
        """Per-step results auxiliary losses read (none here)."""
        return {}

    # -- generation (Algorithm 2) -------------------------------------------------------------------------------
    def start(self, z_enc: torch.Tensor | None, batch_size: int) -> tuple[torch.Tensor, ...]:
        zeros = self.output.weight.new_zeros(batch_size, self.hidden_size)
        return zeros, zeros

    def step(self, tokens: torch.Tensor, state: tuple[torch.Tensor, ...], z_enc: torch.Tensor | None,
             latent_mode: str = "prior_sample") -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        check_mode(latent_mode)
        if latent_mode.startswith("posterior"):
            raise ValueError("generation draws z_t from the prior: use latent_mode 'prior_sample' or 'prior_mean'")
        layout = PackedLayout.from_lengths(torch.ones_like(tokens), 1)  # one step: packed order is batch order
        hidden, cells = self._run(layout, tokens[:, None], z_enc, latent_mode, None, state)[:2]
        return self.logits(hidden), (hidden, cells)

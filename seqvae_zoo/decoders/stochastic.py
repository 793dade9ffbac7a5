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

from seqvae_zoo.decoders.base import DecoderOutput
from seqvae_zoo.decoders.lstm import LatentHead, LSTMDecoder, PackedLayout, StepRows
from seqvae_zoo.encoders.base import EncoderOutput
from seqvae_zoo.gaussian import gaussian_kl, gaussian_log_prob, split_params
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
    def begin_forward(self, layout: PackedLayout, keep: bool) -> None:
        self.layout, self.keep = layout, keep
        like = self.latent_weight
        self.params = like.new_empty(layout.num_rows, 2 * self.latent_dim)
        self.latents = like.new_empty(layout.num_rows, self.latent_weight.size(1))
        self.spread = StepRows(like, layout, keep, self.latent_dim)  # exp(logvar / 2) * noise

    def forward_step(self, rows: slice, n: int, projected: torch.Tensor, gates: torch.Tensor) -> None:
        params = self._params(rows, n, projected)
        latents = self.latents[rows]
        z = latents[:, :self.latent_dim]
        if self.noise is None:
            z.copy_(params[:, :self.latent_dim])
        else:
            spread = torch.mul(params[:, self.latent_dim:], 0.5, out=self.spread(rows, n)).exp_()
            torch.add(params[:, :self.latent_dim], spread.mul_(self.noise[rows]), out=z)
        self._extra_latents(rows, n, z, latents[:, self.latent_dim:])
        gates.addmm_(latents, self.latent_weight.t())

    def _params(self, rows: slice, n: int, projected: torch.Tensor) -> torch.Tensor:
        """The parameters z_t is drawn from, written into ``self.params[rows]``."""
        if self.context_params is None:
            return self.params[rows].copy_(projected)
        return torch.add(projected, self.context_params[:n], out=self.params[rows])

    def _extra_latents(self, rows: slice, n: int, z: torch.Tensor, extras: torch.Tensor) -> None:
        """Latents drawn given z_t that enter the gates beside it (none here)."""

    def outputs(self) -> tuple[torch.Tensor, ...]:
        return self.latents[:, :self.latent_dim], self.params

    # -- backward -----------------------------------------------------------------------------------------------
    def begin_backward(self, output_grads: tuple[torch.Tensor | None, ...]) -> None:
        self.d_z, self.d_params = output_grads[:2]

    def backward_step(self, rows: slice, n: int, d_gates: torch.Tensor, d_projected: torch.Tensor) -> None:
        d_params = d_projected[:, :2 * self.latent_dim]
        d_mean, d_logvar = d_params[:, :self.latent_dim], d_params[:, self.latent_dim:]
        self._latents_backward(rows, n, d_gates, d_mean)
        if self.d_z is not None:
            d_mean.add_(self.d_z[rows])
        if self.noise is None:
            d_logvar.zero_()
        else:
            torch.mul(d_mean, self.spread(rows, n), out=d_logvar).mul_(0.5)
        if self.d_params is not None:
            d_params.add_(self.d_params[rows])
        self._context_backward(rows, n, d_params, d_projected)

    def _latents_backward(self, rows: slice, n: int, d_gates: torch.Tensor, d_z: torch.Tensor) -> None:
        """Write into ``d_z`` the gradient z_t receives through the gates (and the extra latents drawn from it)."""
        torch.mm(d_gates, self.latent_weight, out=d_z)

    def _context_backward(self, rows: slice, n: int, d_params: torch.Tensor, d_projected: torch.Tensor) -> None:
        """Per step, the gradient into the posterior's context (none here: it is constant over the steps)."""

    def input_grads(self, d_projected: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        gates = self.latent_weight.size(0)
        d_latent_weight = d_projected[:, :gates].t() @ self.latents
        d_context = None
        if self.context_params is not None and self.context_params.requires_grad:
            d_params = d_projected[:, gates:gates + 2 * self.latent_dim]
            d_context = d_params.new_zeros(self.context_params.shape).index_add_(0, self.layout.rank, d_params)
        return d_latent_weight, d_context


@DECODERS.register("stochastic")
class StochasticDecoder(LSTMDecoder):
    """Per-step latents z_t; the posterior reads the encoder's final state. Needs an encoder."""

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
        self.latent_dim = latent_dim
        super().__init__(vocab_size, pad_id, z_enc_dim, memory_size, embedding_dim, hidden_size, input_dropout)
        self.latent_projection = nn.Linear(latent_dim + self.extra_latent_size, 4 * hidden_size, bias=False)
        self.posterior_context = nn.Linear(memory_size, 2 * latent_dim, bias=False)

    def _head_size(self) -> int:
        return 2 * self.latent_dim + self.query_size + 2 * self.latent_dim

    def _step_weights(self, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        weight, bias = self.recurrent.weight, self.recurrent.bias
        if mode.startswith("posterior"):
            posterior_end = 4 * self.hidden_size + 2 * self.latent_dim + self.query_size
            return weight[:posterior_end], bias[:posterior_end]
        prior = self._prior_rows()
        gates = slice(0, 4 * self.hidden_size)
        return torch.cat([weight[gates], weight[prior]]), torch.cat([bias[gates], bias[prior]])

    def _prior_rows(self) -> slice:
        return slice(self.recurrent.out_features - 2 * self.latent_dim, self.recurrent.out_features)

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
        noise, _ = self._packed_noise(layout, mode, steps, like)
        context = None
        if mode.startswith("posterior"):
            context = self.posterior_context(memory.final).index_select(0, layout.order)
        return StochasticHead(self.latent_dim, self.latent_projection.weight, noise, context)

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

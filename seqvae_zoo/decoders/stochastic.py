"""Stochastic recurrent decoder: a latent z_t at every step, with a learned conditional prior.

At step t: prior p(z_t | h_{t-1}) = N(f_h(h_{t-1})); posterior q(z_t | h_{t-1}, e_t) = N(f_q(h_{t-1}, e_t)), where e_t
is what the posterior reads of the encoder (here its summary of the whole sentence; the attentive decoder attends);
h_t = LSTM([x_t, z_t, z_enc], h_{t-1}); p(x_{t+1} | h_t) = softmax(W h_t + b).

Everything that does not depend on the recurrence is computed once before the time loop: the input projection of
all steps, z_enc's projection, the noise of all steps. Inside the loop one matmul on h_{t-1} gives the LSTM's
recurrent gates and every head that reads h_{t-1} (prior, posterior, attention query) together.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from seqvae_zoo.decoders.base import Decoder, DecoderOutput, check_mode
from seqvae_zoo.encoders.base import EncoderOutput
from seqvae_zoo.gaussian import DiagGaussian, gaussian_kl, gaussian_log_prob, split_params
from seqvae_zoo.registry import DECODERS


def lstm_cell(gates: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The LSTM update from pre-activation gates (B, 4H) in PyTorch's order (input, forget, cell, output)."""
    i, f, g, o = gates.chunk(4, dim=-1)
    cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(cell), cell


class StepResult(NamedTuple):
    prior: DiagGaussian
    posterior: DiagGaussian | None
    z: torch.Tensor
    context: torch.Tensor | None
    attention: torch.Tensor | None
    extras: dict[str, Any]


@DECODERS.register("stochastic")
class StochasticDecoder(Decoder):
    """Per-step latents z_t; the posterior reads the encoder's final state. Needs an encoder."""

    reads_memory = True
    per_step_latents = ("z_t",)
    #: Width of what the attention query head adds to the fused recurrent projection (0: no attention).
    query_size = 0
    #: Width of extra per-step latent input beside z_t (the attentive decoder's c~_t).
    extra_latent_size = 0

    def __init__(self, vocab_size: int, pad_id: int, z_enc_dim: int = 0, memory_size: int = 0,
                 embedding_dim: int = 512, hidden_size: int = 256, latent_dim: int = 32, input_dropout: float = 0.5):
        super().__init__(vocab_size, hidden_size)
        if memory_size <= 0:
            raise ValueError(f"decoder {type(self).registry_name!r} has a posterior that reads the encoder: "
                             "configure an encoder (SeqVAE.encoder = @encoders.lstm)")
        self.latent_dim = latent_dim
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.input_dropout = nn.Dropout(input_dropout)
        gates = 4 * hidden_size
        self.input_projection = nn.Linear(embedding_dim, gates)
        self.z_enc_projection = nn.Linear(z_enc_dim, gates, bias=False) if z_enc_dim else None
        self.latent_projection = nn.Linear(latent_dim + self.extra_latent_size, gates, bias=False)
        self._head_sizes = [gates, 2 * latent_dim, 2 * latent_dim, self.query_size]
        self.recurrent = nn.Linear(hidden_size, sum(self._head_sizes))
        self.posterior_context = nn.Linear(memory_size, 2 * latent_dim, bias=False)

    # -- hooks the attentive decoder overrides ------------------------------------------------------------------
    def _prepare_memory(self, memory: EncoderOutput) -> Any:
        """Whatever the posterior's context needs, computed once per batch."""
        return memory.final

    def _context(self, query: torch.Tensor, prepared: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The posterior's view of the encoder at this step, and attention weights if any."""
        return prepared, None

    def _latent_input(self, z: torch.Tensor, noise: torch.Tensor | None, mode: str,
                      context: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, Any]]:
        """The per-step latent input to the LSTM beside x_t, and per-step extras for auxiliary losses."""
        return z, {}

    def _collect_extras(self, steps: list[StepResult]) -> dict[str, Any]:
        return {}

    # -- recurrence ---------------------------------------------------------------------------------------------
    def _gate_inputs(self, tokens: torch.Tensor, z_enc: torch.Tensor | None) -> torch.Tensor:
        """Input-side gate pre-activations of all steps at once: (B, T, 4H)."""
        gates = self.input_projection(self.input_dropout(self.embedding(tokens)))
        if self.z_enc_projection is not None:
            gates = gates + self.z_enc_projection(z_enc)[:, None, :]
        return gates

    def _cell(self, gate_inputs: torch.Tensor, h: torch.Tensor, c: torch.Tensor, prepared: Any, mode: str,
              noise_z: torch.Tensor | None, noise_extra: torch.Tensor | None):
        recurrent_gates, prior_params, posterior_params, query = self.recurrent(h).split(self._head_sizes, dim=-1)
        prior = split_params(prior_params)
        posterior = context = attention = None
        if mode.startswith("posterior"):
            context, attention = self._context(query, prepared)
            posterior = split_params(posterior_params + self.posterior_context(context))
            z = posterior.mean if mode == "posterior_mean" else posterior.rsample(noise_z)
        elif mode == "prior_mean":
            z = prior.mean
        else:
            z = prior.rsample(noise_z)
        latent_input, extras = self._latent_input(z, noise_extra, mode, context)
        h, c = lstm_cell(gate_inputs + recurrent_gates + self.latent_projection(latent_input), c)
        return h, c, StepResult(prior, posterior, z, context, attention, extras)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor, z_enc: torch.Tensor | None,
                memory: EncoderOutput | None, mode: str = "posterior",
                return_attention: bool = False) -> DecoderOutput:
        check_mode(mode)
        batch, steps = inputs.shape
        gate_inputs = self._gate_inputs(inputs, z_enc).transpose(0, 1)  # (T, B, 4H): contiguous per step
        reads_posterior = mode.startswith("posterior")
        prepared = self._prepare_memory(memory) if reads_posterior else None
        noise_z = gate_inputs.new_empty(steps, batch, self.latent_dim).normal_()
        noise_extra = (gate_inputs.new_empty(steps, batch, self.extra_latent_size).normal_()
                       if self.extra_latent_size else [None] * steps)
        h = c = gate_inputs.new_zeros(batch, self.hidden_size)
        hidden, results = [], []
        for t in range(steps):
            h, c, result = self._cell(gate_inputs[t], h, c, prepared, mode, noise_z[t], noise_extra[t])
            hidden.append(h)
            results.append(result)
        output = DecoderOutput(hidden=torch.stack(hidden, dim=1), extras=self._collect_extras(results))
        if reads_posterior:
            prior = DiagGaussian(*(torch.stack(p, dim=1) for p in zip(*(r.prior for r in results))))
            posterior = DiagGaussian(*(torch.stack(p, dim=1) for p in zip(*(r.posterior for r in results))))
            z = torch.stack([r.z for r in results], dim=1)
            output.kl["z_t"] = gaussian_kl(posterior.mean, posterior.logvar, prior.mean, prior.logvar)
            output.log_ratio = (gaussian_log_prob(z, prior.mean, prior.logvar)
                                - gaussian_log_prob(z, posterior.mean, posterior.logvar))
            if return_attention and results[0].attention is not None:
                output.attention = torch.stack([r.attention for r in results], dim=1)
        else:
            # The proposal is the prior itself (or its mean, for the paper's protocol): no KL, no weight.
            output.kl["z_t"] = output.log_ratio = inputs.new_zeros(batch, steps, dtype=h.dtype)
        return output

    # -- generation (Algorithm 2) -------------------------------------------------------------------------------
    def start(self, z_enc: torch.Tensor | None, batch_size: int) -> tuple[torch.Tensor, ...]:
        zeros = self.output.weight.new_zeros(batch_size, self.hidden_size)
        return zeros, zeros

    def step(self, tokens: torch.Tensor, state: tuple[torch.Tensor, ...], z_enc: torch.Tensor | None,
             latent_mode: str = "prior_sample") -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        if latent_mode.startswith("posterior"):
            raise ValueError("generation draws z_t from the prior: use latent_mode 'prior_sample' or 'prior_mean'")
        h, c = state
        gate_inputs = self._gate_inputs(tokens[:, None], z_enc)[:, 0]
        noise_z = h.new_empty(h.size(0), self.latent_dim).normal_() if latent_mode == "prior_sample" else None
        noise_extra = (h.new_empty(h.size(0), self.extra_latent_size).normal_()
                       if self.extra_latent_size and latent_mode == "prior_sample" else None)
        h, c, _ = self._cell(gate_inputs, h, c, None, latent_mode, noise_z, noise_extra)
        return self.logits(h), (h, c)

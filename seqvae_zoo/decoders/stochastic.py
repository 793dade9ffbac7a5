"""Stochastic recurrent decoder: a latent z_t at every step, with a learned conditional prior.

At step t: prior p(z_t | h_{t-1}) = N(f_h(h_{t-1})); posterior q(z_t | h_{t-1}, e_t) = N(f_q(h_{t-1}, e_t)), where e_t
is what the posterior reads of the encoder (here its summary of the whole sentence; the attentive decoder attends);
h_t = cell([x_t, z_t, z_enc], h_{t-1}) with an LSTM cell by default (:mod:`seqvae_zoo.cells`);
p(x_{t+1} | h_t) = softmax(W h_t + b).

The methods under "the equations" below are these formulas, one step at a time. With the LSTM cell the decoder runs
the packed recurrence of :mod:`seqvae_zoo.kernels` instead, which computes the same numbers from the same draws
(tests/test_fast_path.py holds it to them): one matmul on h_{t-1} per step gives the cell's recurrent gates and
every head the step needs (the posterior's h_{t-1} half, the attention query; the prior in the prior modes), with a
hand-written backward. Either way the noise of all steps is drawn before the loop, and the prior in the posterior
modes, the KL terms and the importance weights read only the states and the drawn latents, so they are computed for
all steps at once after it.

``recurrent``'s rows: the cell's gates (4H for the LSTM), the posterior's h_{t-1} half (2 latent_dim), the attention
query (query_size), the prior (2 latent_dim).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from seqvae_zoo.decoders.base import Decoder, DecoderOutput, check_mode
from seqvae_zoo.decoders.lstm import InputDropout
from seqvae_zoo.encoders.base import EncoderOutput
from seqvae_zoo.errors import check_sizes
from seqvae_zoo.gaussian import gaussian_kl, gaussian_log_prob, split_params
from seqvae_zoo.kernels.latent_heads import StochasticHead
from seqvae_zoo.kernels.matmul import linear_layer
from seqvae_zoo.kernels.recurrence import LatentHead, PackedLayout, run_packed_lstm
from seqvae_zoo.registry import CELLS, DECODERS

#: What the posterior reads of the encoder at a step, given h_{t-1}: e_t, and the per-step results to keep (the
#: attentive decoder's c_t and attention weights).
ContextReader = Callable[[torch.Tensor], tuple[torch.Tensor, tuple[torch.Tensor, ...]]]


def draw(params: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
    """A reparameterized draw from N(mean, exp(logvar)) given [mean, logvar]: mean + exp(logvar / 2) * noise; the
    mean itself where there is no noise (the modes that take means)."""
    gaussian = split_params(params)
    return gaussian.mean if noise is None else gaussian.rsample(noise)


@DECODERS.register("stochastic")
class StochasticDecoder(Decoder):
    """Per-step latents z_t; the posterior reads the encoder's final state. Needs an encoder.

    The cell's weights are ``input_projection`` (x_t, with the input bias), ``z_enc_projection`` (z_enc),
    ``latent_projection`` ([z_t, extra latents]) and the gate rows of ``recurrent`` (h_{t-1}, with the recurrent
    bias), initialized as ``nn.LSTM`` and ``nn.GRU`` initialize their own. ``cell`` names the recurrence cell
    (a registered cell, :mod:`seqvae_zoo.cells`: ``lstm``, ``gru``).
    """

    reads_memory = True
    per_step_latents = ("z_t",)
    #: Width of the attention query head in ``recurrent`` (0: no attention).
    query_size = 0
    #: Width of extra per-step latent input beside z_t (the attentive decoder's c~_t).
    extra_latent_size = 0

    def __init__(self, vocab_size: int, pad_id: int, z_enc_dim: int = 0, memory_size: int = 0,
                 embedding_dim: int = 512, hidden_size: int = 256, latent_dim: int = 32, input_dropout: float = 0.5,
                 cell: str = "lstm"):
        if memory_size <= 0:
            raise ValueError(f"decoder {type(self).registry_name!r} has a posterior that reads the encoder: "
                             "configure an encoder (SeqVAE.encoder = @encoders.lstm)")
        owner = f"decoders.{type(self).registry_name}"
        check_sizes(owner, "the dimensions of each z_t (decoders.lstm has no per-step latents)",
                    latent_dim=latent_dim)
        check_sizes(owner, embedding_dim=embedding_dim, hidden_size=hidden_size)
        super().__init__(vocab_size, hidden_size)
        self.latent_dim = latent_dim
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.input_dropout = InputDropout(input_dropout)
        self.cell = CELLS.get(cell)(hidden_size)
        gates = self.cell.gate_size
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

    def _rows(self, head: str) -> slice:
        """The rows of ``recurrent`` that give ``head`` ("gates", "posterior", "query" or "prior") from h_{t-1}."""
        widths = {"gates": self.cell.gate_size, "posterior": 2 * self.latent_dim, "query": self.query_size,
                  "prior": 2 * self.latent_dim}
        start = 0
        for name, width in widths.items():
            if name == head:
                return slice(start, start + width)
            start += width
        raise KeyError(head)

    def _from_hidden(self, head: str, hidden: torch.Tensor) -> torch.Tensor:
        """``head``'s share of the recurrent projection of h_{t-1}."""
        rows = self._rows(head)
        return F.linear(hidden, self.recurrent.weight[rows], self.recurrent.bias[rows])

    # -- the equations ------------------------------------------------------------------------------------------
    def prior(self, previous_hidden: torch.Tensor) -> torch.Tensor:
        """p(z_t | h_{t-1}) = N(f_h(h_{t-1})): its [mean, logvar]."""
        return self._from_hidden("prior", previous_hidden)

    def posterior(self, previous_hidden: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """q(z_t | h_{t-1}, e_t) = N(f_q(h_{t-1}) + W_c e_t): its [mean, logvar]."""
        return self._from_hidden("posterior", previous_hidden) + self.posterior_context(context)

    def context_reader(self, memory: EncoderOutput) -> ContextReader:
        """e_t: the encoder's summary of the whole sentence, the same at every step."""
        return lambda previous_hidden: (memory.final, ())

    def extra_latents(self, z: torch.Tensor, noise: torch.Tensor | None) -> list[torch.Tensor]:
        """Latents drawn given z_t that enter the cell beside it (none here)."""
        return []

    def _equations(self, layout: PackedLayout, inputs: torch.Tensor, z_enc: torch.Tensor | None, mode: str,
                   memory: EncoderOutput | None, state: tuple[torch.Tensor, ...] | None = None
                   ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """The recurrence one step at a time, as the equations say, with autograd: any cell. Returns what
        :meth:`_recurrence` returns, from the same draws as the packed recurrence."""
        batch, steps = inputs.shape
        like = self.output.weight
        noise, extra_noise = self._draw_noise(steps, batch, like) if not mode.endswith("_mean") else (None, None)
        input_gates = layout.unpack(self._gate_inputs(layout, inputs, z_enc))  # x_t's and z_enc's share
        read_context = self.context_reader(memory) if mode.startswith("posterior") else None
        state = state if state is not None else self.cell.initial_state(batch, like)
        per_step = []
        for t in range(steps):
            previous_hidden, read = state[0], ()
            if read_context is None:
                params = self.prior(previous_hidden)
            else:
                context, read = read_context(previous_hidden)
                params = self.posterior(previous_hidden, context)
            z = draw(params, noise[t] if noise is not None else None)
            latents = torch.cat([z, *self.extra_latents(z, extra_noise[t] if extra_noise is not None else None)], 1)
            # h_t = cell([x_t, z_t, (c~_t,) z_enc], h_{t-1})
            state = self.cell.step(input_gates[:, t] + self.latent_projection(latents),
                                   self._from_hidden("gates", previous_hidden), state)
            per_step.append((*state, z, params, *read))
        packed = [layout.pack(torch.stack(values, dim=1)) for values in zip(*per_step)]
        states = tuple(packed[:len(state)])
        return states[0], states, tuple(packed[len(state):])

    # -- the recurrence -----------------------------------------------------------------------------------------
    def _recurrence(self, layout: PackedLayout, inputs: torch.Tensor, z_enc: torch.Tensor | None, mode: str,
                    memory: EncoderOutput | None, state: tuple[torch.Tensor, ...] | None = None
                    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """The recurrence over ``inputs`` from ``state`` (batch order; zeros by default), packed rows (N, ...):
        h_t, the cell's state, and the per-step latents [z_t, the parameters z_t was drawn from, ...].

        With a packed cell (the LSTM), the packed recurrence of :mod:`seqvae_zoo.kernels`; otherwise
        :meth:`_equations`."""
        if not self.cell.packed:
            return self._equations(layout, inputs, z_enc, mode, memory, state)
        head = self._head(layout, mode, memory, inputs.size(1), self.output.weight)
        weight, bias = self._step_weights(mode)
        if state is None:
            initial_h = initial_c = weight.new_zeros(layout.batch_size, self.hidden_size)
        else:
            initial_h, initial_c = (s.index_select(0, layout.order) for s in state)
        hidden, cells, *head_outputs = run_packed_lstm(layout, head, self._gate_inputs(layout, inputs, z_enc),
                                                       weight, bias, initial_h, initial_c)
        return hidden, (hidden, cells), tuple(head_outputs)

    def _gate_inputs(self, layout: PackedLayout, inputs: torch.Tensor, z_enc: torch.Tensor | None) -> torch.Tensor:
        """Gate pre-activations from x_t and z_enc, for every packed row at once: (N, gates).

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
        if self.z_enc_projection is not None:  # added into the gathered rows: one (N, gates) block less
            gate_inputs = self.z_enc_projection(z_enc).index_select(0, layout.sentence).add_(gate_inputs)
        return gate_inputs

    def _step_weights(self, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows of ``recurrent`` the packed loop reads in ``mode``: the gates, then the head's columns."""
        weight, bias = self.recurrent.weight, self.recurrent.bias
        if mode.startswith("posterior"):
            posterior_end = self._rows("query").stop
            return weight[:posterior_end], bias[:posterior_end]
        gates, prior = self._rows("gates"), self._rows("prior")
        return torch.cat([weight[gates], weight[prior]]), torch.cat([bias[gates], bias[prior]])

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
        hidden, _, latents = self._recurrence(layout, inputs, z_enc, mode, memory)
        return self._output(layout, hidden, latents, mode, return_attention)

    def _output(self, layout: PackedLayout, hidden: torch.Tensor, latents: tuple[torch.Tensor, ...],
                mode: str, return_attention: bool) -> DecoderOutput:
        z, params = latents[:2]
        output = DecoderOutput(hidden=layout.unpack(hidden), extras=self._extras(layout, z, latents, mode))
        if mode.startswith("posterior"):
            previous = layout.with_previous(hidden.new_zeros(layout.batch_size, self.hidden_size), hidden)
            prior = split_params(self.prior(previous))
            posterior = split_params(params)
            output.kl["z_t"] = layout.unpack(gaussian_kl(posterior.mean, posterior.logvar, prior.mean, prior.logvar))
            output.log_ratio = layout.unpack(gaussian_log_prob(z, prior.mean, prior.logvar)
                                             - gaussian_log_prob(z, posterior.mean, posterior.logvar))
        else:
            # The proposal is the prior itself (or its mean, for the paper's protocol): no KL, no weight.
            output.kl["z_t"] = output.log_ratio = hidden.new_zeros(layout.batch_size, layout.width)
        return output

    def _extras(self, layout: PackedLayout, z: torch.Tensor, latents: tuple[torch.Tensor, ...],
                mode: str) -> dict:
        """Per-step results auxiliary losses read (none here)."""
        return {}

    # -- generation (Algorithm 2) -------------------------------------------------------------------------------
    def start(self, z_enc: torch.Tensor | None, batch_size: int) -> tuple[torch.Tensor, ...]:
        return self.cell.initial_state(batch_size, self.output.weight)

    def step(self, tokens: torch.Tensor, state: tuple[torch.Tensor, ...], z_enc: torch.Tensor | None,
             latent_mode: str = "prior_sample") -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        check_mode(latent_mode)
        if latent_mode.startswith("posterior"):
            raise ValueError("generation draws z_t from the prior: use latent_mode 'prior_sample' or 'prior_mean'")
        layout = PackedLayout.from_lengths(torch.ones_like(tokens), 1)  # one step: packed order is batch order
        hidden, state, _ = self._recurrence(layout, tokens[:, None], z_enc, latent_mode, None, state)
        return self.logits(hidden), state

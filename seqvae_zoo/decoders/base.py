"""The decoder interface: teacher-forced scoring and step-by-step generation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seqvae_zoo.encoders.base import EncoderOutput

#: How a stochastic decoder draws its per-step latents z_t (and c~_t):
#: "posterior" samples q(z_t | ...) (training, ELBO and IW bounds); "posterior_mean" takes its mean (deterministic
#: sentence representations); "prior_mean" takes the prior's mean (the paper's reconstruction protocol);
#: "prior_sample" samples the prior (generation). Deterministic decoders ignore the mode.
LATENT_MODES = ("posterior", "posterior_mean", "prior_mean", "prior_sample")


@dataclass
class DecoderOutput:
    """Per-step results, all (B, T, ...) and unmasked: the model masks padded steps.

    hidden: states h_t fed to the output layer; kl: per-step KL terms by name, e.g. {"z_t": (B, T)};
    log_ratio: log p(z_t | h_{t-1}) - log q(z_t | ...) at the drawn z_t, per step, for importance weighting; None
    for a decoder without per-step latents, where the ratio is 0;
    extras: what auxiliary losses read (a decoder that provides "context_prior" gives "context_target" and
    "context_prior");
    attention: (B, T, S) attention weights when asked for.
    """

    hidden: torch.Tensor
    kl: dict[str, torch.Tensor] = field(default_factory=dict)
    log_ratio: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    attention: torch.Tensor | None = None


class OutputLayer(nn.Module):
    """``nn.Linear`` (initialization, logits, ``weight`` (out, in), ``bias``) with the weight's parameter held as its
    transpose, ``weight_t`` (in, out), contiguous.

    The fused output layer's weight gradient comes out in that layout (``seqvae_zoo.kernels.output``), so it reaches the
    parameter without a transposition; the backward product (P - Y) W reads W^T contiguously; and the optimizer gets
    a contiguous tensor (torch's fused CPU Adam copies any other at every step). The state dict holds ``weight_t``;
    a state dict of ``nn.Linear``'s (``weight``) loads as well.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        linear = nn.Linear(in_features, out_features)
        self.weight_t = nn.Parameter(linear.weight.detach().t().contiguous())
        self.bias = linear.bias

    @property
    def weight(self) -> torch.Tensor:
        """W (out, in): a view of ``weight_t``."""
        return self.weight_t.t()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return F.linear(inputs, self.weight, self.bias)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        if prefix + "weight" in state_dict and prefix + "weight_t" not in state_dict:  # nn.Linear's (out, in)
            state_dict[prefix + "weight_t"] = state_dict.pop(prefix + "weight").t()
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


class Decoder(nn.Module):
    """Predicts token t+1 from tokens up to t, z_enc and (for attentive posteriors) the encoder's states.

    Constructors take ``vocab_size``, ``pad_id``, ``z_enc_dim`` (0: no sentence latent) and ``memory_size`` (the
    encoder's state size, 0 without encoder) from the model; the rest comes from gin.

    ``reads_memory`` says whether the posterior reads the encoder's states; ``per_step_latents`` names the KL terms
    the decoder produces; ``provides`` names the capabilities its output offers other components, which an
    auxiliary loss's ``requires`` asks for (the model refuses a decoder without them when it is built). Generation
    goes through :meth:`start` and :meth:`step`, which never read the encoder.
    """

    reads_memory: bool = False
    per_step_latents: tuple[str, ...] = ()
    provides: frozenset[str] = frozenset()

    def __init__(self, vocab_size: int, hidden_size: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.output = OutputLayer(hidden_size, vocab_size)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor, z_enc: torch.Tensor | None,
                memory: EncoderOutput | None, mode: str = "posterior",
                return_attention: bool = False) -> DecoderOutput:  # pragma: no cover
        raise NotImplementedError

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.output(hidden)

    def start(self, z_enc: torch.Tensor | None, batch_size: int) -> tuple[torch.Tensor, ...]:  # pragma: no cover
        """The recurrent state before the first token; every tensor has the batch as first dimension."""
        raise NotImplementedError

    def step(self, tokens: torch.Tensor, state: tuple[torch.Tensor, ...], z_enc: torch.Tensor | None,
             latent_mode: str = "prior_sample") -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:  # pragma: no cover
        """Algorithm 2, one step: from tokens x_t (B,) and the state, give logits of x_{t+1} (B, V) and the state."""
        raise NotImplementedError


#: The capabilities a decoder may provide (``Decoder.provides``), each with what it means.
CAPABILITIES = {
    "context_prior": "the predicted attention context p(c~_t | z_t) and its target c_t, in the output's extras "
                     "\"context_prior\" and \"context_target\"",
}


def check_mode(mode: str) -> None:
    if mode not in LATENT_MODES:
        raise ValueError(f"unknown latent mode {mode!r}; use one of {', '.join(LATENT_MODES)}")

"""Importance-weighted log-likelihood (Burda et al. 2016): log p(x) >= log (1/K) sum_k p(x, z^k) / q(z^k | x).

The proposal is the model's own posterior over every latent it has: z_enc ~ q(z_enc | x) and, for stochastic
decoders, each z_t ~ q(z_t | ...). :attr:`seqvae_zoo.model.LossTerms.log_weight` is one log importance weight, so
K samples are K forward passes of each sentence, batched by repeating the sentence. The encoder's output does not
depend on the sample, so it is computed once per sentence and repeated.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from seqvae_zoo.encoders.base import EncoderOutput
from seqvae_zoo.model import SeqVAE

#: Bytes one token of one repeated row may cost in a scoring pass, per vocabulary entry: the float32 logits and their
#: log-softmax (2 x 4 bytes), were the output layer to hold them all at once. A bound: the rest of the pass is much
#: smaller, and an output layer that works in blocks holds less.
BYTES_PER_TOKEN_PER_TYPE = 8


def has_latents(model: SeqVAE) -> bool:
    """Whether the model has any latent variable; without one, log p(x) is exact and needs no sampling."""
    return bool(model.kl_terms)


def rows_per_pass(model: SeqVAE, max_length: int, memory_budget_bytes: int) -> int:
    """How many (sentence, sample) rows of this length one scoring pass may hold within the memory budget."""
    row_bytes = max_length * model.vocab_size * BYTES_PER_TOKEN_PER_TYPE
    return max(1, memory_budget_bytes // row_bytes)


def repeat_encoder_output(output: EncoderOutput, repeats: int) -> EncoderOutput:
    """Each sentence's encoding ``repeats`` times in a row (the layout of ``tensor.repeat_interleave``)."""
    return EncoderOutput(*(t.repeat_interleave(repeats, dim=0) for t in output[:3]),
                         output.posterior.map(lambda t: t.repeat_interleave(repeats, dim=0)))


class _PrecomputedEncoder(nn.Module):
    """Stands in for the encoder during one pass and gives an output computed beforehand."""

    def __init__(self, output: EncoderOutput):
        super().__init__()
        self.output = output

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        return self.output


@contextmanager
def encoder_output_reused(model: SeqVAE, output: EncoderOutput) -> Iterator[None]:
    """Within the block, ``model`` scores its input with ``output`` in place of running its encoder.

    :meth:`SeqVAE.forward` always encodes its input; for K copies of one sentence that is K identical encodings.
    """
    encoder = model.encoder
    model.encoder = _PrecomputedEncoder(output)
    try:
        yield
    finally:
        model.encoder = encoder


@torch.inference_mode()
def importance_log_weights(model: SeqVAE, tokens: torch.Tensor, lengths: torch.Tensor, samples: int,
                           memory_budget_bytes: int) -> torch.Tensor:
    """(B, samples) log importance weights log p(x, z^k) - log q(z^k | x), z^k drawn from the posterior.

    Sentences are repeated ``samples`` times, as many rows per pass as the memory budget allows; each group of
    sentences is trimmed to its own longest length.
    """
    model.check_batch(tokens, lengths)  # before the encoder reads them
    per_pass = rows_per_pass(model, int(lengths.max()), memory_budget_bytes)
    sentences_per_pass = min(tokens.size(0), per_pass)
    samples_per_pass = max(1, min(samples, per_pass // sentences_per_pass))
    groups = []
    for start in range(0, tokens.size(0), sentences_per_pass):
        group_lengths = lengths[start:start + sentences_per_pass]
        group_tokens = tokens[start:start + sentences_per_pass, :int(group_lengths.max())]
        encoded = model.encoder(group_tokens, group_lengths) if model.encoder is not None else None
        weights = []
        for done in range(0, samples, samples_per_pass):
            count = min(samples_per_pass, samples - done)
            repeated = group_tokens.repeat_interleave(count, dim=0), group_lengths.repeat_interleave(count, dim=0)
            if encoded is None:
                terms = model(*repeated, latent_mode="posterior")
            else:
                with encoder_output_reused(model, repeat_encoder_output(encoded, count)):
                    terms = model(*repeated, latent_mode="posterior")
            weights.append(terms.log_weight.view(-1, count))
        groups.append(torch.cat(weights, dim=1))
    return torch.cat(groups, dim=0)


def importance_log_likelihood(model: SeqVAE, tokens: torch.Tensor, lengths: torch.Tensor, samples: int,
                              memory_budget_bytes: int) -> torch.Tensor:
    """(B,) the K-sample importance-weighted estimate of log p(x) (a lower bound in expectation, tightening with
    K). A model without latents gives its exact log-likelihood in one pass: every sample would be the same."""
    if not has_latents(model):
        with torch.inference_mode():
            return -model(tokens, lengths, latent_mode="posterior").nll
    log_weights = importance_log_weights(model, tokens, lengths, samples, memory_budget_bytes)
    return torch.logsumexp(log_weights.double(), dim=1) - math.log(samples)

"""Importance-weighted log-likelihood (Burda et al. 2016): log p(x) >= log (1/K) sum_k p(x, z^k) / q(z^k | x).

The proposal is the model's own posterior over every latent it has: z_enc ~ q(z_enc | x) and, for stochastic
decoders, each z_t ~ q(z_t | ...). :attr:`seqvae_zoo.model.LossTerms.log_weight` is one log importance weight, so
K samples are K forward passes of each sentence, batched by repeating the sentence: a pass scores many (sentence,
sample) rows at once. What does not depend on the sample is computed once: the encoder runs once per sentence and its
output is repeated, and the decoder's input projection is computed once per word type
(:meth:`seqvae_zoo.decoders.stochastic.StochasticDecoder._gate_inputs`); the output layer computes its logits a block
of rows at a time (:func:`seqvae_zoo.kernels.output.linear_cross_entropy`), so a pass never holds the logits of all
its rows.

Sample k of a batch is drawn from a random stream of its own, seeded from the caller's random state: z_enc^k and the
noise of every z_t^k (and c~_t^k) of every sentence of the batch. How samples and sentences are grouped into passes
(which the memory budget decides) therefore changes no draw and no estimate.
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
#: log-softmax (2 x 4 bytes), were the output layer to hold them all at once. A bound: the output layer works in
#: blocks and holds less, but passes sized by a measured bound instead (256 or 2,048 rows where this gives about 600)
#: ran slower on PTB (benchmarks/iw_nll.py, alternated in one run), so passes stay this size.
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


def select_encoder_output(output: EncoderOutput, rows: slice) -> EncoderOutput:
    """The encoding of the sentences ``rows`` of a batch."""
    return EncoderOutput(*(t[rows] for t in output[:3]), output.posterior.map(lambda t: t[rows]))


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


@contextmanager
def step_noise_given(model: SeqVAE, noise: tuple[torch.Tensor | None, ...] | None) -> Iterator[None]:
    """Within the block, the stochastic decoder's per-step noise (z_t's and its extra latents', each (T, rows, size))
    is ``noise`` (its first steps) instead of fresh draws; ``noise`` None leaves the decoder as it is."""
    if noise is None:
        yield
        return
    decoder = model.decoder

    def given(steps: int, batch: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return tuple(n[:steps] if n is not None else None for n in noise)

    replaced = vars(decoder).get("_draw_noise")  # an instance attribute: the class's method stays as it is
    decoder._draw_noise = given
    try:
        yield
    finally:
        if replaced is None:
            del decoder._draw_noise
        else:
            decoder._draw_noise = replaced


def _sample_draws(model: SeqVAE, encoded: EncoderOutput | None, steps: int, batch: int, seed: int,
                  like: torch.Tensor) -> tuple[torch.Tensor | None, tuple[torch.Tensor | None, ...] | None]:
    """One sample's draws for a whole batch from the random stream ``seed``: z_enc ~ q(z_enc | x) (None without an
    encoder) and the per-step noise of a stochastic decoder (None without per-step latents), drawn as the model
    draws them."""
    on_cuda = like.device.type == "cuda"
    with torch.random.fork_rng(devices=[like.device] if on_cuda else []):
        torch.default_generator.manual_seed(seed)
        if on_cuda:
            torch.cuda.default_generators[like.device.index if like.device.index is not None
                                          else torch.cuda.current_device()].manual_seed(seed)
        z_enc = encoded.posterior.rsample() if encoded is not None else None
        noise = model.decoder._draw_noise(steps, batch, like) if model.decoder.per_step_latents else None
    return z_enc, noise


def _rows_of(draws: list[torch.Tensor | None], sentences: slice, batch_dim: int) -> torch.Tensor | None:
    """The draws of several samples for the sentences ``sentences``, stacked as the pass lays out its rows: each
    sentence's samples in a row (sentence-major), along ``batch_dim``."""
    if draws[0] is None:
        return None
    stacked = torch.stack([d.narrow(batch_dim, sentences.start, sentences.stop - sentences.start) for d in draws],
                          dim=batch_dim + 1)
    return stacked.flatten(batch_dim, batch_dim + 1)


@torch.inference_mode()
def importance_log_weights(model: SeqVAE, tokens: torch.Tensor, lengths: torch.Tensor, samples: int,
                           memory_budget_bytes: int) -> torch.Tensor:
    """(B, samples) log importance weights log p(x, z^k) - log q(z^k | x), z^k drawn from the posterior.

    The encoder runs once over the batch; the (sentence, sample) rows are then scored as many per pass as the memory
    budget allows (:func:`rows_per_pass`), each group of sentences trimmed to its own longest length. Sample k's draws
    come from its own seed, whatever the passes.
    """
    model.check_batch(tokens, lengths)  # before the encoder reads them
    width = int(lengths.max())
    tokens = tokens[:, :width]
    batch = tokens.size(0)
    encoded = model.encoder(tokens, lengths) if model.encoder is not None else None
    seeds = torch.randint(2 ** 62, (samples,)).tolist()  # from the caller's random state
    like = model.decoder.output.weight
    per_pass = rows_per_pass(model, width, memory_budget_bytes)
    sentences_per_pass = min(batch, per_pass)
    samples_per_pass = max(1, min(samples, per_pass // sentences_per_pass))
    groups = []
    for start in range(0, batch, sentences_per_pass):
        rows = slice(start, min(batch, start + sentences_per_pass))
        group_lengths = lengths[rows]
        group_tokens = tokens[rows, :int(group_lengths.max())]
        group_encoded = select_encoder_output(encoded, rows) if encoded is not None else None
        weights = []
        for done in range(0, samples, samples_per_pass):
            count = min(samples_per_pass, samples - done)
            draws = [_sample_draws(model, encoded, width, batch, seeds[k], like) for k in range(done, done + count)]
            z_enc = _rows_of([z for z, _ in draws], rows, 0)
            noise = None
            if draws[0][1] is not None:
                noise = tuple(_rows_of([n[i] for _, n in draws], rows, 1) for i in range(len(draws[0][1])))
            repeated = group_tokens.repeat_interleave(count, dim=0), group_lengths.repeat_interleave(count, dim=0)
            with step_noise_given(model, noise):
                if group_encoded is None:
                    terms = model(*repeated, latent_mode="posterior")
                else:
                    with encoder_output_reused(model, repeat_encoder_output(group_encoded, count)):
                        terms = model(*repeated, latent_mode="posterior", z_enc=z_enc)
            weights.append(terms.log_weight.view(-1, count))
        groups.append(torch.cat(weights, dim=1))
    return torch.cat(groups, dim=0)


def log_mean_exp(log_weights: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k exp(w_k) over the last dimension, in float64 (K weights that differ by hundreds of nats)."""
    return torch.logsumexp(log_weights.double(), dim=-1) - math.log(log_weights.size(-1))


def importance_log_likelihood(model: SeqVAE, tokens: torch.Tensor, lengths: torch.Tensor, samples: int,
                              memory_budget_bytes: int) -> torch.Tensor:
    """(B,) the K-sample importance-weighted estimate of log p(x) (a lower bound in expectation, tightening with
    K). A model without latents gives its exact log-likelihood in one pass: every sample would be the same."""
    if not has_latents(model):
        with torch.inference_mode():
            return -model(tokens, lengths, latent_mode="posterior").nll
    return log_mean_exp(importance_log_weights(model, tokens, lengths, samples, memory_budget_bytes))

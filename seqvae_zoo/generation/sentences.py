"""Sentences from a trained model: new ones with z_enc from the prior (Algorithm 2), reconstructions with z_enc from
the posterior of given sentences, and interpolations between the posteriors of two sentences."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from seqvae_zoo.data.batching import Batch, collate
from seqvae_zoo.evaluation.protocol import seeded
from seqvae_zoo.generation.decoding import DecodingOptions, GenerationError, decode
from seqvae_zoo.latents.base import LatentDistribution
from seqvae_zoo.latents.sphere import DirectionalDistribution
from seqvae_zoo.model import SeqVAE

INTERPOLATIONS = ("linear", "spherical")


def encode_sentences(vocab, sentences: Sequence[Sequence[str]], purpose: str) -> Batch:
    """Given tokenized sentences as one padded batch; an empty sentence is refused (it has nothing to encode)."""
    for number, words in enumerate(sentences, start=1):
        if not words:
            raise GenerationError(f"sentence {number} is empty: {purpose} needs at least one word per sentence")
    if not sentences:
        raise GenerationError(f"no sentence given: {purpose} needs at least one")
    return collate(vocab.encode_all(sentences), vocab.pad_id)


def _device(model: SeqVAE) -> torch.device:
    return next(model.parameters()).device


def _check_has_latent(model: SeqVAE, purpose: str) -> None:
    if model.encoder is None:
        raise GenerationError(f"{purpose} needs a sentence latent z_enc, and this model has none (no encoder, "
                              "like the lstm preset): generate new sentences instead")


@torch.inference_mode()
def posterior_of(model: SeqVAE, batch: Batch) -> LatentDistribution:
    """q(z_enc | x) of each sentence of ``batch``, the model in evaluation mode."""
    model.eval()
    return model.encoder(batch.tokens.to(_device(model)), batch.lengths.to(_device(model))).posterior


def posterior_latents(model: SeqVAE, batch: Batch, sample: bool = False) -> torch.Tensor:
    """z_enc of each sentence: the mean of q(z_enc | x), or a draw from it."""
    posterior = posterior_of(model, batch)
    return posterior.rsample() if sample else posterior.mean


def interpolation_path(start: torch.Tensor, end: torch.Tensor, steps: int, how: str = "linear") -> torch.Tensor:
    """``steps`` points from ``start`` to ``end`` (both included), (steps, D): on the straight line, or on the great
    circle between them with their norms interpolated (spherical; for a Gaussian prior it stays where the prior's
    mass is)."""
    if how not in INTERPOLATIONS:
        raise GenerationError(f"interpolation {how!r} is unknown: use one of {', '.join(INTERPOLATIONS)}")
    if steps < 2:
        raise GenerationError(f"an interpolation needs at least 2 steps (its two ends), got {steps}")
    t = torch.linspace(0, 1, steps, dtype=start.dtype, device=start.device)[:, None]
    if how == "linear":
        return (1 - t) * start + t * end
    start_norm, end_norm = start.norm(), end.norm()
    cosine = (start @ end / (start_norm * end_norm).clamp(min=1e-12)).clamp(-1.0, 1.0)
    angle = torch.arccos(cosine)
    if angle < 1e-6:  # (anti)parallel ends: the great circle is not unique or is a point; the line is
        return (1 - t) * start + t * end
    direction = (torch.sin((1 - t) * angle) * start / start_norm + torch.sin(t * angle) * end / end_norm)
    return direction / torch.sin(angle) * ((1 - t) * start_norm + t * end_norm)


def _decoded(model: SeqVAE, vocab, latents: Callable[[], torch.Tensor | None], count: int,
             options: DecodingOptions, seed: int) -> list[list[str]]:
    """Sentences decoded from the z_enc ``latents()`` gives; its draws and the decoder's follow ``seed``."""
    device = _device(model)
    with seeded(seed, device):
        z_enc = latents()
        ids = decode(model, z_enc, count, vocab.eos_id, options, torch.Generator(device=device).manual_seed(seed))
    return [vocab.decode(row) for row in ids]


def generate(model: SeqVAE, vocab, count: int, options: DecodingOptions = DecodingOptions(),
             seed: int = 0) -> list[list[str]]:
    """``count`` new sentences: z_enc drawn from the prior, then the decoder alone (Algorithm 2 with the default
    options: z_t from the per-step prior, c~_t predicted, the most likely word at each step)."""
    if count < 1:
        raise GenerationError(f"the number of sentences to generate must be at least 1, got {count}")
    return _decoded(model, vocab, lambda: model.latent_prior.sample(count) if model.encoder is not None else None,
                    count, options, seed)


def reconstruct(model: SeqVAE, vocab, sentences: Sequence[Sequence[str]],
                options: DecodingOptions = DecodingOptions(), seed: int = 0,
                sample_posterior: bool = False) -> list[list[str]]:
    """Each sentence decoded back from its own z_enc (the posterior's mean, or a draw from it); the decoder does
    not see the sentence otherwise."""
    _check_has_latent(model, "reconstruction")
    batch = encode_sentences(vocab, sentences, "reconstruction")
    return _decoded(model, vocab, lambda: posterior_latents(model, batch, sample_posterior), len(sentences),
                    options, seed)


def interpolate(model: SeqVAE, vocab, first: Sequence[str], second: Sequence[str], steps: int = 5,
                how: str | None = None, options: DecodingOptions = DecodingOptions(),
                seed: int = 0) -> list[list[str]]:
    """Sentences decoded along the path between the posterior means of two sentences, ends included. ``how``
    None: spherical for a latent on the unit sphere (vMF), whose straight line would cut through the sphere, where
    no latent lies; linear otherwise."""
    _check_has_latent(model, "interpolation")
    posterior = posterior_of(model, encode_sentences(vocab, [first, second], "interpolation"))
    if how is None:
        how = "spherical" if isinstance(posterior, DirectionalDistribution) else "linear"
    path = interpolation_path(posterior.mean[0], posterior.mean[1], steps, how)
    return _decoded(model, vocab, lambda: path, steps, options, seed)

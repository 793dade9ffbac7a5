"""From next-token distributions to sentences: greedy (the paper's Algorithm 2), sampling with temperature, top-k
and top-p, and beam search.

Every strategy drives the decoder through :meth:`Decoder.start` and :meth:`Decoder.step` only, so nothing reads the
encoder: the per-step latents z_t come from their prior (sampled, or at its mean with ``latent_mode="prior_mean"``)
and the attentive decoder's context c~_t is predicted from z_t. Token choices draw from their own generator, so the
latents a decoder draws do not depend on the strategy: beam search with one beam and sampling with top-k 1 give
exactly the greedy sentences.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seqvae_zoo.errors import UserError
from seqvae_zoo.model import SeqVAE

STRATEGIES = ("greedy", "sample", "beam")
#: Per-step latent modes that generation may use: the prior's draws (Algorithm 2) or its mean.
GENERATION_LATENT_MODES = ("prior_sample", "prior_mean")


class GenerationError(UserError):
    """Generation was asked for with settings or sentences it cannot use."""


@dataclass(frozen=True)
class DecodingOptions:
    """How to pick each next token. ``top_k`` 0 and ``top_p`` 1 leave the distribution whole; ``length_penalty``
    ranks finished beams by total log-probability / length ** length_penalty (0: the plain total)."""

    strategy: str = "greedy"
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    beam_size: int = 5
    length_penalty: float = 1.0
    max_length: int = 50
    latent_mode: str = "prior_sample"

    def __post_init__(self):
        problems = []
        if self.strategy not in STRATEGIES:
            problems.append(f"strategy {self.strategy!r} is unknown: use one of {', '.join(STRATEGIES)}")
        if self.latent_mode not in GENERATION_LATENT_MODES:
            problems.append(f"latent mode {self.latent_mode!r} cannot generate (there is no sentence to infer z_t "
                            f"from): use one of {', '.join(GENERATION_LATENT_MODES)}")
        if not self.temperature > 0:
            problems.append(f"temperature must be positive, got {self.temperature}")
        if self.top_k < 0:
            problems.append(f"top-k must be 0 (no cut) or positive, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            problems.append(f"top-p must be in (0, 1], got {self.top_p}")
        if self.beam_size < 1:
            problems.append(f"the beam size must be at least 1, got {self.beam_size}")
        if self.max_length < 1:
            problems.append(f"the maximum length must be at least 1, got {self.max_length}")
        if problems:
            raise GenerationError("; ".join(problems))


@torch.inference_mode()
def decode(model: SeqVAE, z_enc: torch.Tensor | None, count: int, eos_id: int, options: DecodingOptions,
           generator: torch.Generator | None = None) -> list[list[int]]:
    """``count`` sentences, one per row of ``z_enc`` (None for a model without a sentence latent), as token ids
    without end-of-sentence. ``generator`` drives the token choices of sampling (on the model's device)."""
    model.eval()
    if options.strategy == "beam":
        return _beam_search(model, z_enc, count, eos_id, options)
    decoder = model.decoder
    state = decoder.start(z_enc, count)
    tokens = torch.full((count,), model.bos_id, dtype=torch.long, device=model.decoder.output.weight.device)
    finished = torch.zeros_like(tokens, dtype=torch.bool)
    chosen = []
    for _ in range(options.max_length):
        logits, state = decoder.step(tokens, state, z_enc, options.latent_mode)
        logits = _never_generated(logits, model)
        if options.strategy == "greedy":
            tokens = logits.argmax(dim=-1)
        else:
            probabilities = torch.softmax(_truncate(logits / options.temperature, options.top_k, options.top_p), -1)
            tokens = torch.multinomial(probabilities, 1, generator=generator).squeeze(1)
        tokens = tokens.masked_fill(finished, model.pad_id)
        chosen.append(tokens)
        finished |= tokens == eos_id
        if finished.all():
            break
    return [_until_eos(row, eos_id, model.pad_id) for row in torch.stack(chosen, dim=1).tolist()]


def _never_generated(logits: torch.Tensor, model: SeqVAE) -> torch.Tensor:
    """Padding and begin-of-sentence are never a next token."""
    logits = logits.clone()
    logits[:, [model.pad_id, model.bos_id]] = float("-inf")
    return logits


def _truncate(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Keep the ``top_k`` most likely tokens, then the smallest set whose probability reaches ``top_p``."""
    if 0 < top_k < logits.size(-1):
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1:
        ordered, order = logits.sort(dim=-1, descending=True)
        before = torch.softmax(ordered, dim=-1).cumsum(dim=-1) - torch.softmax(ordered, dim=-1)
        drop = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, order, before >= top_p)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def _until_eos(ids: list[int], eos_id: int, pad_id: int) -> list[int]:
    words = []
    for token in ids:
        if token in (eos_id, pad_id):
            break
        words.append(token)
    return words


def _beam_search(model: SeqVAE, z_enc: torch.Tensor | None, count: int, eos_id: int,
                 options: DecodingOptions) -> list[list[int]]:
    """Beams of ``beam_size`` hypotheses per sentence, each extended by its best next tokens; a hypothesis that
    has ended keeps its score and only extends with end-of-sentence. The best ending, after the length penalty,
    is returned."""
    beam, decoder = options.beam_size, model.decoder
    device = decoder.output.weight.device
    rows = count * beam
    z_rows = z_enc.repeat_interleave(beam, dim=0) if z_enc is not None else None
    state = decoder.start(z_rows, rows)
    tokens = torch.full((rows,), model.bos_id, dtype=torch.long, device=device)
    scores = torch.full((count, beam), float("-inf"), device=device)
    scores[:, 0] = 0.0  # the beams start identical: only one of them may grow at first
    lengths = torch.zeros(count, beam, device=device)
    finished = torch.zeros(count, beam, dtype=torch.bool, device=device)
    history = torch.empty(rows, 0, dtype=torch.long, device=device)
    for _ in range(options.max_length):
        logits, state = decoder.step(tokens, state, z_rows, options.latent_mode)
        log_probs = torch.log_softmax(_never_generated(logits, model), dim=-1).view(count, beam, -1)
        ended = torch.full_like(log_probs[0, 0], float("-inf"))
        ended[eos_id] = 0.0
        log_probs = torch.where(finished[..., None], ended, log_probs)
        candidates = (scores[..., None] + log_probs).view(count, -1)
        scores, flat = candidates.topk(beam, dim=-1)
        parents, tokens = flat // log_probs.size(-1), flat % log_probs.size(-1)
        rows_from = (parents + torch.arange(count, device=device)[:, None] * beam).view(-1)
        state = tuple(tensor.index_select(0, rows_from) for tensor in state)
        lengths = lengths.gather(1, parents) + (~finished.gather(1, parents)).float()
        finished = finished.gather(1, parents) | (tokens == eos_id)
        tokens = tokens.view(-1)
        history = torch.cat([history.index_select(0, rows_from), tokens[:, None]], dim=1)
        if finished.all():
            break
    ranked = scores / lengths.clamp(min=1) ** options.length_penalty
    best = ranked.argmax(dim=-1) + torch.arange(count, device=device) * beam
    return [_until_eos(row, eos_id, model.pad_id) for row in history[best].tolist()]

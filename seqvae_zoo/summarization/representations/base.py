"""The sentence-representation interface: a topic's sentences as distributions, and the topic as one distribution.

Neural representations give each sentence a distribution of a latent family (a diagonal Gaussian, a von Mises-Fisher
distribution; a point, such as an LSTM state, is a unit-variance Gaussian). The topic is the member of that family
closest to the equal-weight mixture of its sentences' distributions, matched by moments (for a Gaussian the
mixture's mean and variance). The alternative, running the model over the topic's text, would feed
a sentence model some 11,000 words of 25 documents, far longer than anything it was trained on, or a truncation of
them that keeps only the first documents; the mixture weighs every sentence alike and needs no extra pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, NamedTuple, Sequence, Union

import torch

from seqvae_zoo.data.batching import collate
from seqvae_zoo.errors import UserError
from seqvae_zoo.latents.base import LatentDistribution, concatenate, stack


class Categorical(NamedTuple):
    """Discrete distributions, ``probs`` (..., K) with rows summing to 1 (LDA's topic mixtures)."""

    probs: torch.Tensor

    def index(self, item) -> "Categorical":
        return Categorical(self.probs[item])


Distribution = Union[LatentDistribution, Categorical]


@dataclass
class TopicRepresentation:
    """A topic's sentences (``sentences`` with a leading dimension N) and the topic itself (no leading dimension)."""

    sentences: Distribution
    topic: Distribution


def mixture(first: Distribution, second: Distribution, weight: float) -> Distribution:
    """``weight`` of ``first`` and ``1 - weight`` of ``second``, as one distribution of their kind (a latent
    family's by moment matching)."""
    if isinstance(first, Categorical) and isinstance(second, Categorical):
        return Categorical(weight * first.probs + (1 - weight) * second.probs)
    return stack([first, second]).moment_matched(torch.tensor([weight, 1 - weight]))


class SentenceRepresentation:
    """Base of every registered representation.

    Built with the trained model and its vocabulary (representations that need no model, such as LDA, get None)
    plus gin's options. :meth:`fit` learns from training sentences where the representation has something to learn;
    :meth:`represent` gives a topic's :class:`TopicRepresentation`. Subclasses implement
    :meth:`sentence_distributions` (the topic is then their moment-matched mixture) or :meth:`represent` itself.
    """

    #: False for representations that learn their own model in :meth:`fit` (the LDA baseline).
    requires_model = True

    def __init__(self, model=None, vocab=None):
        if self.requires_model and (model is None or vocab is None):
            raise UserError(f"representation {type(self).registry_name!r} reads a trained model: give a checkpoint")
        self.model, self.vocab = model, vocab

    @classmethod
    def supports(cls, model) -> bool:
        """Whether this representation can read ``model`` (e.g. only VRAE-SA's decoder predicts a context)."""
        return True

    def fit(self, sentences: Sequence[Sequence[str]]) -> None:
        """Learn from tokenized training sentences; most representations have nothing to learn."""

    def sentence_distributions(self, sentences: Sequence[Sequence[str]]) -> Distribution:
        raise NotImplementedError

    def topic_distribution(self, sentences: LatentDistribution) -> LatentDistribution:
        return sentences.moment_matched()

    def represent(self, sentences: Sequence[Sequence[str]]) -> TopicRepresentation:
        distributions = self.sentence_distributions(sentences)
        return TopicRepresentation(distributions, self.topic_distribution(distributions))


class ModelRepresentation(SentenceRepresentation):
    """A representation read from a trained SeqVAE, in eval mode without gradients, sentences batched by length.

    Sentences longer than ``max_words`` are cut (the models are trained on sentences of newswire length).
    Subclasses implement :meth:`encode_batch`.
    """

    def __init__(self, model=None, vocab=None, batch_size: int = 64, max_words: int = 100):
        super().__init__(model, vocab)
        self.batch_size, self.max_words = batch_size, max_words

    def encode_batch(self, tokens: torch.Tensor, lengths: torch.Tensor) -> LatentDistribution:
        """Distributions (B of them) of a batch: ``tokens`` (B, T) with end-of-sentence, ``lengths`` (B,) counting
        it."""
        raise NotImplementedError

    def sentence_distributions(self, sentences: Sequence[Sequence[str]]) -> LatentDistribution:
        device = next(self.model.parameters()).device
        order, parts = [], []
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for indices, batch in self._batches(sentences):
                    distributions = self.encode_batch(batch.tokens.to(device), batch.lengths.to(device))
                    parts.append(distributions.map(lambda parameter: parameter.cpu()))
                    order.extend(indices)
        finally:
            self.model.train(was_training)
        return concatenate(parts).index(torch.argsort(torch.tensor(order)))  # back in the sentences' order

    def _batches(self, sentences: Sequence[Sequence[str]]) -> Iterator[tuple[list[int], object]]:
        encoded = [self.vocab.encode(list(words)[:self.max_words]) for words in sentences]
        order = sorted(range(len(encoded)), key=lambda index: len(encoded[index]))
        for start in range(0, len(order), self.batch_size):
            indices = order[start:start + self.batch_size]
            yield indices, collate([encoded[index] for index in indices], self.vocab.pad_id)

    def run_model(self, tokens: torch.Tensor, lengths: torch.Tensor):
        """The encoder's output (None without encoder) and the teacher-forced decoder's output, deterministically:
        z_enc and every per-step latent at their posterior means."""
        model = self.model
        mask = torch.arange(tokens.size(1), device=tokens.device)[None, :] < lengths[:, None]
        memory = model.encoder(tokens, lengths) if model.encoder is not None else None
        z_enc = memory.posterior.mean if memory is not None else None
        output = model.decoder(model.decoder_inputs(tokens, mask), lengths, z_enc,
                               memory if model.decoder.reads_memory else None, "posterior_mean")
        return memory, output


def last_step(values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``values`` (B, T, ...) at each sentence's last real step."""
    return values[torch.arange(values.size(0), device=values.device), lengths - 1]

"""The ranker interface: order a topic's candidate sentences, best first."""

from __future__ import annotations

from dataclasses import dataclass

from seqvae_zoo.data.duc2007 import Sentence, Topic
from seqvae_zoo.summarization.representations.base import Distribution, TopicRepresentation


@dataclass
class RankingInput:
    """What a ranker sees of one topic: all its ``sentences`` (the representation covers them all, in this order),
    the indices of those that may be chosen (``candidates``), the representation (None for rankers that use
    none) and, for rankers that read the topic's question, its representation (``query``: the distribution of its
    title and narrative, of the same kind as the topic's)."""

    topic: Topic
    sentences: list[Sentence]
    candidates: list[int]
    representation: TopicRepresentation | None
    query: Distribution | None = None


class Ranker:
    """Base of every registered ranker; options come from gin (``rankers.kl.direction = "symmetric"``)."""

    #: False for baselines that order sentences by position or chance.
    uses_representation = True
    #: True for rankers that read the topic's question (``RankingInput.query``).
    uses_query = False

    def rank(self, item: RankingInput) -> list[int]:
        """``item.candidates`` reordered, best first."""
        raise NotImplementedError

"""Query-focused ranking: DUC 2005-2007 ask a question of each topic, and the paper's ranking ignores it."""

from __future__ import annotations

from seqvae_zoo.errors import UserError
from seqvae_zoo.summarization import RANKERS
from seqvae_zoo.summarization.rankers.base import RankingInput
from seqvae_zoo.summarization.rankers.kl import KLRanker
from seqvae_zoo.summarization.representations.base import mixture


@RANKERS.register("query")
class QueryRanker(KLRanker):
    """Smallest KL divergence to a mixture of the question and the documents first.

    The target is ``weight`` of the question's distribution (its title and narrative, represented like the
    sentences) and ``1 - weight`` of the topic's (all its documents' sentences): at 0 this is the paper's ``kl``
    ranking, at 1 sentences are ranked by closeness to the question alone, which a question of two or three
    sentences represents far less surely than 25 documents do. ``direction`` is as for ``kl``."""

    uses_query = True

    def __init__(self, weight: float = 0.5, direction: str = "sentence_to_topic"):
        if not 0.0 <= weight <= 1.0:
            raise UserError(f"rankers.query.weight must be in [0, 1]; got {weight}")
        super().__init__(direction)
        self.weight = weight

    def rank(self, item: RankingInput) -> list[int]:
        return self.closest_first(item, mixture(item.query, item.representation.topic, self.weight))

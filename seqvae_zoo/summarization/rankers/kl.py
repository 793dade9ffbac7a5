"""The paper's ranking: sentences whose distribution is closest in KL divergence to the topic's come first."""

from __future__ import annotations

import torch

from seqvae_zoo.errors import UserError
from seqvae_zoo.latents.base import LatentDistribution
from seqvae_zoo.summarization import RANKERS
from seqvae_zoo.summarization.rankers.base import Ranker, RankingInput
from seqvae_zoo.summarization.representations.base import Categorical, Distribution

DIRECTIONS = ("sentence_to_topic", "topic_to_sentence", "symmetric")


def kl_divergence(p: Distribution, q: Distribution) -> torch.Tensor:
    """KL(p || q) over the last dimension, broadcast (a topic against many sentences); both of one kind."""
    if isinstance(p, LatentDistribution) and type(p) is type(q):
        return p.kl(q)
    if isinstance(p, Categorical) and isinstance(q, Categorical):
        log_p, log_q = p.probs.clamp_min(1e-30).log(), q.probs.clamp_min(1e-30).log()
        return (p.probs * (log_p - log_q)).sum(dim=-1)
    raise TypeError(f"no KL divergence between {type(p).__name__} and {type(q).__name__}")


@RANKERS.register("kl")
class KLRanker(Ranker):
    """Smallest KL divergence between sentence and topic first (the paper's ranking).

    ``direction`` "sentence_to_topic" (default) is KL(sentence || topic), which measures the distance between
    means in the topic's spread, the same yardstick for every sentence; "topic_to_sentence" measures it in each
    sentence's own spread, so sentences with broad (uncertain) distributions come first; "symmetric" adds both.
    The paper does not say which it used."""

    def __init__(self, direction: str = "sentence_to_topic"):
        if direction not in DIRECTIONS:
            raise UserError(f"rankers.kl.direction must be one of {', '.join(DIRECTIONS)}; got {direction!r}")
        self.direction = direction

    def rank(self, item: RankingInput) -> list[int]:
        return self.closest_first(item, item.representation.topic)

    def closest_first(self, item: RankingInput, target: Distribution) -> list[int]:
        """The candidates by their KL divergence to ``target`` (in this ranker's direction), smallest first."""
        candidates = item.representation.sentences.index(torch.tensor(item.candidates, dtype=torch.long))
        scores = torch.zeros(len(item.candidates))
        if self.direction != "topic_to_sentence":
            scores += kl_divergence(candidates, target)
        if self.direction != "sentence_to_topic":
            scores += kl_divergence(target, candidates)
        return [item.candidates[index] for index in torch.argsort(scores, stable=True).tolist()]

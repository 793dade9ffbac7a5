"""The random baseline: candidates in a random order (the pipeline averages it over seeds)."""

from __future__ import annotations

import random

from seqvae_zoo.summarization import RANKERS
from seqvae_zoo.summarization.rankers.base import Ranker, RankingInput


@RANKERS.register("random")
class RandomRanker(Ranker):
    """A shuffle of the candidates, reproducible from ``seed`` and the topic's id."""

    uses_representation = False

    def __init__(self, seed: int = 0):
        self.seed = seed

    def rank(self, item: RankingInput) -> list[int]:
        order = list(item.candidates)
        random.Random(f"{self.seed}/{item.topic.id}").shuffle(order)
        return order

"""Cosine ranking: sentences whose representation points the same way as the topic's come first."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seqvae_zoo.latents.base import LatentDistribution
from seqvae_zoo.summarization import RANKERS
from seqvae_zoo.summarization.rankers.base import Ranker, RankingInput
from seqvae_zoo.summarization.representations.base import Distribution


def as_vectors(distribution: Distribution) -> torch.Tensor:
    """A latent family's mean (a Gaussian's mean, a vMF's direction), a categorical's probabilities."""
    return distribution.mean if isinstance(distribution, LatentDistribution) else distribution.probs


@RANKERS.register("cosine")
class CosineRanker(Ranker):
    """Largest cosine similarity between the sentence's vector (a latent's mean) and the topic's first."""

    def rank(self, item: RankingInput) -> list[int]:
        vectors = as_vectors(item.representation.sentences)[torch.tensor(item.candidates, dtype=torch.long)]
        similarity = F.cosine_similarity(vectors, as_vectors(item.representation.topic)[None, :], dim=-1)
        return [item.candidates[index] for index in torch.argsort(-similarity, stable=True).tolist()]

"""The LEAD baseline: newswire puts the gist first."""

from __future__ import annotations

from seqvae_zoo.summarization import RANKERS
from seqvae_zoo.summarization.rankers.base import Ranker, RankingInput


@RANKERS.register("lead")
class LeadRanker(Ranker):
    """The first sentence of every document, newest document first; then the second sentences, and so on."""

    uses_representation = False

    def rank(self, item: RankingInput) -> list[int]:
        newest_first = sorted(item.topic.documents, key=lambda document: document.order_key, reverse=True)
        age = {document.docno: rank for rank, document in enumerate(newest_first)}
        return sorted(item.candidates,
                      key=lambda index: (item.sentences[index].position, age[item.sentences[index].docno]))

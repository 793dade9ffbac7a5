"""The query-focused ranker: the topic's question (title and narrative) as a distribution mixed with the
documents', and the mixture weight's two ends (the paper's ranking at 0, the question alone at 1)."""

import pytest
import torch

from seqvae_zoo.data.base import DataError
from seqvae_zoo.data.duc2007 import Document, Sentence, Topic, tokenize
from seqvae_zoo.errors import UserError
from seqvae_zoo.latents.gaussian import GaussianLatent
from seqvae_zoo.summarization import RANKERS, Summarizer, summarize_topics
from seqvae_zoo.summarization.rankers.base import RankingInput
from seqvae_zoo.summarization.representations.base import (Categorical, SentenceRepresentation,
                                                           TopicRepresentation, mixture)
from seqvae_zoo.summarization.selection import SelectionSettings


def test_the_question_is_the_title_then_the_narratives_sentences():
    topic = Topic("D0601A", "Harbor budget", "Describe the harbor budget. What will it repair?", [])
    assert topic.query() == [["harbor", "budget"], ["describe", "the", "harbor", "budget"],
                             ["what", "will", "it", "repair"]]
    with pytest.raises(DataError, match="topic D0602B has an empty <title> and <narr>"):
        Topic("D0602B", "", " ", []).query()


def test_a_mixture_keeps_the_first_two_moments():
    first = GaussianLatent(torch.zeros(2), torch.zeros(2))
    second = GaussianLatent(torch.full((2,), 2.0), torch.zeros(2))
    mixed = mixture(first, second, 0.5)
    assert torch.allclose(mixed.mean, torch.ones(2)) and torch.allclose(mixed.logvar.exp(), torch.full((2,), 2.0))
    assert torch.allclose(mixture(first, second, 1.0).mean, first.mean)
    assert torch.allclose(mixture(Categorical(torch.tensor([1.0, 0.0])), Categorical(torch.tensor([0.0, 1.0])),
                                  0.25).probs, torch.tensor([0.25, 0.75]))


def ranking_input(query_at: float) -> RankingInput:
    """Five candidates at 0..4 on a line (unit variance); the documents' topic at 0, the question at ``query_at``."""
    points = torch.arange(5.0)[:, None]
    sentences = GaussianLatent(points, torch.zeros_like(points))
    topic = GaussianLatent(torch.zeros(1), torch.zeros(1))
    return RankingInput(Topic("D0601A", "t", "n", []), [], [0, 1, 2, 3, 4], TopicRepresentation(sentences, topic),
                        GaussianLatent(torch.full((1,), query_at), torch.zeros(1)))


def test_the_weight_moves_the_ranking_from_the_documents_to_the_question():
    item = ranking_input(query_at=4.0)
    assert RANKERS.get("query")(weight=0.0).rank(item) == RANKERS.get("kl")().rank(item) == [0, 1, 2, 3, 4]
    assert RANKERS.get("query")(weight=1.0).rank(item) == [4, 3, 2, 1, 0]
    assert RANKERS.get("query")(weight=0.5).rank(item)[0] == 2


def test_the_weight_must_be_a_proportion():
    with pytest.raises(UserError, match=r"rankers.query.weight must be in \[0, 1\]; got 1.5"):
        RANKERS.get("query")(weight=1.5)


class WordCounts(SentenceRepresentation):
    """Smoothed word distributions over a fixed vocabulary: a representation that needs no model."""

    requires_model = False
    vocabulary = sorted(set(tokenize("the harbor budget repairs piers council fire station opens downtown "
                                     "crews trained for months a new")))

    def represent(self, sentences):
        counts = torch.full((len(sentences), len(self.vocabulary)), 0.1)
        for row, words in enumerate(sentences):
            for word in words:
                if word in self.vocabulary:
                    counts[row, self.vocabulary.index(word)] += 1
        return TopicRepresentation(Categorical(counts / counts.sum(1, keepdim=True)),
                                   Categorical(counts.sum(0) / counts.sum()))


def test_the_pipeline_hands_the_question_to_the_ranker():
    texts = ["A new fire station opens downtown for the crews.", "The fire crews trained for months downtown.",
             "The fire station crews opens a new downtown station.", "The harbor budget repairs the council piers."]
    sentences = [Sentence(text, tuple(tokenize(text)), "APW19990707.0181", index) for index, text in enumerate(texts)]
    document = Document("APW19990707.0181", "", "", texts, sentences)
    topic = Topic("D0601A", "Harbor budget", "What does the harbor budget repair?", [document])
    settings = SelectionSettings(words=8, min_words=5)
    first = {name: summarize_topics(Summarizer(name, name, RANKERS.get(name)(**options), WordCounts()), [topic],
                                    settings)[0].sentences[0]
             for name, options in (("kl", {}), ("query", {"weight": 0.9}))}
    assert "fire" in first["kl"] and first["query"] == "The harbor budget repairs the council piers."

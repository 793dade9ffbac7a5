"""The LDA baseline's representation (standing in for the paper's sentence-based LDA): topic mixtures."""

from __future__ import annotations

from typing import Sequence

from seqvae_zoo.errors import UserError
from seqvae_zoo.summarization import REPRESENTATIONS
from seqvae_zoo.summarization.lda import LDA
from seqvae_zoo.summarization.representations.base import (Categorical, SentenceRepresentation,
                                                                TopicRepresentation)


@REPRESENTATIONS.register("lda")
class LDAMixture(SentenceRepresentation):
    """LDA topic mixtures of sentences and topic (the LDA baseline).

    Each sentence's posterior-mean topic mixture under an LDA fitted on the training text; the topic's mixture
    is the posterior mean for all its sentences pooled into one document (alpha plus their expected topic
    counts), which is what LDA would infer for the document set given the same word assignments."""

    requires_model = False

    def __init__(self, model=None, vocab=None, num_topics: int = 50, alpha: float = 0.1, eta: float = 0.05,
                 em_iterations: int = 20, sentences_per_document: int = 20, seed: int = 0):
        super().__init__(model, vocab)
        if sentences_per_document < 1:
            raise UserError(f"representations.lda.sentences_per_document must be at least 1; got "
                            f"{sentences_per_document}")
        self.lda = LDA(num_topics=num_topics, alpha=alpha, eta=eta, em_iterations=em_iterations, seed=seed)
        self.sentences_per_document = sentences_per_document

    def fit(self, sentences: Sequence[Sequence[str]]) -> None:
        """Topics are learned from document-sized contexts (a sentence has too few words to show which words go
        together): consecutive training sentences, which a corpus keeps in document order, are pooled into
        pseudo-documents of ``sentences_per_document`` (DUC's documents have 22 sentences on average)."""
        size = self.sentences_per_document
        self.lda.fit([[word for sentence in sentences[start:start + size] for word in sentence]
                      for start in range(0, len(sentences), size)])

    def represent(self, sentences: Sequence[Sequence[str]]) -> TopicRepresentation:
        gamma = self.lda.infer(sentences)
        pooled = self.lda.alpha + (gamma - self.lda.alpha).sum(dim=0)
        return TopicRepresentation(Categorical(gamma / gamma.sum(dim=1, keepdim=True)),
                                   Categorical(pooled / pooled.sum()))

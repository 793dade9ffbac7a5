"""Latent Dirichlet allocation (Blei, Ng & Jordan 2003) by batch variational EM, for the LDA baseline.

Documents are token lists (pooled sentences to learn topics, single sentences to infer their mixtures).
q(theta_d) = Dir(gamma_d) for its topic mixture and q(beta_k) = Dir(lambda_k) for each
topic's words (smoothed LDA, in the batch form of Hoffman, Blei & Bach 2010). Every step is vectorized over all
(document, word) pairs at once, so fitting the 1,125 DUC documents takes seconds (with the cores to oneself).
Stop words and numbers are left out: they would fill every topic.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple, Sequence

import numpy as np
import torch

from seqvae_zoo.errors import UserError

#: Function words of English newswire (lower case, PTB tokens: clitics split off).
STOP_WORDS = frozenset("""
    a about above after again against all also am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her here
    hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now of
    off on once only or other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up very was we were what
    when where which while who whom why will with would you your yours yourself yourselves 's n't 're 've 'll 'd 'm
    said says say mr. mrs. ms. one two three new last year years told like get got may might must us many much
    even still since well back people time first made make
""".split())


class BagOfWords(NamedTuple):
    """Word counts of ``documents`` documents as (document, word, count) triples, one per distinct word."""

    document: torch.Tensor
    word: torch.Tensor
    count: torch.Tensor
    documents: int


class LDA:
    """``num_topics`` topics over the words seen ``min_count`` times in the training documents.

    ``alpha`` and ``eta`` are the symmetric Dirichlet priors of the mixtures and of the topics' words;
    ``em_iterations`` rounds of (``inner_iterations`` updates of every gamma, then lambda), the gammas carried from
    one round to the next; ``seed`` fixes lambda's random start.
    """

    def __init__(self, num_topics: int = 50, alpha: float = 0.1, eta: float = 0.05, em_iterations: int = 20,
                 inner_iterations: int = 2, infer_iterations: int = 50, min_count: int = 2, seed: int = 0):
        if num_topics < 2:
            raise UserError(f"LDA needs at least 2 topics; got num_topics={num_topics}")
        self.num_topics, self.alpha, self.eta = num_topics, alpha, eta
        self.em_iterations, self.inner_iterations, self.infer_iterations = (em_iterations, inner_iterations,
                                                                            infer_iterations)
        self.min_count, self.seed = min_count, seed
        self.words: dict[str, int] = {}
        self.topic_words: torch.Tensor | None = None  # lambda (K, V)

    # -- data ---------------------------------------------------------------------------------------------------
    def bag_of_words(self, documents: Sequence[Sequence[str]]) -> BagOfWords:
        """The counts of the vocabulary's words in each document (other words are ignored)."""
        rows, words, counts = [], [], []
        for index, document in enumerate(documents):
            for word, count in Counter(w for w in document if w in self.words).items():
                rows.append(index)
                words.append(self.words[word])
                counts.append(count)
        return BagOfWords(torch.tensor(rows, dtype=torch.long), torch.tensor(words, dtype=torch.long),
                          torch.tensor(counts, dtype=torch.float32), len(documents))

    @staticmethod
    def is_content_word(word: str) -> bool:
        return word not in STOP_WORDS and word != "N" and any(c.isalpha() for c in word)

    # -- learning -----------------------------------------------------------------------------------------------
    def fit(self, documents: Sequence[Sequence[str]]) -> "LDA":
        counts = Counter(word for document in documents for word in document if self.is_content_word(word))
        kept = sorted(word for word, count in counts.items() if count >= self.min_count)
        if len(kept) < self.num_topics:
            raise UserError(f"LDA: the training text has {len(kept)} content words seen at least "
                            f"{self.min_count} times, fewer than its {self.num_topics} topics: train on more text")
        self.words = {word: index for index, word in enumerate(kept)}
        bag = self.bag_of_words(documents)
        start = np.random.default_rng(self.seed).gamma(100.0, 0.01, (self.num_topics, len(kept)))
        self.topic_words = torch.tensor(start, dtype=torch.float32)
        gamma = torch.ones(bag.documents, self.num_topics)
        for _ in range(self.em_iterations):
            gamma, statistics = self._e_step(bag, gamma, self.inner_iterations)
            self.topic_words = self.eta + statistics
        return self

    def infer(self, documents: Sequence[Sequence[str]]) -> torch.Tensor:
        """gamma (N, K): alpha plus each document's expected topic counts, with the topics held fixed."""
        if self.topic_words is None:
            raise RuntimeError("LDA.infer before fit")
        bag = self.bag_of_words(documents)
        gamma, _ = self._e_step(bag, torch.ones(bag.documents, self.num_topics), self.infer_iterations)
        return gamma

    def _e_step(self, bag: BagOfWords, gamma: torch.Tensor, iterations: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``iterations`` updates of every document's gamma; returns gamma and the expected topic-word counts."""
        exp_log_beta = _exp_dirichlet_log_mean(self.topic_words)  # (K, V)
        beta_of_pair = exp_log_beta.T[bag.word]  # (pairs, K)
        for _ in range(iterations):
            exp_log_theta, _, weight = _pair_weights(bag, gamma, beta_of_pair)
            expected = torch.zeros_like(gamma).index_add_(0, bag.document, beta_of_pair * weight[:, None])
            gamma = self.alpha + exp_log_theta * expected
        _, theta_of_pair, weight = _pair_weights(bag, gamma, beta_of_pair)
        by_word = torch.zeros(exp_log_beta.size(1), self.num_topics).index_add_(0, bag.word,
                                                                                 theta_of_pair * weight[:, None])
        return gamma, exp_log_beta * by_word.T

    def top_words(self, topic: int, count: int = 10) -> list[str]:
        """The most probable words of a topic (to see what it learned)."""
        vocabulary = sorted(self.words, key=self.words.get)
        return [vocabulary[index] for index in self.topic_words[topic].argsort(descending=True)[:count].tolist()]


def _exp_dirichlet_log_mean(concentration: torch.Tensor) -> torch.Tensor:
    """exp E[log p] under Dir(concentration), row-wise."""
    return torch.exp(torch.digamma(concentration) - torch.digamma(concentration.sum(dim=-1, keepdim=True)))


def _pair_weights(bag: BagOfWords, gamma: torch.Tensor, beta_of_pair: torch.Tensor):
    """exp E[log theta] (D, K), its rows for each (document, word) pair, and count / sum_k theta_k beta_kw per pair:
    the pair's responsibilities are theta_of_pair * beta_of_pair * weight."""
    exp_log_theta = _exp_dirichlet_log_mean(gamma)
    theta_of_pair = exp_log_theta[bag.document]
    weight = bag.count / (theta_of_pair * beta_of_pair).sum(dim=1).clamp_min(1e-30)
    return exp_log_theta, theta_of_pair, weight

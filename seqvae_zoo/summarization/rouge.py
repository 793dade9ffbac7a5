"""ROUGE-1 of a summary against a topic's references, with the ``rouge-score`` package.

Stemming on (Porter), the summary cut at the budget (250 words), as ROUGE-1.5.5's ``-m -l 250`` in the DUC
evaluations. rouge-score compares with one reference at a time; a topic's score is the mean over its references of
recall, precision and F. That is what ROUGE-1.5.5's default model averaging amounts to when references have about
the same length (DUC's do: 250 words each), and unlike the best-reference score (``score_multi``) it does not
reward a summary for matching one assessor's choices.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.metadata import version
from typing import Sequence

from seqvae_zoo.errors import UserError


@functools.lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer  # imported on first use: it loads nltk, which takes a while

    return rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)


def protocol(words: int) -> str:
    """How the scores were computed, for every table and record."""
    return (f"ROUGE-1 (rouge-score {version('rouge-score')}, Porter stemming, summaries cut at {words} words, "
            "mean over each topic's references, then over topics)")


@dataclass(frozen=True)
class RougeScore:
    recall: float
    precision: float
    f: float

    @staticmethod
    def mean(scores: Sequence["RougeScore"]) -> "RougeScore":
        count = len(scores)
        return RougeScore(sum(s.recall for s in scores) / count, sum(s.precision for s in scores) / count,
                          sum(s.f for s in scores) / count)

    def as_dict(self) -> dict[str, float]:
        return {"recall": self.recall, "precision": self.precision, "f": self.f}


def cut_to_words(text: str, words: int) -> str:
    """The first ``words`` whitespace-separated words of ``text``."""
    return " ".join(text.split()[:words])


def rouge1(summary: str, references: Sequence[str], words: int = 250) -> RougeScore:
    """ROUGE-1 recall, precision and F of ``summary`` (cut at ``words``), the mean over ``references``."""
    if not references:
        raise UserError("ROUGE needs at least one reference summary")
    peer = cut_to_words(summary, words)
    scores = [_scorer().score(reference, peer)["rouge1"] for reference in references]
    return RougeScore.mean([RougeScore(s.recall, s.precision, s.fmeasure) for s in scores])

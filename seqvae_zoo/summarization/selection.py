"""From a ranking to a summary: which sentences may be chosen, near-duplicates, and the word budget."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import gin

from seqvae_zoo.data.duc2007 import Sentence
from seqvae_zoo.errors import UserError

_TERMINAL = ".?!"
_CLOSING = "'\")"


@gin.configurable(module="summarization")
@dataclass(frozen=True)
class SelectionSettings:
    """``words``: the budget, counted as ROUGE counts (whitespace-separated). ``min_words``: shorter sentences are not
    candidates (fragments, bylines, "He declined."). ``duplicate_similarity``: a sentence whose word-count cosine
    with one already chosen reaches this is a near-duplicate and skipped (wire stories repeat themselves across
    updates). ``cut_last``: the sentence that overflows the budget is cut to fill it exactly, as ROUGE's length
    limit would cut it; without it, the summary stops short of the budget."""

    words: int = 250
    min_words: int = 8
    duplicate_similarity: float = 0.7
    cut_last: bool = True

    def __post_init__(self):
        if self.words < 1:
            raise UserError(f"the summary budget must be at least 1 word; got {self.words}")
        if not 0.0 < self.duplicate_similarity <= 1.0:
            raise UserError(f"duplicate_similarity must be in (0, 1]; got {self.duplicate_similarity}")


@dataclass
class Summary:
    """A topic's summary by one system: its sentences in the order chosen (the last one possibly cut)."""

    topic_id: str
    system: str
    sentences: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.sentences)

    @property
    def word_count(self) -> int:
        return len(self.text.split())


def is_candidate(sentence: Sentence, min_words: int) -> bool:
    """Long enough and ending like a sentence (bylines, headings and credits do not)."""
    return sentence.word_count >= min_words and sentence.text.rstrip(_CLOSING)[-1:] in _TERMINAL


def word_cosine(a: Sequence[str], b: Sequence[str]) -> float:
    """Cosine similarity of two token lists' word counts."""
    count_a, count_b = Counter(a), Counter(b)
    dot = sum(count * count_b[word] for word, count in count_a.items())
    norm = math.sqrt(sum(c * c for c in count_a.values()) * sum(c * c for c in count_b.values()))
    return dot / norm if norm else 0.0


def select(sentences: Sequence[Sentence], ranked: Sequence[int], settings: SelectionSettings, topic_id: str,
           system: str) -> Summary:
    """Take ``sentences[i]`` for i in ``ranked`` order, skipping near-duplicates of those taken, until the budget is
    spent."""
    summary = Summary(topic_id, system)
    taken: list[Sentence] = []
    used = 0
    for index in ranked:
        sentence = sentences[index]
        if any(word_cosine(sentence.words, other.words) >= settings.duplicate_similarity for other in taken):
            continue
        left = settings.words - used
        if sentence.word_count > left:
            if settings.cut_last:
                summary.sentences.append(" ".join(sentence.text.split()[:left]))
                used = settings.words
            break
        summary.sentences.append(sentence.text)
        taken.append(sentence)
        used += sentence.word_count
        if used == settings.words:
            break
    return summary

"""ROUGE of a system's summaries against each topic's references, under one of two named protocols.

- ``duc`` (the default): ROUGE-1.5.5 as NIST ran it for DUC (:mod:`seqvae_zoo.summarization.duc_rouge`, checked
  against NIST's own run): ROUGE-1, ROUGE-2 and ROUGE-SU4, Porter stemming, summaries and references cut at the
  budget, each topic scored against every subset of all-but-one reference (jackknifing) with the subset's counts
  pooled, the system's average over all those evaluations with a 95% bootstrap interval. Its numbers compare with
  DUC's published tables.
- ``rouge-score``: the ``rouge-score`` package, ROUGE-1 and ROUGE-2 (it has no ROUGE-SU4), Porter stemming, the summary
  cut at the budget; a topic's score is the mean over its references, the system's the mean over topics. Google's
  re-implementation tokenizes and stems differently from ROUGE-1.5.5: on NIST's DUC 2007 update-task peers its
  ROUGE-1 recall is up to 0.005 off NIST's.

Summaries longer than the budget are cut, as DUC's ROUGE cut them, and shorter ones scored as they are; either is
worth knowing (a summary of the wrong length is not comparable with DUC's), so each raises a
:class:`SummaryLengthWarning` naming the topics. An empty summary is an error.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Mapping, Sequence

from seqvae_zoo.data.duc2007 import Topic
from seqvae_zoo.errors import UserError
from seqvae_zoo.summarization import duc_rouge
from seqvae_zoo.summarization.duc_rouge import Interval

PROTOCOLS = ("duc", "rouge-score")
#: The metrics each protocol reports, in table order.
PROTOCOL_METRICS = {"duc": ("rouge1", "rouge2", "rougeSU4"), "rouge-score": ("rouge1", "rouge2")}
METRIC_NAMES = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeSU4": "ROUGE-SU4"}


class SummaryLengthWarning(UserWarning):
    """Summaries longer or shorter than the budget: scored (the longer ones cut), but not as DUC's peers were."""


def check_protocol(name: str) -> str:
    if name not in PROTOCOLS:
        raise UserError(f"unknown ROUGE protocol {name!r}: use one of {', '.join(PROTOCOLS)}")
    return name


def protocol(words: int, name: str = "duc") -> str:
    """How the scores were computed, for every table title and record."""
    if check_protocol(name) == "duc":
        return (f"DUC's ROUGE-1.5.5 (-n 2 -m -2 4 -u -f A -l {words}: Porter stemming, summaries cut at {words} "
                "words, jackknifed over each topic's references; seqvae_zoo's port, equal to NIST's to 0.0005), "
                "95% bootstrap intervals")
    return (f"rouge-score {version('rouge-score')} (Porter stemming, summaries cut at {words} words, mean over each "
            "topic's references, then over topics; not DUC's ROUGE-1.5.5)")


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


@dataclass
class RougeResult:
    """A system's scores under one protocol: per metric the mean recall, precision and F over the scored topics
    (``means``), their 95% bootstrap intervals (``intervals``, ``duc`` only), and each topic's scores."""

    protocol: str
    means: dict[str, RougeScore]
    per_topic: dict[str, dict[str, RougeScore]]
    intervals: dict[str, dict[str, Interval]] = field(default_factory=dict)


def cut_to_words(text: str, words: int) -> str:
    """The first ``words`` whitespace-separated words of ``text``."""
    return " ".join(text.split()[:words])


@functools.lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer  # imported on first use: it loads nltk, which takes a while

    return rouge_scorer.RougeScorer(["rouge1", "rouge2"], use_stemmer=True)


def _rouge_score_topic(summary: str, references: Sequence[str], words: int) -> dict[str, RougeScore]:
    """rouge-score's ROUGE-1 and ROUGE-2 of one summary, each the mean over ``references``."""
    if not references:
        raise UserError("ROUGE needs at least one reference summary")
    peer = cut_to_words(summary, words)
    scores = [_scorer().score(reference, peer) for reference in references]
    return {metric: RougeScore.mean([RougeScore(s[metric].recall, s[metric].precision, s[metric].fmeasure)
                                     for s in scores]) for metric in PROTOCOL_METRICS["rouge-score"]}


def rouge1(summary: str, references: Sequence[str], words: int = 250) -> RougeScore:
    """ROUGE-1 of one summary under the ``rouge-score`` protocol: the mean over ``references``."""
    return _rouge_score_topic(summary, references, words)["rouge1"]


def _check_lengths(summaries: Mapping[str, str], words: int, system: str) -> None:
    """An empty summary stops the scoring; summaries of another length than the budget are scored with a warning."""
    lengths = {topic_id: len(text.split()) for topic_id, text in summaries.items()}
    empty = [topic_id for topic_id, length in lengths.items() if length == 0]
    if empty:
        raise UserError(f"system {system!r} has an empty summary for topic {', '.join(empty)}: ROUGE would score it "
                        "0 and pull the average down; check that the ranker left candidates to choose from (e.g. "
                        "summarization.SelectionSettings.min_words)")
    for longer, relation, what in ((True, "longer", f"ROUGE scores their first {words} words, as DUC's did"),
                                   (False, "shorter", "they are scored as they are: recall is lower than it would "
                                                      "be at full length, so they do not compare with DUC's")):
        odd = [f"{topic_id} ({length})" for topic_id, length in lengths.items()
               if (length > words if longer else length < words)]
        if odd:
            warnings.warn(f"system {system!r}: {len(odd)} summaries are {relation} than the {words}-word budget "
                          f"({', '.join(odd[:5])}{', ...' if len(odd) > 5 else ''}); {what}",
                          SummaryLengthWarning, stacklevel=3)


def score_system(summaries: Mapping[str, str], topics: Sequence[Topic], words: int, name: str = "duc",
                 system: str = "system") -> RougeResult:
    """ROUGE of ``summaries`` (topic id -> summary, one sentence a line) against each topic's references, under
    protocol ``name``. Every topic of ``summaries`` must have references."""
    check_protocol(name)
    if not summaries:
        raise UserError("ROUGE needs at least one summary of a topic with references")
    _check_lengths(summaries, words, system)
    by_id = {topic.id: topic for topic in topics}
    unreferenced = [topic_id for topic_id in summaries if not by_id[topic_id].references]
    if unreferenced:
        raise UserError(f"topic {', '.join(unreferenced)} has no reference summaries to score against")
    if name == "rouge-score":
        per_topic = {topic_id: _rouge_score_topic(text, [r.text for r in by_id[topic_id].references], words)
                     for topic_id, text in summaries.items()}
        means = {metric: RougeScore.mean([scores[metric] for scores in per_topic.values()])
                 for metric in PROTOCOL_METRICS[name]}
        return RougeResult(name, means, per_topic)
    pairs, per_topic = [], {}
    for topic_id, text in summaries.items():
        topic = by_id[topic_id]
        references = {r.summarizer: duc_rouge.tokens(r.text, words) for r in topic.references}
        peer = duc_rouge.tokens(text, words)
        evaluations = duc_rouge.jackknife(f"{topic.cluster}.M.{words}.{topic.assessor}", references)
        pairs += [(evaluation, peer) for evaluation in evaluations]
        per_topic[topic_id] = {}
        for metric in PROTOCOL_METRICS[name]:
            scores = [duc_rouge.score_evaluation(peer, evaluation.references, metric) for evaluation in evaluations]
            per_topic[topic_id][metric] = RougeScore.mean(
                [RougeScore(s.recall, s.precision, s.f) for s in scores])
    intervals = duc_rouge.average_scores(pairs, system, PROTOCOL_METRICS[name])
    means = {metric: RougeScore(parts["recall"].mean, parts["precision"].mean, parts["f"].mean)
             for metric, parts in intervals.items()}
    return RougeResult(name, means, per_topic, intervals)

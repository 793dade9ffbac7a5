"""Summarize every topic with a system, write the summaries in NIST's naming, score them with ROUGE.

A system (:class:`Summarizer`) is a ranker and, unless it is a baseline that reads positions or chance, a sentence
representation. The model's systems and the baselines (LEAD, random over several seeds, LDA) go through the same
path: candidates, representation, ranking, selection, scoring.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from seqvae_zoo.data.base import Corpus, DataError
from seqvae_zoo.data.duc2007 import Topic
from seqvae_zoo.errors import UserError
from seqvae_zoo.summarization import RANKERS, REPRESENTATIONS
from seqvae_zoo.summarization.rankers.base import Ranker, RankingInput
from seqvae_zoo.summarization.representations.base import SentenceRepresentation
from seqvae_zoo.summarization.rouge import (METRIC_NAMES, PROTOCOL_METRICS, RougeResult, RougeScore, protocol,
                                           score_system)
from seqvae_zoo.summarization.selection import SelectionSettings, Summary, is_candidate, select

#: The representation a model gets unless one is named: the first of these it supports.
DEFAULT_REPRESENTATIONS = ("context_prior", "posterior", "final_state")
RANDOM_SEEDS = 5
_SYSTEM_ID = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass
class Summarizer:
    """A system: ``system`` is its id in the NIST file names (letters, digits, "-", "_"); ``label`` the row of the
    table it counts towards (systems with one label, like the random baseline's seeds, are averaged)."""

    system: str
    label: str
    ranker: Ranker
    representation: SentenceRepresentation | None = None

    def __post_init__(self):
        if not _SYSTEM_ID.match(self.system):
            raise UserError(f"system id {self.system!r} may only hold letters, digits, '-' and '_' (it becomes the "
                            "last field of NIST file names)")
        if self.ranker.uses_representation and self.representation is None:
            raise UserError(f"ranker {type(self.ranker).registry_name!r} compares representations: name one")


def default_representation(model) -> str:
    return next(name for name in DEFAULT_REPRESENTATIONS if REPRESENTATIONS.get(name).supports(model))


def model_summarizer(model, vocab, representation: str | None = None, ranker: str = "kl", system: str = "model",
                     label: str | None = None) -> Summarizer:
    """The system that ranks with a trained model: ``representation`` defaults to what the model offers (VRAE-SA:
    the context prior, VRAE: the posterior, LSTM: the final state)."""
    name = representation or default_representation(model)
    cls = REPRESENTATIONS.get(name)
    if not cls.supports(model):
        encoder = "an" if model.encoder is not None else "no"
        raise UserError(f"representation {name!r} does not apply to this model (decoder "
                        f"{type(model.decoder).registry_name!r}, {encoder} encoder); "
                        f"use one of {', '.join(n for n, c in REPRESENTATIONS.items() if c.supports(model))}")
    return Summarizer(system, label or f"{name} + {ranker}", RANKERS.get(ranker)(), cls(model=model, vocab=vocab))


def baseline_summarizers(names: Sequence[str] = ("lead", "random", "lda"),
                         random_seeds: int = RANDOM_SEEDS) -> list[Summarizer]:
    """LEAD, the random baseline (one system per seed, averaged in the table) and LDA + KL."""
    known = ("lead", "random", "lda")
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UserError(f"unknown baseline {', '.join(unknown)}; baselines: {', '.join(known)}")
    if "random" in names and random_seeds < 1:
        raise UserError(f"the random baseline needs at least one seed; got {random_seeds}")
    summarizers = []
    for name in names:
        if name == "lead":
            summarizers.append(Summarizer("LEAD", "LEAD", RANKERS.get("lead")()))
        elif name == "random":
            summarizers += [Summarizer(f"RANDOM-{seed}", f"Random ({random_seeds} seeds)",
                                       RANKERS.get("random")(seed=seed)) for seed in range(random_seeds)]
        else:
            summarizers.append(Summarizer("LDA", "LDA + KL", RANKERS.get("kl")(), REPRESENTATIONS.get("lda")()))
    return summarizers


def summarize_topics(summarizer: Summarizer, topics: Sequence[Topic],
                     settings: SelectionSettings | None = None) -> list[Summary]:
    """One summary per topic. The representation covers all the topic's sentences; candidates are those long enough
    and shaped like sentences."""
    settings = settings or SelectionSettings()
    summaries = []
    for topic in topics:
        sentences = topic.sentences()
        candidates = [index for index, sentence in enumerate(sentences) if is_candidate(sentence, settings.min_words)]
        representation = (summarizer.representation.represent([s.words for s in sentences])
                          if summarizer.ranker.uses_representation else None)
        query = summarizer.representation.represent(topic.query()).topic if summarizer.ranker.uses_query else None
        ranked = summarizer.ranker.rank(RankingInput(topic, sentences, candidates, representation, query))
        summaries.append(select(sentences, ranked, settings, topic.id, summarizer.system))
    return summaries


def nist_name(topic: Topic, system: str, words: int) -> str:
    """D0701.M.250.A.<system>: cluster, multi-document, length, the topic's assessor, the system."""
    return f"{topic.cluster}.M.{words}.{topic.assessor}.{system}"


def write_summaries(summaries: Sequence[Summary], topics: Sequence[Topic], out_dir: str | Path,
                    words: int) -> list[Path]:
    """Each summary in ``out_dir/<system>/`` under its NIST name, one sentence a line."""
    by_id = {topic.id: topic for topic in topics}
    paths = []
    for summary in summaries:
        path = Path(out_dir) / summary.system / nist_name(by_id[summary.topic_id], summary.system, words)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(summary.text + "\n")
        paths.append(path)
    return paths


@dataclass
class SystemScore:
    """A system's ROUGE (:class:`RougeResult`, under its protocol) and how many topics it summarized."""

    system: str
    label: str
    result: RougeResult
    topics: int

    @property
    def mean(self) -> RougeScore:
        """ROUGE-1, the paper's metric."""
        return self.result.means["rouge1"]

    @property
    def per_topic(self) -> dict[str, dict[str, RougeScore]]:
        return self.result.per_topic

    def as_dict(self) -> dict[str, Any]:
        return {"system": self.system, "label": self.label, "protocol": self.result.protocol,
                **{metric: score.as_dict() for metric, score in self.result.means.items()},
                "intervals": {metric: {part: interval.as_dict() for part, interval in parts.items()}
                              for metric, parts in self.result.intervals.items()},
                "topics_scored": len(self.per_topic), "topics": self.topics,
                "per_topic": {topic: {metric: score.as_dict() for metric, score in scores.items()}
                              for topic, scores in self.per_topic.items()}}


def score_summaries(summarizer: Summarizer, summaries: Sequence[Summary], topics: Sequence[Topic], words: int,
                    rouge: str = "duc") -> SystemScore:
    """ROUGE (protocol ``rouge``) of each summary whose topic has references; topics without references are not
    scored."""
    by_id = {topic.id: topic for topic in topics}
    texts = {summary.topic_id: summary.text for summary in summaries if by_id[summary.topic_id].references}
    if not texts:
        raise DataError("none of the topics has reference summaries to score against (refs/ is empty or missing)")
    return SystemScore(summarizer.system, summarizer.label, score_system(texts, topics, words, rouge,
                                                                         summarizer.system), len(summaries))


def topics_of(corpus: Corpus, topic_ids: Sequence[str] | None = None) -> list[Topic]:
    """The corpus's topics (those named in ``topic_ids`` only, in that order, when given)."""
    topics = corpus.extras.get("topics")
    if not topics:
        raise DataError(f"dataset {corpus.name!r} has no topics to summarize: use duc2005, duc2006 or duc2007 (or "
                        "another dataset in NIST's DUC layout)")
    if topic_ids is None:
        return topics
    by_id = {topic.id: topic for topic in topics}
    unknown = [topic_id for topic_id in topic_ids if topic_id not in by_id]
    if unknown:
        raise DataError(f"{corpus.name} has no topic {', '.join(unknown)}; its topics are {topics[0].id} to "
                        f"{topics[-1].id}")
    return [by_id[topic_id] for topic_id in topic_ids]


def run_systems(summarizers: Sequence[Summarizer], corpus: Corpus, settings: SelectionSettings | None = None,
                out_dir: str | Path | None = None, topic_ids: Sequence[str] | None = None,
                rouge: str = "duc") -> list[SystemScore]:
    """Fit what must be fitted on the corpus's training sentences, summarize every topic (or those of
    ``topic_ids``), write the summaries (when ``out_dir`` is given) and score them under ROUGE protocol
    ``rouge``."""
    settings = settings or SelectionSettings()
    topics = topics_of(corpus, topic_ids)
    scores = []
    for summarizer in summarizers:
        if summarizer.representation is not None:
            summarizer.representation.fit(corpus.splits["train"])
        summaries = summarize_topics(summarizer, topics, settings)
        if out_dir is not None:
            write_summaries(summaries, topics, out_dir, settings.words)
        scores.append(score_summaries(summarizer, summaries, topics, settings.words, rouge))
    return scores


def table_rows(scores: Sequence[SystemScore]) -> list[dict[str, Any]]:
    """One row per label: each metric's mean recall, precision and F over its systems, the spread of ROUGE-1 F
    where there are several, the bootstrap intervals where there is one."""
    rows = []
    for label in dict.fromkeys(score.label for score in scores):
        group = [score for score in scores if score.label == label]
        f_values = [score.mean.f for score in group]
        metrics = group[0].result.means
        rows.append({"label": label, "systems": [score.system for score in group],
                     **{metric: RougeScore.mean([score.result.means[metric] for score in group]).as_dict()
                        for metric in metrics},
                     "intervals": group[0].as_dict()["intervals"] if len(group) == 1 else {},
                     "f_std": statistics.stdev(f_values) if len(f_values) > 1 else None,
                     "topics_scored": len(group[0].per_topic), "topics": group[0].topics,
                     "protocol": group[0].result.protocol})
    return rows


def render_table(scores: Sequence[SystemScore], words: int) -> str:
    """A Markdown table: ROUGE-1 recall, precision and F (the paper's), then the recall of ROUGE-2 and ROUGE-SU4
    (DUC's) with its 95% interval where the protocol has one; titled with the protocol and the topics scored."""
    from tabulate import tabulate

    rows = table_rows(scores)
    name = rows[0]["protocol"]
    others = [metric for metric in PROTOCOL_METRICS[name] if metric != "rouge1"]

    def recall_cell(row: dict[str, Any], metric: str) -> str:
        interval = row["intervals"].get(metric, {}).get("recall")
        spread = f" [{interval['low']:.3f}, {interval['high']:.3f}]" if interval else ""
        return f"{row[metric]['recall']:.3f}{spread}"

    body = [[row["label"], f"{row['rouge1']['recall']:.3f}", f"{row['rouge1']['precision']:.3f}",
             f"{row['rouge1']['f']:.3f}" + (f" ± {row['f_std']:.3f}" if row["f_std"] is not None else ""),
             *(recall_cell(row, metric) for metric in others)]
            for row in rows]
    headers = ["System", "R-1 Recall", "R-1 Precision", "R-1 F",
               *(f"{METRIC_NAMES[metric].replace('ROUGE', 'R')} Recall" for metric in others)]
    scored, total = rows[0]["topics_scored"], rows[0]["topics"]
    unscored = " (the others have no references)" if scored < total else ""
    title = f"{protocol(words, name)}; {scored} of {total} topics scored{unscored}"
    return title + "\n\n" + tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)


def summarize_and_score(model, vocab, corpus: Corpus, words: int = 250, representation: str | None = None,
                        ranker: str = "kl", topic_ids: Sequence[str] | None = None,
                        rouge: str = "duc") -> dict[str, Any]:
    """The model's ROUGE on the corpus's topics (all, or those of ``topic_ids``), as a metrics record:
    {"rouge1": {recall, precision, f}, "rouge2", "rougeSU4" (under ``duc``), "intervals", "topics_scored",
    "topics", "representation", "ranker", "protocol", "per_topic"}."""
    summarizer = model_summarizer(model, vocab, representation, ranker)
    score, = run_systems([summarizer], corpus, SelectionSettings(words=words), topic_ids=topic_ids, rouge=rouge)
    return {**score.as_dict(), "representation": type(summarizer.representation).registry_name,
            "ranker": ranker, "protocol": protocol(words, rouge)}


def baseline_metrics(corpus: Corpus, words: int = 250, names: Sequence[str] = ("lda", "lead", "random"),
                     random_seeds: int = RANDOM_SEEDS, topic_ids: Sequence[str] | None = None,
                     rouge: str = "duc") -> dict[str, dict]:
    """The baselines' ROUGE on the corpus's topics, by table label, as metrics records shaped like
    :func:`summarize_and_score`'s (the random baseline's is the mean over its seeds, with ``f_std``)."""
    scores = run_systems(baseline_summarizers(names, random_seeds), corpus, SelectionSettings(words=words),
                         topic_ids=topic_ids, rouge=rouge)
    return {row["label"]: {**row, "protocol": protocol(words, rouge)} for row in table_rows(scores)}

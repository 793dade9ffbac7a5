"""Does a summarizer's ranking follow what the references say? The rank correlation between a system's order of each
topic's candidate sentences and each sentence's ROUGE-1 precision against the topic's references.

A system's ROUGE-1 can sit at the random baseline's level for two reasons: its ranking carries no sign of which
sentences the references cover, or it does and selection loses it. This measures the first. For every topic with
references, each candidate sentence gets its relevance: ROUGE-1 precision against the references (the fraction of
its stemmed unigrams the references hold, hits summed over references as ROUGE-1.5.5 sums them; length does not
raise it). Each system's ranking is then compared with it: Spearman's rho between rank and relevance per topic
(mean over topics, and how many topics have rho > 0), and the mean relevance of the sentences that open the ranking
until 250 words, against the mean of all candidates (1.0: no better than chance) and the oracle's (ranked by
relevance itself); and, beside it, the rank correlation with the sentences' length. The baselines (LDA + KL, LEAD,
random) run beside the models of the checkpoints given, each with the representation `seqvae summarize` gives it
(or --representation).

    python benchmarks/ranker_signal.py runs/<vrae>/checkpoint.pt runs/<vrae-sa>/checkpoint.pt --data-dir DATA
"""

from __future__ import annotations

import argparse
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path

from tabulate import tabulate

from seqvae_zoo.data.loading import load_dataset
from seqvae_zoo.errors import UserError
from seqvae_zoo.summarization import baseline_summarizers, model_summarizer
from seqvae_zoo.summarization.duc_rouge import score_evaluation, tokens
from seqvae_zoo.summarization.pipeline import Summarizer, topics_of
from seqvae_zoo.summarization.rankers.base import RankingInput
from seqvae_zoo.summarization.selection import SelectionSettings, is_candidate
from seqvae_zoo.training.checkpoint import load_checkpoint

UNCUT = 10**9  # the word limit that keeps a sentence whole


def relevance(sentence_text: str, references: list[list[str]]) -> float:
    """ROUGE-1 precision of one sentence against the references' tokens (cut to the summary length)."""
    return score_evaluation(tokens(sentence_text, UNCUT), references, "rouge1").precision


def ranks(values: list[float]) -> list[float]:
    """Average ranks (1 = smallest), ties sharing the mean of their places."""
    order = sorted(range(len(values)), key=values.__getitem__)
    result = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for place in range(start, end + 1):
            result[order[place]] = (start + end) / 2 + 1
        start = end + 1
    return result


def spearman(x: list[float], y: list[float]) -> float:
    return statistics.correlation(ranks(x), ranks(y))


def opening(ranked: list[int], sentences, words: int) -> list[int]:
    """The sentences that open a ranking until ``words`` words (the last one counted whole)."""
    chosen, total = [], 0
    for index in ranked:
        if total >= words:
            break
        chosen.append(index)
        total += sentences[index].word_count
    return chosen


def signal_rows(summarizers: list[Summarizer], topics, corpus, settings: SelectionSettings) -> list[list]:
    scored = [topic for topic in topics if topic.references]
    if not scored:
        raise UserError(f"{corpus.name} has no topic with references: there is nothing to compare the rankings with")
    relevances, candidates_of = {}, {}
    for topic in scored:
        references = [tokens(reference.text, settings.words) for reference in topic.references]
        sentences = topic.sentences()
        candidates_of[topic.id] = [i for i, s in enumerate(sentences) if is_candidate(s, settings.min_words)]
        relevances[topic.id] = {i: relevance(sentences[i].text, references) for i in candidates_of[topic.id]}
    rows = []
    for summarizer in [None, *summarizers]:  # None: the oracle, ranked by relevance itself
        if summarizer is not None and summarizer.representation is not None:
            summarizer.representation.fit(corpus.splits["train"])
        rhos, length_rhos, lifts = [], [], []
        for topic in scored:
            sentences, candidates, relevant = topic.sentences(), candidates_of[topic.id], relevances[topic.id]
            if summarizer is None:
                ranked = sorted(candidates, key=lambda i: -relevant[i])
            else:
                representation = (summarizer.representation.represent([s.words for s in sentences])
                                  if summarizer.ranker.uses_representation else None)
                query = (summarizer.representation.represent(topic.query()).topic if summarizer.ranker.uses_query
                         else None)
                ranked = summarizer.ranker.rank(RankingInput(topic, sentences, candidates, representation, query))
            position = {index: place for place, index in enumerate(ranked)}
            order = [-position[i] for i in candidates]
            rhos.append(spearman(order, [relevant[i] for i in candidates]))
            length_rhos.append(spearman(order, [sentences[i].word_count for i in candidates]))
            top = opening(ranked, sentences, settings.words)
            lifts.append(statistics.fmean(relevant[i] for i in top) / statistics.fmean(relevant.values()))
        rows.append([summarizer.system if summarizer else "oracle (by relevance)", len(scored),
                     statistics.fmean(rhos), sum(rho > 0 for rho in rhos), statistics.fmean(lifts),
                     statistics.fmean(length_rhos)])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="*", type=Path, help="trained models' checkpoint.pt or best.pt")
    parser.add_argument("--data", default="duc2007", help="a DUC dataset (default: duc2007)")
    parser.add_argument("--data-dir", default=None, help="folder holding the corpora (default: $SEQVAE_DATA)")
    parser.add_argument("--representation", default=None,
                        help="sentence representation for every checkpoint (default: each model's own default)")
    parser.add_argument("--random-seeds", type=int, default=5, help="systems of the random baseline (default: 5)")
    args = parser.parse_args(argv)
    try:
        corpus = load_dataset(args.data, data_dir=args.data_dir)
        summarizers = baseline_summarizers(("lda", "lead", "random"), args.random_seeds)
        with ExitStack() as scorings:  # an SVI-trained model ranks through its refined posterior, as it summarizes
            for path in args.checkpoints:
                if not path.is_file():
                    raise UserError(f"{str(path)!r} does not exist: give a run folder's checkpoint.pt or best.pt")
                loaded = load_checkpoint(path, map_location="cpu")
                scorings.enter_context(loaded.procedure.scoring(loaded.model))
                summarizers.append(model_summarizer(loaded.model, loaded.vocab, args.representation,
                                                    system=f"{path.parent.name}-{path.stem}"))
            rows = signal_rows(summarizers, topics_of(corpus), corpus, SelectionSettings())
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(tabulate(rows, headers=["system", "topics", "Spearman rho (mean)", "topics with rho > 0",
                                  "relevance of the first 250 words / mean", "Spearman rho with length (mean)"],
                   floatfmt=".3f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

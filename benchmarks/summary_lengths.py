"""Does a summarizer pick sentences by their length? Sentence lengths of the summaries in a `seqvae summarize` folder
against the topics' candidate sentences.

A ranker that preferred long (or short) sentences would fill the 250 words with fewer (or more) of them, and ROUGE
recall moves with that alone. For each system folder under SUMMARIES (one summary per topic, one sentence a line, as
`seqvae summarize --out SUMMARIES` writes them) it prints the sentences per summary and the mean words of its whole
sentences (the last one of each summary is left out: it is cut to the budget), beside the mean over the candidate
sentences of the same topics (the sentences a ranker chooses from: `summarization.SelectionSettings.min_words` and
a sentence's ending decide).

    seqvae summarize runs/<run>/checkpoint.pt --out SUMMARIES && python benchmarks/summary_lengths.py SUMMARIES
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from tabulate import tabulate

from seqvae_zoo.data.loading import load_dataset
from seqvae_zoo.errors import UserError
from seqvae_zoo.summarization.pipeline import nist_name, topics_of
from seqvae_zoo.summarization.selection import SelectionSettings, is_candidate


def summary_sentences(folder: Path) -> dict[str, list[str]]:
    """Each summary file of a system's folder, by file name: its sentences."""
    return {path.name: [line for line in path.read_text().splitlines() if line.strip()]
            for path in sorted(folder.iterdir()) if path.is_file()}


def length_rows(summaries_dir: Path, topics, words: int, min_words: int) -> list[list]:
    systems = sorted(p for p in summaries_dir.iterdir() if p.is_dir())
    if not systems:
        raise UserError(f"no system folders in {str(summaries_dir)!r}: give the --out folder of `seqvae summarize`")
    rows = []
    for folder in systems:
        summaries = summary_sentences(folder)
        names = {nist_name(topic, folder.name, words): topic for topic in topics}
        summarized = [names[name] for name in summaries if name in names]
        if not summarized:
            raise UserError(f"{str(folder)!r} holds no summary of this dataset's topics at {words} words (names like "
                            f"{nist_name(topics[0], folder.name, words)}): give --data and --words as summarized")
        whole = [len(sentence.split()) for sentences in summaries.values() for sentence in sentences[:-1]]
        pool = [sentence.word_count for topic in summarized for sentence in topic.sentences()
                if is_candidate(sentence, min_words)]
        rows.append([folder.name, len(summarized), statistics.fmean(len(s) for s in summaries.values()),
                     statistics.fmean(whole), statistics.median(whole), statistics.fmean(pool),
                     statistics.fmean(whole) / statistics.fmean(pool)])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summaries", help="the --out folder of `seqvae summarize`")
    parser.add_argument("--data", default="duc2007", help="the dataset summarized (default: duc2007)")
    parser.add_argument("--data-dir", default=None, help="folder holding the corpora (default: $SEQVAE_DATA)")
    parser.add_argument("--words", type=int, default=250, help="the summaries' word budget (default: 250)")
    args = parser.parse_args(argv)
    try:
        topics = topics_of(load_dataset(args.data, data_dir=args.data_dir))
        rows = length_rows(Path(args.summaries), topics, args.words, SelectionSettings().min_words)
    except (UserError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(tabulate(rows, headers=["system", "summaries", "sentences per summary", "words per whole sentence",
                                  "median", "candidates' mean", "ratio"], tablefmt="github", floatfmt=".2f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

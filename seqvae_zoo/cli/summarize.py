"""``seqvae summarize CHECKPOINT --data duc2007 [--words 250] [--out DIR]``: extractive summaries and their ROUGE."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gin

from seqvae_zoo.presets import ConfigError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "summarize", help="summarize DUC topics with a trained model (and baselines); ROUGE against the references",
        description="Rank every topic's sentences by closeness to the topic under the model's representation, take "
                    "them up to the word budget, write one summary per topic (NIST names) and score them.")
    parser.add_argument("checkpoint", help="a checkpoint written by `seqvae train` (checkpoint.pt or best.pt)")
    parser.add_argument("--data", default="duc2007", help="dataset in NIST's DUC layout: duc2005, duc2006, duc2007 "
                        "(default: duc2007)")
    parser.add_argument("--data-dir", default=None, help="folder holding the corpora (default: $SEQVAE_DATA, "
                        "then the user cache)")
    parser.add_argument("--words", type=int, default=250, help="summary length budget in words (default: 250)")
    parser.add_argument("--out", default="summaries", help="folder for the summaries and scores (default: summaries)")
    parser.add_argument("--representation", default=None, help="registered sentence representation (default: "
                        "context_prior for VRAE-SA, posterior for VRAE, final_state for the LSTM)")
    parser.add_argument("--ranker", default="kl", help="registered ranker (default: kl; also cosine, query)")
    parser.add_argument("--rouge", default="duc", choices=("duc", "rouge-score"),
                        help="ROUGE protocol: duc (ROUGE-1.5.5 as NIST ran it for DUC: ROUGE-1, -2, -SU4, jackknifed, "
                             "bootstrap intervals; the default) or rouge-score (the rouge-score package)")
    parser.add_argument("--system", default="model", help="the model's system id in the file names (default: model)")
    parser.add_argument("--baselines", default="lead,random",
                        help="comma-separated baselines to add to the table: lead, random, lda (default: lead,random; "
                             "'' for none)")
    parser.add_argument("--random-seeds", type=int, default=5, help="seeds the random baseline is averaged over")
    parser.add_argument("--topics", default=None, help="comma-separated topic ids to summarize, e.g. D0701A,D0703A "
                        "(default: all)")
    parser.add_argument("--gin", action="append", default=[], metavar="BINDING",
                        help="gin binding for the summarization components, e.g. 'rankers.kl.direction = "
                             "\"symmetric\"' or 'summarization.SelectionSettings.min_words = 10'")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from seqvae_zoo.data.loading import load_dataset
    from seqvae_zoo.summarization import (RANKERS, REPRESENTATIONS, baseline_summarizers, model_summarizer,
                                          render_table, run_systems)
    from seqvae_zoo.evaluation.protocol import scored_as
    from seqvae_zoo.summarization.rouge import protocol
    from seqvae_zoo.summarization.selection import SelectionSettings
    from seqvae_zoo.training.checkpoint import load_checkpoint
    from seqvae_zoo.training.run import default_device

    RANKERS.get(args.ranker)  # names first: a typo should not wait for the checkpoint and the corpus
    if args.representation is not None:
        REPRESENTATIONS.get(args.representation)
    baselines = baseline_summarizers([name.strip() for name in args.baselines.split(",") if name.strip()],
                                     args.random_seeds)
    loaded = load_checkpoint(args.checkpoint, map_location=args.device or default_device())
    try:
        gin.parse_config(args.gin)
    except (ValueError, KeyError, SyntaxError, TypeError) as error:
        raise ConfigError(f"--gin binding does not parse: {str(error).splitlines()[0]}") from None
    settings = SelectionSettings(words=args.words)
    model = model_summarizer(loaded.model, loaded.vocab, args.representation, args.ranker, system=args.system)
    model.label = f"{args.system} ({model.label}; trained on {loaded.dataset or 'unknown data'})"
    corpus = load_dataset(args.data, data_dir=args.data_dir)
    topics = args.topics.split(",") if args.topics else None
    out = Path(args.out)
    with loaded.procedure.scoring(loaded.model) as refinement:  # an SVI-trained model: its refined posterior
        scores = run_systems([model, *baselines], corpus, settings, out_dir=out, topic_ids=topics, rouge=args.rouge)
    table = render_table(scores, args.words)
    (out / "scores.md").write_text(table + "\n")
    record = {"protocol": protocol(args.words, args.rouge), "checkpoint": str(args.checkpoint), "dataset": corpus.name,
              "fingerprint": corpus.fingerprint, "systems": [score.as_dict() for score in scores],
              **scored_as(refinement)}
    (out / "scores.json").write_text(json.dumps(record, indent=1) + "\n")
    print(table)
    print(f"\nsummaries in {out}/<system>/, scores in {out / 'scores.md'} and {out / 'scores.json'}")
    return 0

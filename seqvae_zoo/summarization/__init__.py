"""Extractive summarization (the paper's section 4, DUC 2007): rank each topic's sentences by how close their
representation is to the topic's, take sentences up to a word budget, score with ROUGE-1.

- ``representations/``: registered sentence representations (``representations.<name>`` in gin): what a trained
  model (or LDA) makes of a sentence, and how a topic is made of its sentences. One module per representation.
- ``rankers/``: registered rankers (``rankers.<name>``): order a topic's candidate sentences (KL, cosine, and the
  LEAD and random baselines). One module per ranker.
- ``lda``: latent Dirichlet allocation by variational EM, for the LDA baseline.
- ``selection``: which sentences may be chosen, near-duplicates, the word budget.
- ``rouge``: ROUGE-1 against a topic's references.
- ``pipeline``: summarize every topic, write the summaries in NIST's naming, score them; the baselines.
"""

from seqvae_zoo.registry import Registry, add_registry

# Bound before they are added: adding a registry may import its folder at once, and those modules import these.
REPRESENTATIONS = Registry("representations",
                           "seqvae_zoo.summarization.representations.base.SentenceRepresentation",
                           "seqvae_zoo.summarization.representations",
                           "sentences and topics as distributions, for extractive summarization")
RANKERS = Registry("rankers", "seqvae_zoo.summarization.rankers.base.Ranker", "seqvae_zoo.summarization.rankers",
                   "order a topic's candidate sentences for its summary")
add_registry(REPRESENTATIONS)
add_registry(RANKERS)

from seqvae_zoo.summarization.pipeline import (  # noqa: E402  (after the registries its modules use)
    Summarizer, baseline_metrics, baseline_summarizers, model_summarizer, render_table, run_systems,
    summarize_and_score, summarize_topics, write_summaries)

__all__ = ["RANKERS", "REPRESENTATIONS", "Summarizer", "baseline_metrics", "baseline_summarizers", "model_summarizer",
           "render_table", "run_systems", "summarize_and_score", "summarize_topics", "write_summaries"]

"""What a suite measures after training: the language-model protocol, or summaries scored by ROUGE.

A suite picks one with ``[evaluation] kind = "language_model"`` (the default) or ``"summarization"``; the other keys
of ``[evaluation]`` are that kind's settings (for summarization: ``words``, ``ranker``, ``rouge``: the protocol,
``duc`` by default). Baseline systems that need no training (``baselines = [...]`` in a
summarization suite) are scored once per dataset.
"""

from __future__ import annotations

from typing import Any

from seqvae_zoo.bench.suite import SuiteError

KINDS = ("language_model", "summarization")


def evaluation_kind(settings: dict[str, Any]) -> str:
    kind = settings.get("kind", "language_model")
    if kind not in KINDS:
        raise SuiteError(f"unknown evaluation kind {kind!r}: use one of {', '.join(KINDS)}")
    return kind


def protocol_version(settings: dict[str, Any]) -> str:
    """The version of the numbers a suite's evaluation produces (part of every run's cache key)."""
    if evaluation_kind(settings) == "summarization":
        from seqvae_zoo.summarization.rouge import protocol

        return protocol(int(settings.get("words", 250)), settings.get("rouge", "duc"))
    from seqvae_zoo.evaluation.protocol import PROTOCOL_VERSION

    return PROTOCOL_VERSION


def evaluate_trained(settings: dict[str, Any], model, vocab, corpus, seed: int) -> dict[str, Any]:
    """The metrics of a trained model under the suite's evaluation settings."""
    if evaluation_kind(settings) == "summarization":
        from seqvae_zoo.summarization.pipeline import summarize_and_score

        return summarize_and_score(model, vocab, corpus, words=int(settings.get("words", 250)),
                                   ranker=settings.get("ranker", "kl"), rouge=settings.get("rouge", "duc"))
    from seqvae_zoo.evaluation.protocol import evaluate_corpus

    return evaluate_corpus(model, vocab, corpus, split=settings.get("split", "test"),
                           iw_samples=int(settings.get("iw_samples", 500)),
                           batch_size=int(settings.get("batch_size", 64)), seed=seed)


def evaluate_baselines(settings: dict[str, Any], names: list[str], corpus) -> dict[str, dict[str, Any]]:
    """Metrics of each untrained baseline system, by its table label."""
    if evaluation_kind(settings) != "summarization":
        raise SuiteError("baselines are summarization systems: they need [evaluation] kind = \"summarization\"")
    from seqvae_zoo.summarization.pipeline import baseline_metrics

    return baseline_metrics(corpus, words=int(settings.get("words", 250)), names=tuple(names),
                            rouge=settings.get("rouge", "duc"))

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
    """The metrics of a trained model under the suite's evaluation settings, all at once."""
    if evaluation_kind(settings) == "summarization":
        from seqvae_zoo.summarization.pipeline import summarize_and_score

        return summarize_and_score(model, vocab, corpus, words=int(settings.get("words", 250)),
                                   ranker=settings.get("ranker", "kl"), rouge=settings.get("rouge", "duc"))
    bounds = evaluate_bounds_of(settings, model, vocab, corpus, seed)
    return evaluate_importance_of(settings, model, vocab, corpus, seed, bounds)


def evaluate_bounds_of(settings: dict[str, Any], model, vocab, corpus, seed: int) -> dict[str, Any]:
    """A language model's cheap columns: everything but the importance-weighted NLL."""
    from seqvae_zoo.evaluation.protocol import evaluate_bounds

    split = _split(settings, vocab, corpus, seed)
    return {**split.identity, **evaluate_bounds(model, split.batches, seed=seed,
                                                true_latent=split.truth.get("true_latent"))}


def evaluate_importance_of(settings: dict[str, Any], model, vocab, corpus, seed: int, bounds: dict[str, Any],
                           state_path=None, stop=None) -> dict[str, Any]:
    """``bounds`` completed with the IW-NLL (K = ``iw_samples``, default 500); with ``state_path`` the pass saves
    its progress after every batch and continues from it (other workers may join it: :func:`help_importance_of`),
    and ``stop`` may end it between batches."""
    from seqvae_zoo.evaluation.protocol import importance_nll, with_importance

    split = _split(settings, vocab, corpus, seed)
    samples = int(settings.get("iw_samples", 500))
    values = importance_nll(model, split.batches, iw_samples=samples, seed=seed, state_path=state_path, stop=stop)
    return with_importance(bounds, values, samples, split.truth.get("true_nll"))


def help_importance_of(settings: dict[str, Any], model, vocab, corpus, seed: int, state_path, stop=None) -> int:
    """Work on the IW pass :func:`evaluate_importance_of` runs with ``state_path``: the batches no worker has
    taken yet, from the longest down; return how many."""
    from seqvae_zoo.evaluation.protocol import help_importance_nll

    return help_importance_nll(model, _split(settings, vocab, corpus, seed).batches,
                               iw_samples=int(settings.get("iw_samples", 500)), seed=seed, state_path=state_path,
                               stop=stop)


def _split(settings: dict[str, Any], vocab, corpus, seed: int):
    from seqvae_zoo.evaluation.protocol import SplitBatches

    return SplitBatches(vocab, corpus, settings.get("split", "test"), int(settings.get("batch_size", 64)), seed)


def evaluate_baselines(settings: dict[str, Any], names: list[str], corpus) -> dict[str, dict[str, Any]]:
    """Metrics of each untrained baseline system, by its table label."""
    if evaluation_kind(settings) != "summarization":
        raise SuiteError("baselines are summarization systems: they need [evaluation] kind = \"summarization\"")
    from seqvae_zoo.summarization.pipeline import baseline_metrics

    return baseline_metrics(corpus, words=int(settings.get("words", 250)), names=tuple(names),
                            rouge=settings.get("rouge", "duc"))

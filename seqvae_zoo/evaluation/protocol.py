"""The evaluation protocol: which numbers a result holds, how each is estimated, and its version.

A result is a plain JSON-safe dict (see :func:`evaluate`); the version in it changes whenever a number would change
meaning, so results of different versions are never compared. ``docs/metrics.md`` defines every metric.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Hashable, Iterable, Sequence

import torch
from tqdm import tqdm

from seqvae_zoo.errors import UserError
from seqvae_zoo.evaluation.importance import has_latents, importance_log_likelihood
from seqvae_zoo.evaluation.latent import ACTIVE_UNIT_THRESHOLDS, active_units, mutual_information
from seqvae_zoo.evaluation.synthetic import latent_probe, nll_gap
from seqvae_zoo.gaussian import DiagGaussian
from seqvae_zoo.model import SeqVAE

PROTOCOL_VERSION = "1"

#: Importance samples per sentence unless told otherwise.
DEFAULT_IW_SAMPLES = 500
#: Memory one importance-sampling pass may use; bigger passes waste less time per step.
DEFAULT_MEMORY_BUDGET_MB = 1024


class EvaluationError(UserError):
    """An evaluation was asked for with settings or data it cannot use."""


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    description: str


def active_units_key(threshold: float) -> str:
    return f"active_units@{threshold:g}"


def kl_key(name: str) -> str:
    return f"kl_{name}"


#: Every metric a result may hold, in the order tables show them. KL terms of other latents appear as ``kl_<name>``.
METRICS: tuple[Metric, ...] = (
    Metric("paper_nll", "NLL (paper)",
           "reconstruction NLL per sentence, per-step latents at their prior mean, z_enc drawn from q; no KL"),
    Metric("reconstruction_ppl", "recon. PPL (paper)", "exp(sum paper NLL / sum words), end-of-sentence not counted"),
    Metric("elbo_nll", "ELBO-NLL", "one-sample -ELBO per sentence (analytic KL terms)"),
    Metric("iw_nll", "IW-NLL", "importance-weighted NLL per sentence, K samples of every latent"),
    Metric("iw_ppl", "PPL (IW)", "exp(sum IW-NLL / sum tokens), end-of-sentence counted"),
    Metric(kl_key("z_enc"), "KL z_enc", "KL(q(z_enc|x) || p(z_enc)) per sentence"),
    Metric(kl_key("z_t"), "KL z_t", "sum over steps of KL(q(z_t|.) || p(z_t|h_t-1)) per sentence"),
    Metric("mutual_information", "MI", "I_q(x; z_enc) over the split, nats"),
    *(Metric(active_units_key(t), f"AU@{t:g}", f"units of z_enc with Cov_x E_q[z] > {t:g}")
      for t in ACTIVE_UNIT_THRESHOLDS),
    Metric("true_nll", "true NLL", "the synthetic corpus's exact NLL per sentence"),
    Metric("nll_gap", "gap", "IW-NLL minus true NLL, per sentence"),
    Metric("nll_gap_per_token", "gap/token", "IW-NLL minus true NLL, per token"),
    Metric("latent_probe_accuracy", "z_enc probe acc.",
           "nearest-class-mean accuracy of the posterior means on the true latent (held-out half)"),
    Metric("latent_probe_chance", "probe chance", "majority-label accuracy on the same held-out half"),
)


def check_iw_samples(samples: int) -> None:
    if samples < 1:
        raise EvaluationError(f"the number of importance samples must be at least 1, got {samples}; "
                              f"the protocol's default is {DEFAULT_IW_SAMPLES}")


class _Totals:
    """Per-sentence values of a split, gathered batch by batch in the split's order."""

    def __init__(self):
        self.values: dict[str, list[torch.Tensor]] = {}

    def add(self, key: str, value: torch.Tensor) -> None:
        self.values.setdefault(key, []).append(value.detach().double().cpu())

    def cat(self, key: str) -> torch.Tensor:
        return torch.cat(self.values[key])

    def sum(self, key: str) -> float:
        return self.cat(key).sum().item()


def evaluate(model: SeqVAE, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
             iw_samples: int = DEFAULT_IW_SAMPLES, seed: int = 0,
             memory_budget_mb: int = DEFAULT_MEMORY_BUDGET_MB,
             true_nll: Sequence[float] | None = None, true_latent: Sequence[Hashable] | None = None,
             progress: bool = False) -> dict:
    """Every metric of the protocol over one split.

    ``batches`` yield (tokens, lengths) as :meth:`SeqVAE.forward` takes them, covering the split once, in its order
    (for example ``make_loader(encoded, batch_size, pad_id, shuffle=False, seed=0)``). ``true_nll`` and
    ``true_latent`` (one per sentence, in the same order) add the synthetic corpus's metrics. The model is put in
    eval mode for the duration; random draws come from a generator seeded with ``seed``, so a result is
    reproducible and the caller's random state is left alone.
    """
    check_iw_samples(iw_samples)
    started = time.perf_counter()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    totals = _Totals()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.inference_mode():
        torch.manual_seed(seed)
        try:
            for tokens, lengths in tqdm(batches, desc="evaluating", unit="batch", disable=not progress):
                _score_batch(model, tokens.to(device), lengths.to(device), iw_samples,
                             memory_budget_mb * 2 ** 20, totals)
        finally:
            model.train(was_training)
        if "tokens" not in totals.values:
            raise EvaluationError("there are no sentences to evaluate: the split is empty")
        result = _aggregate(model, totals, iw_samples, seed, true_nll, true_latent)
    result["seconds"] = time.perf_counter() - started
    return result


def _score_batch(model: SeqVAE, tokens: torch.Tensor, lengths: torch.Tensor, iw_samples: int,
                 memory_budget_bytes: int, totals: _Totals) -> None:
    totals.add("tokens", lengths)
    paper = model(tokens, lengths, latent_mode="prior_mean")
    totals.add("paper_nll", paper.nll)
    totals.add("words", paper.words)
    bound = model(tokens, lengths, latent_mode="posterior")
    totals.add("elbo_nll", bound.neg_elbo)
    for name, value in bound.kl.items():
        totals.add(kl_key(name), value)
    totals.add("iw_nll", -importance_log_likelihood(model, tokens, lengths, iw_samples, memory_budget_bytes))
    if model.encoder is not None:
        posterior = model.encoder(tokens, lengths).posterior
        totals.add("posterior_mean", posterior.mean)
        totals.add("posterior_logvar", posterior.logvar)


def _aggregate(model: SeqVAE, totals: _Totals, iw_samples: int, seed: int,
               true_nll: Sequence[float] | None, true_latent: Sequence[Hashable] | None) -> dict:
    sentences = totals.cat("tokens").numel()
    words, tokens = totals.sum("words"), totals.sum("tokens")
    metrics: dict[str, float | int | None] = {
        "paper_nll": totals.sum("paper_nll") / sentences,
        "reconstruction_ppl": math.exp(totals.sum("paper_nll") / words) if words else None,
        "elbo_nll": totals.sum("elbo_nll") / sentences,
        "iw_nll": totals.sum("iw_nll") / sentences,
        "iw_ppl": math.exp(totals.sum("iw_nll") / tokens),
    }
    for name in model.kl_terms:
        metrics[kl_key(name)] = totals.sum(kl_key(name)) / sentences
    if model.encoder is not None and sentences >= 2:
        means = totals.cat("posterior_mean")
        posterior = DiagGaussian(means, totals.cat("posterior_logvar"))
        metrics["mutual_information"] = mutual_information(posterior, generator=torch.Generator().manual_seed(seed))
        for threshold, count in active_units(means).items():
            metrics[active_units_key(threshold)] = count
    if true_nll is not None:
        _check_aligned("true NLL", true_nll, sentences)
        metrics.update(nll_gap(totals.cat("iw_nll").tolist(), true_nll, int(tokens)))
    if true_latent is not None and model.encoder is not None and sentences >= 2:
        _check_aligned("true latent", true_latent, sentences)
        metrics.update(latent_probe(totals.cat("posterior_mean"), list(true_latent), seed))
    return {"protocol_version": PROTOCOL_VERSION, "sentences": sentences, "words": int(words),
            "tokens": int(tokens), "iw_samples": iw_samples, "iw_exact": not has_latents(model), "seed": seed,
            "metrics": metrics}


def _check_aligned(what: str, values: Sequence, sentences: int) -> None:
    if len(values) != sentences:
        raise EvaluationError(f"{len(values)} values of the {what} for {sentences} sentences: give one per sentence "
                              "of the evaluated split, in its order")

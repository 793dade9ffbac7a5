"""The evaluation protocol: which numbers a result holds, how each is estimated, and its version.

A result is a plain JSON-safe dict (see :func:`evaluate`); the version in it changes whenever a number would change
meaning, so results of different versions are never compared. ``docs/metrics.md`` defines every metric.
"""

from __future__ import annotations

import math
import time
from sys import float_info
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Hashable, Iterable, Iterator, Sequence

import torch
from tqdm import tqdm

from seqvae_zoo.data.base import Corpus
from seqvae_zoo.data.batching import make_loader
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
    """One number of a result: ``path`` is where it sits in the result dict, dotted (``"iw.nll"``)."""

    path: str
    label: str
    description: str


#: Every metric a result may hold, in the order tables show them. KL terms of other latents appear as ``kl.<name>``.
METRICS: tuple[Metric, ...] = (
    Metric("paper.nll", "NLL (paper)", "reconstruction NLL/sentence: z_t at prior mean, z_enc ~ q; no KL"),
    Metric("paper.kl", "KL (paper)", "KL(q(z_enc|x) || p(z_enc))/sentence"),
    Metric("paper.ppl", "recon. PPL (paper)", "exp(sum paper NLL / sum words), eos not counted"),
    Metric("elbo.nll", "ELBO-NLL", "one-sample -ELBO/sentence (analytic KL terms)"),
    Metric("iw.nll", "IW-NLL", "importance-weighted NLL/sentence, K samples of every latent"),
    Metric("iw.ppl", "PPL (IW)", "exp(sum IW-NLL / sum tokens), eos counted"),
    Metric("kl.z_enc", "KL z_enc", "KL(q(z_enc|x) || p(z_enc))/sentence"),
    Metric("kl.z_t", "KL z_t", "sum_t KL(q(z_t|.) || p(z_t|h_t-1))/sentence"),
    Metric("latent.mi", "MI", "I_q(x; z_enc) over the split, nats"),
    Metric("latent.au", "AU", f"units of z_enc with Cov_x E_q[z] > {ACTIVE_UNIT_THRESHOLDS[0]:g}"),
    Metric("latent.au_strict", "AU strict", f"units of z_enc with Cov_x E_q[z] > {ACTIVE_UNIT_THRESHOLDS[1]:g}"),
    Metric("synthetic.true_nll", "true NLL", "the corpus's exact NLL/sentence"),
    Metric("synthetic.gap", "gap", "IW-NLL - true NLL, per sentence"),
    Metric("synthetic.gap_per_token", "gap/token", "IW-NLL - true NLL, per token"),
    Metric("synthetic.probe_accuracy", "z_enc probe", "nearest-class-mean accuracy on the true latent, held-out half"),
    Metric("synthetic.probe_chance", "probe chance", "majority-label accuracy, same half"),
)


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Within the block, random draws follow ``seed``; the caller's random state is restored afterwards."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def check_iw_samples(samples: int) -> None:
    if samples < 1:
        raise EvaluationError(f"the number of importance samples must be at least 1, got {samples}; "
                              f"the protocol's default is {DEFAULT_IW_SAMPLES}")


class _Totals:
    """Per-sentence values of a split, gathered batch by batch."""

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
    """Every metric of the protocol over the sentences of ``batches``, as a JSON-safe dict.

    ``batches`` yield (tokens, lengths) as :meth:`SeqVAE.forward` takes them and cover a split once.
    ``true_nll`` and ``true_latent`` (one per sentence, in the order the batches give the sentences) add the
    synthetic corpus's metrics; :func:`evaluate_corpus` lines them up. The model is put in eval mode for the
    duration; random draws follow ``seed``, so a result is reproducible, and the caller's random state is left as
    it was.
    """
    check_iw_samples(iw_samples)
    started = time.perf_counter()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    totals = _Totals()
    with seeded(seed, device), torch.inference_mode():
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


def evaluate_corpus(model: SeqVAE, vocab, corpus: Corpus, split: str = "test", *,
                    iw_samples: int = DEFAULT_IW_SAMPLES, batch_size: int = 64, seed: int = 0,
                    memory_budget_mb: int = DEFAULT_MEMORY_BUDGET_MB, progress: bool = False) -> dict:
    """:func:`evaluate` on one split of a loaded corpus, encoded with ``vocab``, in length-sorted batches; the
    synthetic corpus's true NLL and latents (``corpus.extras``) are used when it has them."""
    if split not in corpus.splits:
        raise EvaluationError(f"dataset {corpus.name!r} has no split {split!r}; its splits are "
                              f"{', '.join(corpus.splits)}")
    check_iw_samples(iw_samples)
    loader = make_loader(vocab.encode_all(corpus.splits[split]), batch_size, vocab.pad_id, shuffle=False, seed=seed)
    order = [index for batch in loader.batch_sampler.batches() for index in batch]
    truth = {}
    for key in ("true_nll", "true_latent"):
        if split in corpus.extras.get(key, {}):
            values = corpus.extras[key][split]
            values = values.tolist() if hasattr(values, "tolist") else list(values)  # numpy arrays -> Python
            truth[key] = [values[i] for i in order]
    result = evaluate(model, loader, iw_samples=iw_samples, seed=seed, memory_budget_mb=memory_budget_mb,
                      progress=progress, **truth)
    return {"dataset": corpus.name, "fingerprint": corpus.fingerprint, "split": split, **result}


def _score_batch(model: SeqVAE, tokens: torch.Tensor, lengths: torch.Tensor, iw_samples: int,
                 memory_budget_bytes: int, totals: _Totals) -> None:
    totals.add("tokens", lengths)
    paper = model(tokens, lengths, latent_mode="prior_mean")
    totals.add("paper_nll", paper.nll)
    totals.add("words", paper.words)
    bound = model(tokens, lengths, latent_mode="posterior")
    totals.add("elbo_nll", bound.neg_elbo)
    for name, value in bound.kl.items():
        totals.add(f"kl.{name}", value)
    totals.add("iw_nll", -importance_log_likelihood(model, tokens, lengths, iw_samples, memory_budget_bytes))
    if model.encoder is not None:
        posterior = model.encoder(tokens, lengths).posterior
        totals.add("posterior_mean", posterior.mean)
        totals.add("posterior_logvar", posterior.logvar)


def _aggregate(model: SeqVAE, totals: _Totals, iw_samples: int, seed: int,
               true_nll: Sequence[float] | None, true_latent: Sequence[Hashable] | None) -> dict:
    sentences = totals.cat("tokens").numel()
    words, tokens = totals.sum("words"), totals.sum("tokens")
    has_encoder = model.encoder is not None
    result = {
        "protocol_version": PROTOCOL_VERSION, "sentences": sentences, "words": int(words), "tokens": int(tokens),
        "seed": seed,
        "paper": {"nll": totals.sum("paper_nll") / sentences,
                  "kl": totals.sum("kl.z_enc") / sentences if has_encoder else None,
                  "ppl": perplexity(totals.sum("paper_nll"), words)},
        "elbo": {"nll": totals.sum("elbo_nll") / sentences},
        "iw": {"nll": totals.sum("iw_nll") / sentences, "ppl": perplexity(totals.sum("iw_nll"), tokens),
               "samples": iw_samples, "exact": not has_latents(model)},
        "kl": {name: totals.sum(f"kl.{name}") / sentences for name in model.kl_terms},
    }
    if has_encoder and sentences >= 2:
        posterior = DiagGaussian(totals.cat("posterior_mean"), totals.cat("posterior_logvar"))
        standard, strict = active_units(posterior.mean, ACTIVE_UNIT_THRESHOLDS).values()
        result["latent"] = {"mi": mutual_information(posterior, generator=torch.Generator().manual_seed(seed)),
                            "au": standard, "au_strict": strict}
    synthetic = {}
    if true_nll is not None:
        _check_aligned("true NLL", true_nll, sentences)
        synthetic.update(nll_gap(totals.cat("iw_nll").tolist(), true_nll, int(tokens)))
    if true_latent is not None and has_encoder and sentences >= 2:
        _check_aligned("true latent", true_latent, sentences)
        synthetic.update(latent_probe(totals.cat("posterior_mean"), list(true_latent), seed))
    if synthetic:
        result["synthetic"] = synthetic
    return result


def perplexity(nats: float, units: float) -> float | None:
    """exp(nats / units); None where it is not a finite float (no units, or a model too poor to express)."""
    if not units or nats / units > math.log(float_info.max):
        return None
    return math.exp(nats / units)


def _check_aligned(what: str, values: Sequence, sentences: int) -> None:
    if len(values) != sentences:
        raise EvaluationError(f"{len(values)} values of the {what} for {sentences} sentences: give one per sentence "
                              "of the evaluated split, in its order")

"""The evaluation protocol: which numbers a result holds, how each is estimated, and its version.

A result is a plain JSON-safe dict (see :func:`evaluate`); the version in it changes whenever a number would change
meaning, so results of different versions are never compared. ``docs/metrics.md`` defines every metric.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from sys import float_info
from typing import Hashable, Iterable, Iterator, Sequence

import torch
from tqdm import tqdm

from seqvae_zoo.data.base import Corpus
from seqvae_zoo.data.batching import make_loader
from seqvae_zoo.errors import UserError
from seqvae_zoo.evaluation.importance import importance_log_likelihood
from seqvae_zoo.evaluation.latent import ACTIVE_UNIT_THRESHOLDS, active_units, mutual_information
from seqvae_zoo.evaluation.saved_pass import SavedPass
from seqvae_zoo.evaluation.synthetic import latent_probe, nll_gap
from seqvae_zoo.latents.base import LatentDistribution, concatenate
from seqvae_zoo.model import SeqVAE
from seqvae_zoo.training.stopping import StopRequest

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
        self.posteriors: list[LatentDistribution] = []

    def add(self, key: str, value: torch.Tensor) -> None:
        self.values.setdefault(key, []).append(value.detach().double().cpu())

    def cat(self, key: str) -> torch.Tensor:
        return torch.cat(self.values[key])

    def sum(self, key: str) -> float:
        return self.cat(key).sum().item()

    def add_posterior(self, posterior: LatentDistribution) -> None:
        self.posteriors.append(posterior.map(lambda parameter: parameter.detach().double().cpu()))


def evaluate(model: SeqVAE, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
             iw_samples: int = DEFAULT_IW_SAMPLES, seed: int = 0,
             memory_budget_mb: int = DEFAULT_MEMORY_BUDGET_MB,
             true_nll: Sequence[float] | None = None, true_latent: Sequence[Hashable] | None = None,
             progress: bool = False) -> dict:
    """Every metric of the protocol over the sentences of ``batches``, as a JSON-safe dict.

    ``batches`` yield (tokens, lengths) as :meth:`SeqVAE.forward` takes them and cover a split once.
    ``true_nll`` and ``true_latent`` (one per sentence, in the order the batches give the sentences) add the
    synthetic corpus's metrics; :func:`evaluate_corpus` lines them up. Two passes: :func:`evaluate_bounds`, then
    :func:`importance_nll`. The model is put in eval mode for the duration; random draws follow ``seed``, so a
    result is reproducible, and the caller's random state is left as it was.
    """
    check_iw_samples(iw_samples)
    started = time.perf_counter()
    batches = list(batches)
    result = evaluate_bounds(model, batches, seed=seed, true_latent=true_latent, progress=progress)
    iw_nll = importance_nll(model, batches, iw_samples=iw_samples, seed=seed, memory_budget_mb=memory_budget_mb,
                            progress=progress)
    return {**with_importance(result, iw_nll, iw_samples, true_nll), "seconds": time.perf_counter() - started}


def evaluate_bounds(model: SeqVAE, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *, seed: int = 0,
                    true_latent: Sequence[Hashable] | None = None, progress: bool = False) -> dict:
    """The metrics of one forward pass per sentence and mode (the paper's protocol, the ELBO, the KL terms, MI,
    active units, the synthetic probe): minutes on PTB, where the importance-weighted pass takes half an hour."""
    started = time.perf_counter()
    device = next(model.parameters()).device
    totals = _Totals()
    with seeded(seed, device), evaluating(model):
        for tokens, lengths in tqdm(batches, desc="evaluating bounds", unit="batch", disable=not progress):
            _score_bounds(model, tokens.to(device), lengths.to(device), totals)
        if "tokens" not in totals.values:
            raise EvaluationError("there are no sentences to evaluate: the split is empty")
        result = _aggregate(model, totals, seed, true_latent)
    result["seconds"] = time.perf_counter() - started
    return result


def importance_nll(model: SeqVAE, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], *,
                   iw_samples: int = DEFAULT_IW_SAMPLES, seed: int = 0,
                   memory_budget_mb: int = DEFAULT_MEMORY_BUDGET_MB, progress: bool = False,
                   state_path: str | Path | None = None, stop: StopRequest | None = None,
                   poll_s: float = 2.0) -> list[float]:
    """The IW-NLL of every sentence, batch by batch, each batch with random draws of its own seed.

    With ``state_path``, the values so far are saved there after every batch, with each batch's tokens (the
    protocol's batches go from the shortest sentences to the longest, so the time left is the tokens left at the
    rate so far, not the batches left), and a later call with the same settings continues with the batches not yet
    done, with the same result as an uninterrupted pass; other processes may work on the same pass meanwhile
    (:func:`help_importance_nll`), and this one waits for the batches they hold, looking every ``poll_s`` seconds.
    ``stop`` is consulted before each batch and ends the pass with :class:`StopRequested`.
    """
    saved, batches = _open_pass(batches, iw_samples, seed, state_path)
    with _progress_bar(saved, iw_samples, progress) as bar:
        while True:
            _run_batches(model, batches, saved, iw_samples, seed, memory_budget_mb, stop, bar, from_end=False)
            values = saved.values()
            if values is not None:
                return [value for batch in values for value in batch]
            if stop is not None:  # every open batch is another process's, under way: wait for it
                stop.check()
            time.sleep(poll_s)


def help_importance_nll(model: SeqVAE, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], *, iw_samples: int,
                        seed: int, state_path: str | Path, memory_budget_mb: int = DEFAULT_MEMORY_BUDGET_MB,
                        stop: StopRequest | None = None) -> int:
    """Work on the IW pass that :func:`importance_nll` with the same settings saves in ``state_path``: take the
    batches no process has taken, from the longest down, until none is left; return how many this call did. The
    values are those the pass would compute alone (each batch draws from its own seed)."""
    saved, batches = _open_pass(batches, iw_samples, seed, state_path)
    return _run_batches(model, batches, saved, iw_samples, seed, memory_budget_mb, stop, None, from_end=True)


def _open_pass(batches, iw_samples: int, seed: int, state_path: str | Path | None) -> tuple[SavedPass, list]:
    """The pass over ``batches`` with these settings, as saved in ``state_path`` (or in memory), and the batches."""
    check_iw_samples(iw_samples)
    batches = list(batches)
    identity = {"iw_samples": iw_samples, "seed": seed, "batches": len(batches),
                "sentences": sum(len(lengths) for _, lengths in batches)}
    return SavedPass(state_path, identity, [int(lengths.sum()) for _, lengths in batches]), batches


@contextmanager
def _progress_bar(saved: SavedPass, iw_samples: int, progress: bool) -> Iterator[tqdm]:
    saved.values()  # reads what is saved, so that the bar starts where the pass stands
    with tqdm(total=sum(saved.batch_tokens), initial=saved.tokens_done, desc=f"IW-NLL, K={iw_samples}",
              unit="token", disable=not progress) as bar:
        yield bar


def _run_batches(model: SeqVAE, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], saved: SavedPass,
                 iw_samples: int, seed: int, memory_budget_mb: int, stop: StopRequest | None, bar: tqdm | None,
                 from_end: bool) -> int:
    """Compute the batches of ``saved`` that no process has taken, one claim at a time; return how many."""
    device = next(model.parameters()).device
    done = 0
    with evaluating(model):
        while (index := saved.next_batch(from_end=from_end, stop=stop)) is not None:
            tokens, lengths = batches[index]
            started = time.perf_counter()
            with seeded(seed * 1_000_003 + index, device):
                log_likelihood = importance_log_likelihood(model, tokens.to(device), lengths.to(device), iw_samples,
                                                           memory_budget_mb * 2 ** 20)
            saved.finish_batch(index, (-log_likelihood).double().cpu().tolist(), time.perf_counter() - started)
            done += 1
            if bar is not None:
                bar.update(saved.batch_tokens[index])
    return done


def with_importance(result: dict, iw_nll: Sequence[float], iw_samples: int,
                    true_nll: Sequence[float] | None = None) -> dict:
    """:func:`evaluate_bounds`'s ``result`` completed with the IW-NLL of its sentences (same order)."""
    sentences, tokens = result["sentences"], result["tokens"]
    _check_aligned("IW-NLL", iw_nll, sentences)
    total = math.fsum(iw_nll)
    completed = {**result, "iw": {"nll": total / sentences, "ppl": perplexity(total, tokens), "samples": iw_samples,
                                  "exact": not result["kl"]}}
    if true_nll is not None:
        _check_aligned("true NLL", true_nll, sentences)
        completed["synthetic"] = {**result.get("synthetic", {}), **nll_gap(list(iw_nll), true_nll, tokens)}
    return completed


@contextmanager
def evaluating(model: SeqVAE) -> Iterator[None]:
    """Eval mode and no autograd within the block; the model's mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def evaluate_corpus(model: SeqVAE, vocab, corpus: Corpus, split: str = "test", *,
                    iw_samples: int = DEFAULT_IW_SAMPLES, batch_size: int = 64, seed: int = 0,
                    memory_budget_mb: int = DEFAULT_MEMORY_BUDGET_MB, progress: bool = False) -> dict:
    """:func:`evaluate` on one split of a loaded corpus (see :class:`SplitBatches`)."""
    check_iw_samples(iw_samples)
    split_batches = SplitBatches(vocab, corpus, split, batch_size, seed)
    result = evaluate(model, split_batches.batches, iw_samples=iw_samples, seed=seed,
                      memory_budget_mb=memory_budget_mb, progress=progress, **split_batches.truth)
    return {**split_batches.identity, **result}


def scored_as(refinement: str | None) -> dict:
    """A result's note of how the model's posterior was read (``Procedure.scoring``), where it was not the
    encoder's as it is: ``posterior_refinement``."""
    return {"posterior_refinement": refinement} if refinement else {}


class SplitBatches:
    """One split of a loaded corpus encoded with ``vocab`` in length-sorted batches, with the synthetic corpus's
    true NLL and latents (``corpus.extras``) in the same order where it has them."""

    def __init__(self, vocab, corpus: Corpus, split: str, batch_size: int = 64, seed: int = 0):
        if split not in corpus.splits:
            raise EvaluationError(f"dataset {corpus.name!r} has no split {split!r}; its splits are "
                                  f"{', '.join(corpus.splits)}")
        loader = make_loader(vocab.encode_all(corpus.splits[split]), batch_size, vocab.pad_id, shuffle=False,
                             seed=seed)
        self.batches = list(loader)
        order = [index for batch in loader.batch_sampler.batches() for index in batch]
        self.truth: dict[str, list] = {}
        for key in ("true_nll", "true_latent"):
            if split in corpus.extras.get(key, {}):
                values = corpus.extras[key][split]
                values = values.tolist() if hasattr(values, "tolist") else list(values)  # numpy arrays -> Python
                self.truth[key] = [values[i] for i in order]
        self.identity = {"dataset": corpus.name, "fingerprint": corpus.fingerprint, "split": split}


def _score_bounds(model: SeqVAE, tokens: torch.Tensor, lengths: torch.Tensor, totals: _Totals) -> None:
    totals.add("tokens", lengths)
    paper = model(tokens, lengths, latent_mode="prior_mean")
    totals.add("paper_nll", paper.nll)
    totals.add("words", paper.words)
    bound = model(tokens, lengths, latent_mode="posterior")
    totals.add("elbo_nll", bound.neg_elbo)
    for name, value in bound.kl.items():
        totals.add(f"kl.{name}", value)
    if model.encoder is not None:
        totals.add_posterior(model.encoder(tokens, lengths).posterior)


def _aggregate(model: SeqVAE, totals: _Totals, seed: int, true_latent: Sequence[Hashable] | None) -> dict:
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
        "kl": {name: totals.sum(f"kl.{name}") / sentences for name in model.kl_terms},
    }
    if has_encoder and sentences >= 2:
        posterior = concatenate(totals.posteriors)
        standard, strict = active_units(posterior.mean, ACTIVE_UNIT_THRESHOLDS).values()
        result["latent"] = {"mi": mutual_information(posterior, generator=torch.Generator().manual_seed(seed)),
                            "au": standard, "au_strict": strict}
        if true_latent is not None:
            _check_aligned("true latent", true_latent, sentences)
            result["synthetic"] = latent_probe(posterior.mean, list(true_latent), seed)
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

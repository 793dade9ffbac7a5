"""The examples of the latent-family and prior seams train on a small synthetic corpus, and everything downstream
reads them: IW-NLL is below the ELBO's NLL, MI and active units are measured, and the summarization ranker orders
sentences by the vMF representation. examples/vmf_latent and examples/vamp_prior are gin files over the built-in
components; examples/power_spherical is a new family in a file of its own, registered by its gin file's import."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from plugin_fixture import isolated_registrations
from seqvae_zoo.evaluation import evaluate_corpus
from seqvae_zoo.latents.vmf import VonMisesFisher
from seqvae_zoo.summarization.rankers.base import RankingInput
from seqvae_zoo.summarization.rankers.cosine import CosineRanker
from seqvae_zoo.summarization.rankers.kl import KLRanker
from seqvae_zoo.summarization.representations.posterior import Posterior
from seqvae_zoo.training.run import train_run
from test_training import best_unigram_nll

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
GIN = {"vmf": EXAMPLES / "vmf_latent" / "vrae_vmf.gin", "vamp": EXAMPLES / "vamp_prior" / "vrae_vamp.gin",
       "power_spherical": EXAMPLES / "power_spherical" / "vrae_power_spherical.gin"}
TINY = ["EMBEDDING = 16", "HIDDEN = 32", "LATENT = 4", "training.TrainingSettings.batch_size = 16",
        "training.TrainingSettings.lr = 1e-2", "training.TrainingSettings.checkpoint_every = 0",
        "kl_schedules.linear.warmup_epochs = 1.0", "priors.vamp.components = 8", "priors.vamp.length = 4"]
DATA = {"components": 2, "states": 4, "words": 30, "train_size": 320, "valid_size": 64, "test_size": 64}


@pytest.fixture(scope="module", params=sorted(GIN))
def trained(request, tmp_path_factory):
    with pytest.MonkeyPatch.context() as monkeypatch, isolated_registrations(monkeypatch):
        monkeypatch.syspath_prepend(str(GIN[request.param].parent))  # where a gin file's import finds its module
        run = train_run([str(GIN[request.param])], "synthetic", tmp_path_factory.mktemp(request.param),
                        bindings=TINY, epochs=2, progress=False, device="cpu", dataset_options=DATA)
    return request.param, run


def test_the_example_trains(trained):
    """An untrained model spreads its probability over the vocabulary (log V per token); after two short epochs the
    reconstruction NLL is far below that, and the validation -ELBO, the KL term included, is below the best unigram
    model's NLL: the model reads the context."""
    _, run = trained
    valid = run.corpus.splits["valid"]
    uniform = math.log(len(run.vocab)) * sum(len(sentence) + 1 for sentence in valid) / len(valid)
    last = run.history[-1]
    assert last["valid_nll"] < 0.75 * uniform, (last, uniform)
    assert last["valid_neg_elbo"] < best_unigram_nll(valid), last


def test_importance_weighted_nll_is_below_the_elbo_and_the_latent_is_measured(trained):
    _, run = trained
    result = evaluate_corpus(run.model, run.vocab, run.corpus, "test", iw_samples=50)
    assert result["iw"]["nll"] < result["elbo"]["nll"]
    latent = result["latent"]
    assert 0.0 <= latent["mi"] <= math.log(result["sentences"]) and 0 <= latent["au"] <= 4


def test_the_kl_ranker_reads_the_vmf_posterior(trained):
    """Sentences of one kappa: KL(sentence || topic) falls as the cosine to the topic's direction rises, so the KL
    ranking is the cosine ranking; the topic's direction is the mean of the sentences' directions."""
    name, run = trained
    if name != "vmf":
        pytest.skip("the vMF example's representation")
    sentences = run.corpus.splits["test"][:12]
    representation = Posterior(run.model, run.vocab).represent(sentences)
    assert isinstance(representation.sentences, VonMisesFisher)
    directions = representation.sentences.direction
    assert torch.allclose(representation.topic.direction, F.normalize(directions.mean(0), dim=0), atol=1e-6)
    item = RankingInput(topic=None, sentences=sentences, candidates=list(range(12)), representation=representation)
    assert KLRanker().rank(item) == CosineRanker().rank(item)


def test_the_power_spherical_plugin_has_its_defining_moments(monkeypatch):
    """E[mu^T z] = 2 E[t] - 1 = kappa / (d - 1 + kappa) for t ~ Beta((d-1)/2 + kappa, (d-1)/2); samples on the sphere;
    KL to the uniform distribution matches E_q[log q(z) + log |S^{d-1}|] at 40,000 draws."""
    with isolated_registrations(monkeypatch):
        monkeypatch.syspath_prepend(str(GIN["power_spherical"].parent))
        from power_spherical import PowerSphericalFamily

        dim, kappa = 8, 20.0
        q = PowerSphericalFamily(latent_dim=dim, kappa=kappa).posterior(
            torch.randn(2, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
        torch.manual_seed(1)
        z = q.map(lambda t: t.expand(40_000, *t.shape)).rsample()
        assert torch.allclose(z.norm(dim=-1), torch.ones(()).double(), atol=1e-12)
        w = (z * q.direction).sum(-1)
        assert (w.mean(0) - kappa / (dim - 1 + kappa)).abs().max() < 5 * w.std() / 200
        log_ratio = q.log_prob(z) + math.log(2 * math.pi ** (dim / 2) / math.gamma(dim / 2))
        assert (log_ratio.mean(0) - q.kl_uniform()).abs().max() < 5 * log_ratio.std() / 200

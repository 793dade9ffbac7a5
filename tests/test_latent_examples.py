"""The examples of the latent-family and prior seams (examples/vmf_latent, examples/vamp_prior) train on a small
synthetic corpus, and everything downstream reads them: IW-NLL is below the ELBO's NLL, MI and active units are
measured, and the summarization ranker orders sentences by the vMF representation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from seqvae_zoo.evaluation import evaluate_corpus
from seqvae_zoo.latents.vmf import VonMisesFisher
from seqvae_zoo.summarization.rankers.base import RankingInput
from seqvae_zoo.summarization.rankers.cosine import CosineRanker
from seqvae_zoo.summarization.rankers.kl import KLRanker
from seqvae_zoo.summarization.representations.posterior import Posterior
from seqvae_zoo.training.run import train_run
from test_training import best_unigram_nll

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
GIN = {"vmf": EXAMPLES / "vmf_latent" / "vrae_vmf.gin", "vamp": EXAMPLES / "vamp_prior" / "vrae_vamp.gin"}
TINY = ["EMBEDDING = 16", "HIDDEN = 32", "LATENT = 4", "training.TrainingSettings.batch_size = 16",
        "training.TrainingSettings.lr = 1e-2", "training.TrainingSettings.checkpoint_every = 0",
        "kl_schedules.linear.warmup_epochs = 1.0", "priors.vamp.components = 8", "priors.vamp.length = 4"]
DATA = {"components": 2, "states": 4, "words": 30, "train_size": 320, "valid_size": 64, "test_size": 64}


@pytest.fixture(scope="module", params=sorted(GIN))
def trained(request, tmp_path_factory):
    run = train_run([str(GIN[request.param])], "synthetic", tmp_path_factory.mktemp(request.param), bindings=TINY,
                    epochs=2, progress=False, device="cpu", dataset_options=DATA)
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

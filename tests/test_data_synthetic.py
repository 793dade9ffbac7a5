"""The synthetic corpus: its exact likelihood against brute force, its normalization, determinism, and metadata."""

import itertools

import numpy as np
import pytest

from seqvae_zoo.data import DataError, load_dataset
from seqvae_zoo.data.synthetic import HMMMixture, component_posterior, log_likelihood, pseudo_word
from seqvae_zoo.data.vocab import build_vocabulary
from seqvae_zoo.registry import DATASETS


def tiny_mixture(min_stop=0.0, seed=0):
    rng = np.random.default_rng(seed)
    components, states, words = 2, 3, 3
    return HMMMixture(weights=np.array([0.3, 0.7]),
                      initial=rng.dirichlet(np.ones(states), size=components),
                      transition=rng.dirichlet(np.ones(states), size=(components, states)),
                      stop=rng.uniform(min_stop, 1.0, size=(components, states)),
                      emission=rng.dirichlet(np.ones(words), size=(components, states)))


def brute_force_probability(model, words):
    """Sum over components and every state path of the probability of the words followed by end-of-sentence."""
    total = 0.0
    for k in range(len(model.weights)):
        for path in itertools.product(range(model.initial.shape[1]), repeat=len(words)):
            p = model.weights[k] * model.initial[k, path[0]] * model.emission[k, path[0], words[0]]
            for before, state, word in zip(path, path[1:], words[1:]):
                p *= (1 - model.stop[k, before]) * model.transition[k, before, state] * model.emission[k, state, word]
            total += p * model.stop[k, path[-1]]
    return total


def test_exact_nll_equals_brute_force_sum_over_latents_and_paths():
    model = tiny_mixture()
    sentences = [list(words) for length in (1, 2, 3, 4) for words in itertools.product(range(3), repeat=length)]
    exact = np.exp(log_likelihood(model.joint_log_likelihoods(sentences)))
    brute = np.array([brute_force_probability(model, words) for words in sentences])
    np.testing.assert_allclose(exact, brute, rtol=1e-10)


def test_probabilities_with_end_of_sentence_sum_to_one():
    model = tiny_mixture(min_stop=0.6, seed=1)
    longest = 9
    sentences = [list(words) for length in range(1, longest + 1)
                 for words in itertools.product(range(3), repeat=length)]
    total = np.exp(log_likelihood(model.joint_log_likelihoods(sentences))).sum()
    assert 1 - 0.4 ** longest <= total <= 1 + 1e-9  # only sentences longer than 9 words are missing


def test_long_sentences_do_not_underflow():
    model = tiny_mixture(min_stop=0.0)
    nll = -log_likelihood(model.joint_log_likelihoods([[0, 1, 2] * 200]))
    assert np.isfinite(nll).all() and nll[0] > 600  # p < 1e-261: the scaled forward keeps it finite


def test_a_component_that_cannot_produce_a_sentence_contributes_nothing():
    model = tiny_mixture()
    model.emission[0, :, 2] = 0.0  # component 0 never emits word 2
    model.emission[0] /= model.emission[0].sum(axis=1, keepdims=True)
    joint = model.joint_log_likelihoods([[2, 1], [0, 1]])
    assert joint[0, 0] == -np.inf and np.isfinite(joint[0, 1]) and np.isfinite(joint[1]).all()
    np.testing.assert_allclose(np.exp(log_likelihood(joint)), [brute_force_probability(model, [2, 1]),
                                                               brute_force_probability(model, [0, 1])], rtol=1e-10)
    assert component_posterior(joint)[0].tolist() == [0.0, 1.0]


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset("synthetic")


def test_default_corpus_is_deterministic_and_its_truth_is_consistent(synthetic):
    again = load_dataset("synthetic")
    assert again.fingerprint == synthetic.fingerprint and again.splits == synthetic.splits
    assert [synthetic.sentence_count(split) for split in ("train", "valid", "test")] == [6000, 1000, 1000]
    for split in ("train", "valid", "test"):
        truth = synthetic.metadata["truth"][split]
        nll = synthetic.extras["true_nll"][split]
        tokens = synthetic.word_count(split) + synthetic.sentence_count(split)
        assert truth["tokens"] == tokens and len(nll) == len(synthetic.extras["true_latent"][split])
        assert truth["nll_per_token"] == pytest.approx(nll.sum() / tokens)
        assert truth["nll_per_sentence"] == pytest.approx(nll.mean())
        assert 0 < truth["component_information"] <= np.log(4) + 1e-9


def test_default_corpus_is_nontrivial_and_its_latent_matters(synthetic):
    truth = synthetic.metadata["truth"]["test"]
    train = synthetic.splits["train"]
    counts = {}
    for words in train:
        for word in words:
            counts[word] = counts.get(word, 0) + 1
    tokens = sum(counts.values()) + len(train)
    unigram = -(sum(np.log(counts[w] / tokens) for words in synthetic.splits["test"] for w in words)
                + len(synthetic.splits["test"]) * np.log(len(train) / tokens)) / truth["tokens"]
    assert unigram - truth["nll_per_token"] > 0.5  # the structure is worth learning
    assert truth["component_information"] > 0.9 * np.log(4)  # a sentence nearly reveals its component
    assert 8 < np.mean([len(words) for words in train]) < 16


def test_true_latent_matches_the_component_the_sentences_came_from():
    dataset = DATASETS.get("synthetic")(test_size=300)
    corpus = dataset.load()
    ids = {pseudo_word(i): i for i in range(300)}
    sentences = [[ids[word] for word in words] for words in corpus.splits["test"]]
    posterior = component_posterior(dataset.generator().joint_log_likelihoods(sentences))
    assert (posterior.argmax(axis=1) == corpus.extras["true_latent"]["test"]).mean() > 0.9


def test_splits_have_their_own_streams_and_every_word_is_in_training(synthetic):
    smaller = load_dataset("synthetic", train_size=3000)
    assert smaller.splits["test"] == synthetic.splits["test"] and smaller.fingerprint != synthetic.fingerprint
    assert load_dataset("synthetic", seed=1, train_size=10, valid_size=10, test_size=10).splits["test"] != \
        synthetic.splits["test"][:10]
    vocab = build_vocabulary(synthetic)
    assert vocab.size == 300 + 4
    assert all(vocab.unk_id not in vocab.encode(words) for words in synthetic.splits["test"])


@pytest.mark.parametrize("options, message", [
    ({"components": 0}, "components must be a positive integer"),
    ({"seed": -1}, "seed must be a non-negative integer"),
    ({"words": 4}, "need more than 4 words"),
])
def test_bad_synthetic_options(options, message):
    with pytest.raises(DataError, match=message):
        load_dataset("synthetic", **options)

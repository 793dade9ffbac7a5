"""The embedded default corpus: sentences from a mixture of hidden Markov models, generated from a seed in seconds.

Each sentence first draws a component (its sentence-level latent), then runs that component's HMM: a start state,
a word from each state, and after each word either end-of-sentence (with the state's stop probability) or a move to
the next state. The components share a pool of function words but each prefers its own content words and has its
own transitions, so the component shapes the whole sentence. Because the model is known, the exact likelihood of
every sentence (end-of-sentence included, as a model's NLL includes it) comes from the forward algorithm: the
corpus tells how far a model is from the true entropy, and whether its latent recovers the component.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from seqvae_zoo.data.base import SPLITS, Corpus, Dataset, DataError, text_md5
from seqvae_zoo.registry import DATASETS

#: Changes whenever the same options would generate different sentences.
GENERATOR_VERSION = "hmm-mixture-v1"
_CONSONANTS, _VOWELS = "bdfgklmnprstvz", "aeiou"
_SYLLABLES = [c + v for c in _CONSONANTS for v in _VOWELS]


def pseudo_word(index: int) -> str:
    """A pronounceable two-syllable word for each index below 4,900."""
    return _SYLLABLES[index // len(_SYLLABLES)] + _SYLLABLES[index % len(_SYLLABLES)]


@dataclass
class HMMMixture:
    """A mixture of HMMs over word ids that emit whole sentences.

    ``weights`` (K,): component probabilities; ``initial`` (K, S): start states; ``emission`` (K, S, V): words per
    state; ``stop`` (K, S): probability that the sentence ends after a word emitted in that state;
    ``transition`` (K, S, S): the next state when it does not end.
    """

    weights: np.ndarray
    initial: np.ndarray
    transition: np.ndarray
    stop: np.ndarray
    emission: np.ndarray

    @classmethod
    def random(cls, rng: np.random.Generator, components: int, states: int, words: int,
               function_share: float = 0.2, leak: float = 0.1, sparsity: float = 0.1,
               transition_sparsity: float = 0.3, stop_range: tuple[float, float] = (0.04, 0.2)) -> "HMMMixture":
        """A random mixture. A third of the states emit the shared function words (``function_share`` of the
        vocabulary, with the same distributions in every component; sentences start in these states), the others
        their component's own content words. ``leak`` of each state's mass is spread evenly over all words of its
        kind, so every word occurs. Lower ``sparsity`` (a Dirichlet concentration) makes states pickier. Function
        states rarely end a sentence; content states end it with a probability drawn from ``stop_range``."""
        function_words = max(1, round(words * function_share))
        pool_size = (words - function_words) // components
        function_states = max(1, states // 3)
        if pool_size < 1 or states - function_states < 1:
            raise DataError(f"synthetic: {components} components and {states} states need more than {words} "
                            f"words and at least 2 states")

        def picky(size: int, count: int) -> np.ndarray:  # (count, size) distributions with the leak spread evenly
            return leak / size + (1 - leak) * rng.dirichlet(np.full(size, sparsity), size=count)

        emission = np.zeros((components, states, words))
        emission[:, :function_states, :function_words] = picky(function_words, function_states)
        content = np.arange(function_words, words)
        content_states = states - function_states
        for k in range(components):
            pool = content[k * pool_size:(k + 1) * pool_size]
            emission[k, function_states:, content] = leak / len(content)
            emission[k, function_states:, pool[0]:pool[-1] + 1] += \
                (1 - leak) * rng.dirichlet(np.full(pool_size, sparsity), size=content_states)
        stop = np.concatenate([rng.uniform(0.0, stop_range[0], (components, function_states)),
                               rng.uniform(*stop_range, (components, content_states))], axis=1)
        return cls(weights=np.full(components, 1.0 / components),
                   initial=np.pad(rng.dirichlet(np.ones(function_states), size=components),
                                  ((0, 0), (0, content_states))),
                   transition=rng.dirichlet(np.full(states, transition_sparsity), size=(components, states)),
                   stop=stop, emission=emission)

    @property
    def components(self) -> int:
        return len(self.weights)

    def sample(self, count: int, rng: np.random.Generator) -> tuple[list[list[int]], np.ndarray]:
        """``count`` sentences (word ids, at least one word each) and the component that generated each."""
        chosen = rng.choice(self.components, size=count, p=self.weights)
        state = _draw(self.initial[chosen], rng)
        sentences: list[list[int]] = [[] for _ in range(count)]
        active = np.arange(count)  # sentences still going, all advanced one word per round
        while active.size:
            component, current = chosen[active], state[active]
            for row, word in zip(active, _draw(self.emission[component, current], rng)):
                sentences[row].append(int(word))
            goes_on = rng.random(active.size) >= self.stop[component, current]
            active = active[goes_on]
            state[active] = _draw(self.transition[component[goes_on], current[goes_on]], rng)
        return sentences, chosen

    def joint_log_likelihoods(self, sentences: Sequence[Sequence[int]]) -> np.ndarray:
        """log p(component, sentence with end-of-sentence), (N, K), by the scaled forward algorithm, all sentences
        at once (longest first, so each step works on the sentences still going)."""
        lengths = np.array([len(words) for words in sentences])
        if lengths.min(initial=1) < 1:
            raise DataError("the synthetic corpus's sentences have at least one word; got an empty one")
        order = np.argsort(-lengths, kind="stable")
        lengths = lengths[order]
        padded = np.zeros((len(sentences), lengths.max(initial=1)), dtype=np.int64)
        for row, index in enumerate(order):
            padded[row, :lengths[row]] = sentences[index]
        continuing = self.transition * (1 - self.stop)[:, :, None]  # (K, S, S): emit, go on, move
        joint = np.zeros((len(sentences), self.components))
        log_scale = np.zeros((self.components, len(sentences)))
        alpha = self.initial[:, None, :] * self._emit(padded[:, 0])  # (K, N, S)
        for t in range(padded.shape[1]):
            going = int(np.count_nonzero(lengths > t))
            if t > 0:
                alpha = np.matmul(alpha[:, :going], continuing) * self._emit(padded[:going, t])
                log_scale = log_scale[:, :going]
            scale = alpha.sum(axis=2)  # 0 where a component cannot produce the words so far
            alpha = alpha / np.where(scale > 0, scale, 1.0)[:, :, None]
            with np.errstate(divide="ignore"):
                log_scale = log_scale + np.log(scale)
            ending = np.flatnonzero(lengths[:going] == t + 1)
            if ending.size:
                end = (alpha[:, ending] * self.stop[:, None, :]).sum(axis=2)
                with np.errstate(divide="ignore"):
                    joint[order[ending]] = (log_scale[:, ending] + np.log(end)).T
        return joint + np.log(self.weights)[None]

    def _emit(self, word_ids: np.ndarray) -> np.ndarray:
        """p(word | component, state) for one word per sentence, (K, N, S)."""
        return np.swapaxes(self.emission[:, :, word_ids], 1, 2)


def log_likelihood(joint: np.ndarray) -> np.ndarray:
    """log p(sentence), (N,), from :meth:`HMMMixture.joint_log_likelihoods`."""
    top = joint.max(axis=1)
    return top + np.log(np.exp(joint - top[:, None]).sum(axis=1))


def component_posterior(joint: np.ndarray) -> np.ndarray:
    """p(component | sentence), (N, K), from :meth:`HMMMixture.joint_log_likelihoods`."""
    return np.exp(joint - log_likelihood(joint)[:, None])


def _draw(probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index from each row of a (N, C) array of distributions."""
    below = probabilities.cumsum(axis=1) < rng.random(len(probabilities))[:, None]
    return np.minimum(below.sum(axis=1), probabilities.shape[1] - 1)


@DATASETS.register("synthetic")
class SyntheticHMMMixture(Dataset):
    """The embedded default: sentences from a seeded mixture of HMMs, with the exact NLL and true latent of each.

    A mixture of ``components`` HMMs with ``states`` states over ``words`` pseudo-words; ``train_size`` /
    ``valid_size`` / ``test_size`` sentences (each split has its own random stream, so resizing one leaves the others
    as they were).

    ``metadata["truth"][split]``: the true NLL per sentence and per token (end-of-sentence counted as a token), its
    perplexity, the token count, the entropy of the component given a sentence and the information a sentence
    carries about its component (nats). ``extras["true_nll"][split]`` and ``extras["true_latent"][split]``: the
    exact NLL and the component of each sentence."""

    def __init__(self, data_dir: str | None = None, seed: int = 0, components: int = 4, states: int = 8,
                 words: int = 300, train_size: int = 6000, valid_size: int = 1000, test_size: int = 1000):
        sizes = {"train_size": train_size, "valid_size": valid_size, "test_size": test_size}
        for name, value in {"components": components, "states": states, "words": words, **sizes}.items():
            if not isinstance(value, int) or value < 1:
                raise DataError(f"synthetic: {name} must be a positive integer; got {value!r}")
        if not isinstance(seed, int) or seed < 0:
            raise DataError(f"synthetic: seed must be a non-negative integer; got {seed!r}")
        if words > len(_SYLLABLES) ** 2:
            raise DataError(f"synthetic: at most {len(_SYLLABLES) ** 2} words; got {words}")
        super().__init__(data_dir, seed=seed, components=components, states=states, words=words, **sizes,
                         generator=GENERATOR_VERSION)
        self.seed, self.components, self.states, self.words = seed, components, states, words
        self.sizes = dict(zip(SPLITS, sizes.values()))

    def generator(self) -> HMMMixture:
        return HMMMixture.random(np.random.default_rng(self.seed), self.components, self.states, self.words)

    def load(self) -> Corpus:
        model = self.generator()
        vocabulary = [pseudo_word(i) for i in range(self.words)]
        splits, checksums, metadata = {}, {}, {}
        extras: dict[str, dict] = {"true_nll": {}, "true_latent": {}}
        for index, split in enumerate(SPLITS):
            ids, latent = model.sample(self.sizes[split], np.random.default_rng([self.seed, index]))
            joint = model.joint_log_likelihoods(ids)
            nll, posterior = -log_likelihood(joint), component_posterior(joint)
            splits[split] = [[vocabulary[i] for i in words] for words in ids]
            checksums[split] = text_md5(splits[split])
            extras["true_nll"][split], extras["true_latent"][split] = nll, latent
            tokens = sum(len(words) + 1 for words in ids)
            remaining = float(-(posterior * np.log(np.clip(posterior, 1e-300, None))).sum(axis=1).mean())
            metadata[split] = {
                "nll_per_sentence": float(nll.mean()),
                "nll_per_token": float(nll.sum() / tokens),
                "ppl": float(np.exp(nll.sum() / tokens)),
                "tokens": tokens,
                "component_entropy_given_sentence": remaining,
                "component_information": float(-(model.weights * np.log(model.weights)).sum()) - remaining,
            }
        return self.make_corpus(splits, checksums, metadata={"truth": metadata}, extras=extras)

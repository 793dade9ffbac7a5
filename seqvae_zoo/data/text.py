"""Raw text: any one-sentence-per-line files the user names (``load_dataset("text", train="a.txt", ...)``).

Words are separated by whitespace. Empty lines are skipped and counted in one warning. A split without a file is
held out from the training file (``heldout`` of its sentences, chosen by ``seed``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from seqvae_zoo.data.base import SPLITS, Corpus, Dataset, DataError, hold_out
from seqvae_zoo.data.files import file_md5, read_lines
from seqvae_zoo.registry import DATASETS


@DATASETS.register("text")
class TextFiles(Dataset):
    """Your own one-sentence-per-line files: train=PATH, and optionally valid=PATH and test=PATH.

    A split without a file is held out from train (``heldout``: the fraction of train each missing split takes).
    ``lowercase`` folds case. Paths are taken as given (``data_dir`` is not used)."""

    path_options = ("train", "valid", "test")

    def __init__(self, data_dir: str | None = None, train: str | None = None, valid: str | None = None,
                 test: str | None = None, lowercase: bool = False, heldout: float = 0.05, seed: int = 0):
        if not train:
            raise DataError("the text dataset needs a training file (valid and test are optional): on the command "
                            "line --gin \"datasets.text.train = 'corpus.txt'\", in a suite train = \"corpus.txt\" "
                            "under [dataset_options.text], in Python load_dataset(\"text\", train=PATH)")
        if not 0 < heldout < 0.5:
            raise DataError(f"heldout is the fraction of train held out per missing split, between 0 and 0.5; "
                            f"got {heldout!r}")
        missing = [split for split, path in (("valid", valid), ("test", test)) if not path]
        # the file paths are not options of the data (their checksums are); held-out settings are, when used
        options = {"lowercase": lowercase, **({"heldout": heldout, "seed": seed, "held_out": missing} if missing
                                              else {})}
        super().__init__(data_dir, **options)
        self.paths = {split: Path(path).expanduser() for split, path in zip(SPLITS, (train, valid, test)) if path}
        self.lowercase, self.heldout, self.seed, self.missing = lowercase, heldout, seed, missing

    def load(self) -> Corpus:
        splits, checksums, skipped = {}, {}, {}
        for split, path in self.paths.items():
            splits[split], skipped[split] = self._read(path)
            checksums[split] = file_md5(path)
        if any(skipped.values()):
            counts = ", ".join(f"{count:,} in {self.paths[split]}" for split, count in skipped.items() if count)
            warnings.warn(f"text: skipped {sum(skipped.values()):,} empty lines ({counts})", stacklevel=2)
        if self.missing:
            size = max(1, round(self.heldout * len(splits["train"])))
            splits["train"], held = hold_out(splits["train"], [size] * len(self.missing), self.seed)
            splits.update(zip(self.missing, held))
        return self.make_corpus(splits, checksums, metadata={
            "files": {split: str(path) for split, path in self.paths.items()},
            "held_out_from_train": self.missing})

    def _read(self, path: Path) -> tuple[list[list[str]], int]:
        """The sentences of a file and how many empty lines it had."""
        if not path.is_file():
            raise DataError(f"text: no such file {str(path)!r}")
        lines = [(line.lower() if self.lowercase else line).split() for line in read_lines(path, "text")]
        sentences = [words for words in lines if words]
        if not sentences:
            raise DataError(f"text: {path} has no sentences (it is empty or only blank lines)")
        return sentences, len(lines) - len(sentences)

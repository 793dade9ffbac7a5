"""Shared test setup: the real corpora are read from ../shared/data beside the checkout unless SEQVAE_DATA says
otherwise, and OpenMP's threads wait as under the ``seqvae`` command; ``tiny_run_dir`` is a run folder of a tiny
``vrae_sa_aux`` trained for one step, for CLI tests; ``benchmark_script`` imports a script of benchmarks/;
``own_ptb_layout`` is a data folder holding a corpus that is not PTB in PTB's layout."""

import importlib
import os
import sys
from pathlib import Path

import pytest

from seqvae_zoo.training.openmp import short_openmp_waits

short_openmp_waits()  # before torch loads: the tests train in this process, with the waits the `seqvae` command sets
os.environ.setdefault("SEQVAE_DATA", str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory):
    from seqvae_zoo.training.run import train_run

    out = tmp_path_factory.mktemp("tiny_run")
    train_run(["vrae_sa_aux"], "synthetic", out, progress=False, device="cpu", max_steps=1,
              bindings=["EMBEDDING = 16", "HIDDEN = 32", "LATENT = 4", "training.TrainingSettings.batch_size = 16"],
              dataset_options=dict(train_size=64, valid_size=16, test_size=40, words=40))
    return out


@pytest.fixture(scope="session")
def benchmark_script():
    """Import a script of benchmarks/ by name; its folder is on the path while it is imported, since the scripts
    import each other as siblings."""
    folder = str(Path(__file__).resolve().parents[1] / "benchmarks")

    def load(name: str):
        sys.path.insert(0, folder)
        try:
            return importlib.import_module(name)
        finally:
            sys.path.remove(folder)
    return load


@pytest.fixture
def own_ptb_layout(tmp_path):
    """A data folder whose ``ptb/`` holds a corpus that is not PTB under PTB's file names: the first 300 / 40 / 40
    lines of each split with a word appended."""
    shared = Path(os.environ["SEQVAE_DATA"]) / "ptb"
    folder = tmp_path / "own-data" / "ptb"
    folder.mkdir(parents=True)
    for name, count in (("ptb.train.txt", 300), ("ptb.valid.txt", 40), ("ptb.test.txt", 40)):
        lines = (shared / name).read_text().split("\n")[:count]
        (folder / name).write_text("".join(f"{line} extra\n" for line in lines))
    return folder.parent

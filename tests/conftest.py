"""Shared test setup: the real corpora are read from ../shared/data beside the checkout unless SEQVAE_DATA says
otherwise; ``tiny_run_dir`` is a run folder of a tiny ``vrae_sa_aux`` trained for one step, for CLI tests."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("SEQVAE_DATA", str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory):
    from seqvae_zoo.training.run import train_run

    out = tmp_path_factory.mktemp("tiny_run")
    train_run(["vrae_sa_aux"], "synthetic", out, progress=False, device="cpu", max_steps=1,
              bindings=["EMBEDDING = 16", "HIDDEN = 32", "LATENT = 4", "training.TrainingSettings.batch_size = 16"],
              dataset_options=dict(train_size=64, valid_size=16, test_size=40, words=40))
    return out

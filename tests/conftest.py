"""Shared test setup: the real corpora are read from ../shared/data beside the checkout unless SEQVAE_DATA says otherwise."""

import os
from pathlib import Path

os.environ.setdefault("SEQVAE_DATA", str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))

"""An importance-weighted pass kept batch by batch, which several processes can work on at once.

The IW pass is the longest part of a latent model's evaluation (hours on a large test split), so it is saved after
every batch and continued after a stop, and a bench worker with nothing else to do joins a pass another worker is
running. Each batch draws from a seed of its own, so the values do not depend on which process computed a batch or
in what order: a shared pass gives the numbers of a pass run alone.

On disk, ``<state>.json`` holds the settings the values belong to, one slot per batch (null until done), the seconds
spent and the slowest seconds per token so far. A process claims a batch by holding an exclusive lock on
``<state>.json.batch-<index>`` (removed when the batch is done), so a claim ends with its process however that
ends; reading, claiming and writing happen under a lock on the folder.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator, Sequence

from seqvae_zoo.atomic import write_json_atomically
from seqvae_zoo.training.stopping import StopRequest


class SavedPass:
    """The state of one IW pass over ``batch_tokens`` (the tokens of each batch) with the settings ``identity``,
    in ``path`` or, without one, in memory only (a pass of one process that is not kept)."""

    def __init__(self, path: str | Path | None, identity: dict, batch_tokens: Sequence[int]):
        self.path = Path(path) if path is not None else None
        self.identity = identity
        self.batch_tokens = list(batch_tokens)
        self.state = self._fresh()
        self._claims: dict[int, IO] = {}

    def next_batch(self, from_end: bool = False, stop: StopRequest | None = None) -> int | None:
        """Claim the first batch (the last, ``from_end``) that is neither done nor claimed by a live process, and
        return its index; None when there is none. ``stop`` is asked first, with the batch's expected time (its
        tokens at the slowest rate per token so far: the batches grow longer), and may raise
        :class:`StopRequested`, leaving nothing claimed."""
        with self._locked():
            order = range(len(self.batch_tokens))
            for index in reversed(order) if from_end else order:
                if self.state["values"][index] is not None:
                    continue
                if stop is not None:
                    stop.check(next_unit_s=self.state["slowest_seconds_per_token"] * self.batch_tokens[index])
                if self._claim(index):
                    return index
            return None

    def finish_batch(self, index: int, values: list[float], seconds: float) -> None:
        """Keep the values of a claimed batch and the time it took, and release its claim."""
        with self._locked():
            self.state["values"][index] = values
            self.state["seconds"] += seconds
            self.state["slowest_seconds_per_token"] = max(self.state["slowest_seconds_per_token"],
                                                          seconds / self.batch_tokens[index])
            if self.path is not None:
                write_json_atomically(self.path, self.state)
            self._release(index)

    def values(self) -> list[list[float]] | None:
        """Every batch's values once all are done (reading what other processes wrote), else None."""
        with self._locked():
            values = self.state["values"]
            return None if any(batch is None for batch in values) else [list(batch) for batch in values]

    @property
    def tokens_done(self) -> int:
        return self._tokens_of(self.state["values"])

    def _fresh(self) -> dict:
        return {**self.identity, "values": [None] * len(self.batch_tokens), "seconds": 0.0,
                "batch_tokens": self.batch_tokens, "slowest_seconds_per_token": 0.0}

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the pass's lock and have ``self.state`` as the file has it (a new state if it holds none, or holds
        another pass's)."""
        if self.path is None:
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        folder = os.open(self.path.parent, os.O_RDONLY)  # the lock is the folder's: no file of its own is left
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)
            self.state = self._read()
            yield
        finally:
            os.close(folder)

    def _read(self) -> dict:
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return self._fresh()  # none yet; or, as it is written atomically, a foreign file: start over
        if not isinstance(saved, dict) or {k: saved.get(k) for k in self.identity} != self.identity:
            return self._fresh()
        values = [None if batch is None else list(map(float, batch)) for batch in saved.get("values", [])]
        values += [None] * (len(self.batch_tokens) - len(values))  # a pass saved by one process: its first batches
        return {**self._fresh(), "values": values, "seconds": float(saved.get("seconds", 0.0)),
                "slowest_seconds_per_token": saved_pass_rate(saved, self._tokens_of(values)) or 0.0}

    def _tokens_of(self, values: list) -> int:
        return sum(tokens for tokens, batch in zip(self.batch_tokens, values) if batch is not None)

    def _claim(self, index: int) -> bool:
        if self.path is None:
            return True
        handle = open(claim_file(self.path, index), "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._claims[index] = handle
        return True

    def _release(self, index: int) -> None:
        handle = self._claims.pop(index, None)
        if handle is not None:
            claim_file(self.path, index).unlink(missing_ok=True)
            handle.close()


def open_batches(path: str | Path) -> int:
    """How many batches of the pass saved in ``path`` are neither done nor claimed by a live process: what another
    process joining it could take (0 for a pass not saved yet)."""
    path = Path(path)
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return 0
    values = saved.get("values", [])
    return sum(1 for index in range(saved.get("batches", len(values)))
               if (index >= len(values) or values[index] is None)
               and not claimed_by_a_live_process(claim_file(path, index)))


def claim_file(path: Path, index: int) -> Path:
    """The file a process holds locked while it computes batch ``index`` of the pass saved in ``path``."""
    return path.with_name(f"{path.name}.batch-{index}")


def claimed_by_a_live_process(claim: Path) -> bool:
    """Whether a process holds the lock on ``claim`` (one left by a process that died holds none)."""
    try:
        handle = open(claim)
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def saved_pass_rate(saved: dict, work_done: float) -> float | None:
    """Seconds per unit of work of a saved IW pass state: its slowest per token where it keeps one (the batches grow
    longer, and a token of a longer sentence costs more), else its mean over ``work_done``; None before any."""
    if saved.get("slowest_seconds_per_token"):
        return float(saved["slowest_seconds_per_token"])
    return saved["seconds"] / work_done if work_done and saved.get("seconds") else None

"""Length-bucketed batching: sentences of similar length share a batch, so little of each batch is padding.

:class:`BucketBatchSampler` is deterministic given its seed and epoch and remembers how far into the epoch it is, so
a run resumed from a checkpoint continues with the very next batch. :func:`make_loader` wires it into a DataLoader.
"""

from __future__ import annotations

import functools
import math
from typing import Iterable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Sampler

from seqvae_zoo.data.base import DataError


class Batch(NamedTuple):
    """Padded sentences: ``tokens`` (B, T) include end-of-sentence, ``lengths`` (B,) count it."""

    tokens: torch.Tensor
    lengths: torch.Tensor


def collate(sequences: list[list[int]], pad_id: int) -> Batch:
    """Pad encoded sentences (end-of-sentence already appended) into one batch."""
    rows = [torch.as_tensor(sequence, dtype=torch.long) for sequence in sequences]
    lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)
    return Batch(pad_sequence(rows, batch_first=True, padding_value=pad_id), lengths)


def padding_ratio(batch_lengths: Iterable[Sequence[int]]) -> float:
    """Padded positions per real token over batches, each given by its sentences' lengths."""
    padded = real = 0
    for lengths in batch_lengths:
        lengths = [int(length) for length in lengths]
        padded += len(lengths) * max(lengths) - sum(lengths)
        real += sum(lengths)
    return padded / real if real else 0.0


def token_count(encoded: Iterable[Sequence[int]]) -> int:
    """Tokens of encoded sentences, end-of-sentence included."""
    return sum(len(sequence) for sequence in encoded)


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of sentence indices with similar lengths, in shuffled order.

    Each epoch the sentences are shuffled, cut into pools of ``pool_batches`` batches, each pool sorted by length
    and cut into batches, and the batches shuffled; the order depends only on ``seed`` and the epoch. Without
    ``shuffle`` the batches follow length order. ``state_dict`` holds the epoch and how many of its batches were
    handed out; iterating after ``load_state_dict`` yields the rest of that epoch. Iterating to the end moves on to
    the next epoch. (Use it with a single-process DataLoader, as :func:`make_loader` does: worker processes fetch
    ahead, and the position would count batches that were never trained on.)
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool = True, seed: int = 0,
                 pool_batches: int = 50):
        if len(lengths) == 0:
            raise DataError("no sentences to batch: the split is empty")
        for name, value in (("batch_size", batch_size), ("pool_batches", pool_batches)):
            if not isinstance(value, int) or value < 1:
                raise DataError(f"{name} must be a positive integer; got {value!r}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size, self.shuffle, self.seed, self.pool_batches = batch_size, shuffle, seed, pool_batches
        self.epoch = 0
        self.position = 0

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """Every batch of an epoch (the current one by default), in the order they are yielded."""
        epoch = self.epoch if epoch is None else epoch
        if not self.shuffle:
            return self._cut(np.argsort(self.lengths, kind="stable"))
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.lengths))
        pool_size = self.batch_size * self.pool_batches
        batches = []
        for start in range(0, len(order), pool_size):
            pool = order[start:start + pool_size]
            batches.extend(self._cut(pool[np.argsort(self.lengths[pool], kind="stable")]))
        return [batches[i] for i in rng.permutation(len(batches))]

    def _cut(self, order: np.ndarray) -> list[list[int]]:
        return [order[start:start + self.batch_size].tolist() for start in range(0, len(order), self.batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches()
        while self.position < len(batches):
            self.position += 1  # before yielding: a checkpoint taken while the batch trains counts it as done
            yield batches[self.position - 1]
        self.epoch += 1
        self.position = 0

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch; the current epoch keeps its position (so a resumed run may call it)."""
        if epoch != self.epoch:
            self.epoch = epoch
            self.position = 0

    def padding_ratio(self, epoch: int | None = None) -> float:
        """Padded positions per real token over an epoch's batches."""
        return padding_ratio(self.lengths[batch] for batch in self.batches(epoch))

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "batches": len(self)}

    def load_state_dict(self, state: dict) -> None:
        if state.get("batches") != len(self) or state.get("seed") != self.seed:
            raise DataError(f"the saved batching state ({state.get('batches')} batches, seed {state.get('seed')}) "
                            f"does not fit this data ({len(self)} batches, seed {self.seed}): resume with the same "
                            f"dataset, batch size and seed")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def make_loader(encoded: list[list[int]], batch_size: int, pad_id: int, shuffle: bool = True,
                seed: int = 0) -> DataLoader:
    """A DataLoader of :class:`Batch` over encoded sentences, batched by a :class:`BucketBatchSampler` (reach it
    as ``loader.batch_sampler`` for ``set_epoch``, ``state_dict`` and ``padding_ratio``)."""
    sampler = BucketBatchSampler([len(sequence) for sequence in encoded], batch_size, shuffle=shuffle, seed=seed)
    # A generator of its own: each new DataLoader iterator draws a seed from its generator, and drawing it from the
    # global one would shift the dropout and latent noise of a resumed run against an uninterrupted one.
    return DataLoader(encoded, batch_sampler=sampler, collate_fn=functools.partial(collate, pad_id=pad_id),
                      generator=torch.Generator().manual_seed(seed))

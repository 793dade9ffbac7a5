"""Length-bucketed batching: sentences of similar length share a batch, so little of each batch is padding.

:class:`BucketBatchSampler` is deterministic given its seed and epoch and remembers how far into the epoch it is, so
a run resumed from a checkpoint continues with the very next batch. :class:`DistributedBucketBatchSampler` gives each
of several processes its share of those same batches. :func:`make_loader` wires either into a DataLoader.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Share:
    """One process's part of a batch: ``indices`` to score, of which the first ``rows`` count (0: the share is
    empty and ``indices`` holds one sentence of the batch as a stand-in, so the process still takes part in the
    step), out of the batch's ``batch_rows`` sentences."""

    indices: list[int]
    rows: int
    batch_rows: int
    world_size: int

    @property
    def loss_scale(self) -> float:
        """The factor on this share's mean loss that makes the mean over processes of the scaled losses (what
        DistributedDataParallel's averaged gradients follow) the mean over the whole batch: world_size * rows /
        batch_rows, so uneven shares weigh by their sentences and a stand-in weighs nothing."""
        return self.world_size * self.rows / self.batch_rows


def share_of(batch: list[int], rank: int, world_size: int) -> Share:
    """Process ``rank``'s share of ``batch``: every ``world_size``-th sentence from position ``rank``, so each share
    of a length-sorted batch spans its lengths and the processes take about equally long."""
    indices = batch[rank::world_size]
    if indices:
        return Share(indices, len(indices), len(batch), world_size)
    return Share(batch[:1], 0, len(batch), world_size)


class DistributedBucketBatchSampler(Sampler[list[int]]):
    """Process ``rank``'s share (see :func:`share_of`) of each batch of a :class:`BucketBatchSampler` over all the
    sentences.

    Every process draws the same batches of ``batch_size`` (the global batch size) in the same order, so the shares
    of all processes together are exactly the batches a single process trains on. The state is that of the batches
    (epoch and how many were handed out), the same for every process and for any number of processes: a checkpoint
    of a run on N processes resumes on M. ``share`` describes the share last yielded.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, world_size: int, rank: int, shuffle: bool = True,
                 seed: int = 0, pool_batches: int = 50):
        if not isinstance(world_size, int) or world_size < 1 or not isinstance(rank, int) \
                or not 0 <= rank < world_size:
            raise DataError(f"rank {rank!r} of {world_size!r} processes: the rank must be in [0, world size)")
        self.global_sampler = BucketBatchSampler(lengths, batch_size, shuffle=shuffle, seed=seed,
                                                   pool_batches=pool_batches)
        if batch_size < world_size:
            raise DataError(f"batch_size {batch_size} is smaller than the {world_size} processes, so some would "
                            f"train on nothing: set training.TrainingSettings.batch_size to at least {world_size} "
                            "(it is the batch of all processes together) or start fewer processes")
        self.world_size, self.rank = world_size, rank
        self.share: Share | None = None

    @property
    def seed(self) -> int:
        return self.global_sampler.seed

    def __len__(self) -> int:
        return len(self.global_sampler)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_sampler:
            self.share = share_of(batch, self.rank, self.world_size)
            yield self.share.indices

    def set_epoch(self, epoch: int) -> None:
        self.global_sampler.set_epoch(epoch)

    def padding_ratio(self, epoch: int | None = None) -> float:
        """Padded positions per real token over this process's shares of an epoch's batches."""
        lengths = self.global_sampler.lengths
        return padding_ratio(lengths[share_of(batch, self.rank, self.world_size).indices]
                             for batch in self.global_sampler.batches(epoch))

    def state_dict(self) -> dict:
        return self.global_sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.global_sampler.load_state_dict(state)


def make_loader(encoded: list[list[int]], batch_size: int, pad_id: int, shuffle: bool = True,
                seed: int = 0, world_size: int = 1, rank: int = 0) -> DataLoader:
    """A DataLoader of :class:`Batch` over encoded sentences, batched by a :class:`BucketBatchSampler` (reach it
    as ``loader.batch_sampler`` for ``set_epoch``, ``state_dict`` and ``padding_ratio``); with ``world_size`` > 1,
    process ``rank``'s shares of those batches, by a :class:`DistributedBucketBatchSampler`."""
    lengths = [len(sequence) for sequence in encoded]
    if world_size > 1:
        sampler = DistributedBucketBatchSampler(lengths, batch_size, world_size, rank, shuffle=shuffle, seed=seed)
    else:
        sampler = BucketBatchSampler(lengths, batch_size, shuffle=shuffle, seed=seed)
    # A generator of its own: each new DataLoader iterator draws a seed from its generator, and drawing it from the
    # global one would shift the dropout and latent noise of a resumed run against an uninterrupted one.
    return DataLoader(encoded, batch_sampler=sampler, collate_fn=functools.partial(collate, pad_id=pad_id),
                      generator=torch.Generator().manual_seed(seed))

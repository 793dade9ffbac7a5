"""Length-bucketed batching: coverage, determinism, resuming mid-epoch, collation and padding."""

import itertools
import random

import pytest
import torch

from seqvae_zoo.data.base import DataError
from seqvae_zoo.data.batching import BucketBatchSampler, collate, make_loader, padding_ratio, token_count

RNG = random.Random(0)
LENGTHS = [RNG.randint(2, 60) for _ in range(1000)]


def test_every_sentence_once_per_epoch_and_batches_of_similar_length():
    sampler = BucketBatchSampler(LENGTHS, batch_size=16, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 63
    assert sorted(itertools.chain.from_iterable(batches)) == list(range(len(LENGTHS)))
    assert sampler.padding_ratio(epoch=0) < 0.15
    unsorted = padding_ratio([[LENGTHS[i] for i in range(start, start + 16)] for start in range(0, 992, 16)])
    assert unsorted > 0.5  # random batches of these lengths pad heavily: bucketing is what keeps it low


def test_order_is_deterministic_given_seed_and_epoch():
    first, second = BucketBatchSampler(LENGTHS, 16, seed=5), BucketBatchSampler(LENGTHS, 16, seed=5)
    assert first.batches(0) == second.batches(0)
    assert first.batches(0) != first.batches(1)
    assert first.batches(0) != BucketBatchSampler(LENGTHS, 16, seed=6).batches(0)
    epoch0, epoch1 = list(first), list(first)  # iterating to the end moves to the next epoch
    assert epoch0 == second.batches(0) and epoch1 == second.batches(1) and first.epoch == 2


def test_without_shuffle_batches_follow_length_order():
    batches = BucketBatchSampler(LENGTHS, 16, shuffle=False).batches()
    maxima = [max(LENGTHS[i] for i in batch) for batch in batches]
    assert maxima == sorted(maxima)


def test_resumed_sampler_continues_with_the_very_next_batch():
    reference = BucketBatchSampler(LENGTHS, 16, seed=1)
    reference.set_epoch(2)
    expected = list(reference) + list(reference)  # epochs 2 and 3

    interrupted = BucketBatchSampler(LENGTHS, 16, seed=1)
    interrupted.set_epoch(2)
    done = list(itertools.islice(iter(interrupted), 20))
    state = interrupted.state_dict()
    assert state["epoch"] == 2 and state["position"] == 20

    resumed = BucketBatchSampler(LENGTHS, 16, seed=1)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # a trainer that announces the epoch it resumes keeps the position
    assert done + list(resumed) + list(resumed) == expected


def test_resumed_loader_gives_the_same_remaining_batches():
    encoded = [[5] * (length - 1) + [2] for length in LENGTHS]
    loader = make_loader(encoded, batch_size=32, pad_id=0, seed=4)
    whole = [batch.tokens for batch in loader]
    first_part = make_loader(encoded, batch_size=32, pad_id=0, seed=4)
    iterator = iter(first_part)
    for _ in range(7):
        next(iterator)
    resumed = make_loader(encoded, batch_size=32, pad_id=0, seed=4)
    resumed.batch_sampler.load_state_dict(first_part.batch_sampler.state_dict())
    rest = [batch.tokens for batch in resumed]
    assert len(rest) == len(whole) - 7
    assert all(torch.equal(a, b) for a, b in zip(rest, whole[7:]))


def test_state_of_other_data_is_refused():
    state = BucketBatchSampler(LENGTHS, 16, seed=1).state_dict()
    with pytest.raises(DataError, match="does not fit this data"):
        BucketBatchSampler(LENGTHS, 32, seed=1).load_state_dict(state)


def test_collate_pads_and_counts_eos():
    batch = collate([[7, 8, 2], [9, 2], [2]], pad_id=0)
    assert batch.tokens.dtype == torch.long and batch.tokens.tolist() == [[7, 8, 2], [9, 2, 0], [2, 0, 0]]
    assert batch.lengths.tolist() == [3, 2, 1]
    assert padding_ratio([batch.lengths]) == pytest.approx(3 / 6)
    assert token_count([[7, 8, 2], [9, 2]]) == 5


@pytest.mark.parametrize("arguments, message", [
    (([], 8), "no sentences to batch"),
    (([3, 4], 0), "batch_size must be a positive integer"),
])
def test_bad_batching_arguments(arguments, message):
    with pytest.raises(DataError, match=message):
        BucketBatchSampler(*arguments)

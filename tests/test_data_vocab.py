"""Word and sentencepiece vocabularies: special ids, size caps, unknown words, round trips, saved state."""

import json

import pytest
import torch

from seqvae_zoo.data.base import Corpus, DataError
from seqvae_zoo.data.vocab import (SentencePieceVocabulary, Vocabulary, build_vocabulary,
                                   vocabulary_from_dict)

SENTENCES = [["the", "cat", "sat"], ["the", "dog", "sat", "down"], ["a", "cat", "ran"], ["the", "end"]]


def corpus_of(train):
    return Corpus(name="toy", splits={"train": train, "valid": train[:1], "test": train[:1]}, checksums={},
                  fingerprint="0")


def test_word_vocabulary_orders_by_frequency_and_keeps_special_ids():
    vocab = Vocabulary.build(SENTENCES)
    assert (vocab.pad_id, vocab.bos_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2, 3)
    assert vocab.tokens[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert vocab.tokens[4:7] == ["the", "cat", "sat"]  # 3, 2, 2 occurrences; ties alphabetical
    assert vocab.size == len(vocab) == 4 + 8


def test_encode_appends_eos_and_maps_oov_to_unk():
    vocab = Vocabulary.build(SENTENCES)
    ids = vocab.encode(["the", "zebra", "sat"])
    assert ids == [vocab.tokens.index("the"), vocab.unk_id, vocab.tokens.index("sat"), vocab.eos_id]
    assert vocab.decode(ids) == ["the", "<unk>", "sat"]


def test_decode_stops_at_eos_and_drops_pad_and_bos():
    vocab = Vocabulary.build(SENTENCES)
    the, cat = vocab.tokens.index("the"), vocab.tokens.index("cat")
    row = torch.tensor([vocab.bos_id, the, cat, vocab.eos_id, the, vocab.pad_id])
    assert vocab.decode(row) == ["the", "cat"]


def test_size_cap_and_min_count():
    assert Vocabulary.build(SENTENCES, max_size=6).tokens[4:] == ["the", "cat"]
    assert Vocabulary.build(SENTENCES, min_count=2).tokens[4:] == ["the", "cat", "sat"]
    with pytest.raises(DataError, match="max_size must exceed"):
        Vocabulary.build(SENTENCES, max_size=4)


def test_corpus_unk_merges_with_the_special_unk():
    vocab = Vocabulary.build([["a", "<unk>", "b"]])
    assert vocab.tokens.count("<unk>") == 1 and vocab.encode(["<unk>"])[0] == vocab.unk_id


def test_word_vocabulary_round_trips_through_json():
    vocab = Vocabulary.build(SENTENCES)
    restored = vocabulary_from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert isinstance(restored, Vocabulary) and restored.tokens == vocab.tokens


@pytest.mark.parametrize("state, message", [
    ({"kind": "chars"}, "unknown vocabulary kind 'chars'"),
    ({"kind": "word", "tokens": "abc"}, "no list of token strings"),
    ({"kind": "word", "tokens": ["a", "b"]}, "must start with"),
    ({"kind": "word", "tokens": ["<pad>", "<bos>", "<eos>", "<unk>", "x", "x"]}, "lists x more than once"),
    ({"kind": "bpe", "model": "not base64!"}, "no readable model"),
])
def test_bad_saved_vocabulary_is_a_clear_error(state, message):
    with pytest.raises(DataError, match=message):
        vocabulary_from_dict(state)


@pytest.fixture(scope="module")
def text_lines():
    words = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
             "upsilon phi chi psi omega").split()
    return [[words[(i * 7 + j * 3) % len(words)] + ("s" if (i + j) % 3 == 0 else "") for j in range(4 + i % 6)]
            for i in range(300)]


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_sentencepiece_round_trips_text_and_its_saved_state(kind, text_lines):
    vocab = build_vocabulary(corpus_of(text_lines), kind=kind, max_size=120)
    assert vocab.kind == kind and vocab.size <= 120
    assert (vocab.pad_id, vocab.bos_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2, 3)
    for words in text_lines[:50]:
        ids = vocab.encode(words)
        assert ids[-1] == vocab.eos_id and vocab.eos_id not in ids[:-1]
        assert vocab.decode(ids) == words
    restored = vocabulary_from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert isinstance(restored, SentencePieceVocabulary)
    assert restored.encode(text_lines[7]) == vocab.encode(text_lines[7])


def test_sentencepiece_maps_unseen_characters_to_unk(text_lines):
    vocab = SentencePieceVocabulary.train(text_lines, "unigram", 120)
    ids = vocab.encode(["alpha", "ж"])
    assert vocab.unk_id in ids
    assert vocab.decode(ids) == ["alpha", "<unk>"]


def test_sentencepiece_size_too_small_is_a_clear_error(text_lines):
    with pytest.raises(DataError, match="could not be trained on this corpus"):
        SentencePieceVocabulary.train(text_lines, "bpe", 8)


def test_unknown_vocabulary_kind_is_a_clear_error():
    with pytest.raises(DataError, match="expected one of: word, bpe, unigram"):
        build_vocabulary(corpus_of(SENTENCES), kind="chars")

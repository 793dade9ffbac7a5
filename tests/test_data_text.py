"""User text files: reading, empty lines, held-out splits, and the messages for bad files."""

import warnings

import pytest

from seqvae_zoo.data import DataError, load_dataset
from seqvae_zoo.data.vocab import build_vocabulary


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_three_files_with_empty_lines_counted_in_one_warning(tmp_path):
    train = write(tmp_path / "train.txt", "the cat sat\n\n  a dog ran  \n\t\n")
    valid = write(tmp_path / "valid.txt", "the dog sat\n")
    test = write(tmp_path / "test.txt", "\na zebra ran")
    with pytest.warns(UserWarning) as caught:
        corpus = load_dataset("text", train=train, valid=valid, test=test)
    assert len(caught) == 1
    assert "skipped 3 empty lines" in str(caught[0].message) and "2 in" in str(caught[0].message)
    assert corpus.splits == {"train": [["the", "cat", "sat"], ["a", "dog", "ran"]], "valid": [["the", "dog", "sat"]],
                             "test": [["a", "zebra", "ran"]]}
    assert set(corpus.checksums) == {"train", "valid", "test"}
    vocab = build_vocabulary(corpus)
    assert vocab.decode(vocab.encode(corpus.splits["test"][0])) == ["a", "<unk>", "ran"]


def test_a_byte_order_mark_is_not_part_of_the_first_word(tmp_path):
    train = tmp_path / "train.txt"
    train.write_bytes("\ufeffthe cat sat\r\na dog ran\r\n".encode("utf-8"))
    corpus = load_dataset("text", train=str(train), valid=write(tmp_path / "v.txt", "a cat\n"),
                          test=write(tmp_path / "t.txt", "a dog\n"))
    assert corpus.splits["train"] == [["the", "cat", "sat"], ["a", "dog", "ran"]]


def test_missing_splits_are_held_out_from_train_and_fingerprint_ignores_paths(tmp_path):
    lines = "".join(f"sentence number {i}\n" for i in range(100))
    first = load_dataset("text", train=write(tmp_path / "a.txt", lines), heldout=0.1)
    assert [first.sentence_count(split) for split in ("train", "valid", "test")] == [80, 10, 10]
    everything = first.splits["train"] + first.splits["valid"] + first.splits["test"]
    assert sorted(map(tuple, everything)) == sorted(tuple(f"sentence number {i}".split()) for i in range(100))
    renamed = load_dataset("text", train=write(tmp_path / "b.txt", lines), heldout=0.1)
    assert renamed.fingerprint == first.fingerprint and renamed.splits == first.splits
    other_seed = load_dataset("text", train=str(tmp_path / "a.txt"), heldout=0.1, seed=1)
    assert other_seed.fingerprint != first.fingerprint


def test_lowercase_option(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no empty lines: no warning
        corpus = load_dataset("text", train=write(tmp_path / "t.txt", "The Cat\nA Dog\nSome More\nAnd More\n"),
                              lowercase=True, heldout=0.25)
    assert ["the", "cat"] in corpus.splits["train"] + corpus.splits["valid"] + corpus.splits["test"]


@pytest.mark.parametrize("contents, options, message", [
    (None, {}, "needs a training file .*--gin \"datasets.text.train = 'corpus.txt'\""),
    ("", {"train": "{dir}/empty.txt"}, "has no sentences"),
    ("\n \n\n", {"train": "{dir}/empty.txt"}, "has no sentences"),
    ("a b\n", {"train": "{dir}/empty.txt", "valid": "{dir}/nowhere.txt"}, "no such file"),
    ("a b\nc d\n", {"train": "{dir}/empty.txt"}, "cannot hold out"),
    ("a b\n", {"train": "{dir}/empty.txt", "heldout": 0.7}, "between 0 and 0.5"),
])
def test_bad_text_input_gives_its_message(tmp_path, contents, options, message):
    if contents is not None:
        write(tmp_path / "empty.txt", contents)
    options = {key: value.format(dir=tmp_path) if isinstance(value, str) else value for key, value in options.items()}
    with pytest.raises(DataError, match=message):
        load_dataset("text", **options)


def test_non_utf8_file_is_a_clear_error(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(DataError, match="is not UTF-8 text"):
        load_dataset("text", train=str(tmp_path / "latin1.txt"))

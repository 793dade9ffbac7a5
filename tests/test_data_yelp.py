"""Yelp 2013 from ../shared/data: labels stripped, checksums and counts, and the reduced split's deviation."""

import shutil

import pytest

from seqvae_zoo.data import DataError, load_dataset, resolve_data_dir


@pytest.fixture(scope="module")
def reduced():
    return load_dataset("yelp13_reduced")


def test_reduced_split_counts_and_checksums(reduced):
    assert [reduced.sentence_count(split) for split in ("train", "valid", "test")] == [7000, 773, 8671]
    assert reduced.checksums == {"valid.txt": "d896e291874f9e06ceff2c53fb4f44eb",
                                 "test.txt": "cf092be5b35142f3a7820e9b7e6d225f"}
    assert reduced.word_count("test") / reduced.sentence_count("test") == pytest.approx(47.49, abs=0.005)
    held_in = reduced.word_count("train") + reduced.word_count("valid")
    assert held_in / 7773 == pytest.approx(47.64, abs=0.005)  # all of valid.txt, split in two
    assert "deviation" in reduced.metadata and "valid.txt" in reduced.metadata["deviation"]


def test_labels_are_stripped_and_kept_aside(reduced):
    labels = reduced.extras["label"]["test"]
    assert len(labels) == 8671 and set(labels) == {0, 1, 2, 3, 4}
    assert max(len(words) for words in reduced.splits["test"]) == 50


def test_held_out_slice_depends_on_seed(reduced):
    other = load_dataset("yelp13_reduced", seed=1)
    assert other.splits["valid"] != reduced.splits["valid"] and other.fingerprint != reduced.fingerprint


def test_full_yelp_without_train_file_says_what_to_do(monkeypatch):
    monkeypatch.setenv("SEQVAE_OFFLINE", "1")
    with pytest.raises(DataError) as error:
        load_dataset("yelp13")
    message = str(error.value)
    assert "missing train.txt (no published checksum, 62,522 lines)" in message
    assert "yelp13_reduced" in message and "no public address" in message


def test_line_without_label_is_a_clear_error(tmp_path, monkeypatch):
    from seqvae_zoo.data import yelp

    folder = tmp_path / "yelp"
    folder.mkdir()
    shutil.copy(resolve_data_dir() / "yelp" / "test.txt", folder / "test.txt")
    (folder / "valid.txt").write_text("4 great food\nno label here\n3 fine\n")
    unchecked = yelp.DataFile("valid.txt", None, 3)
    monkeypatch.setattr(yelp.Yelp13Reduced, "files", (unchecked, yelp.TEST))
    with pytest.raises(DataError, match="line 2 of .*valid.txt is not '<label 0-4> words...'"):
        load_dataset("yelp13_reduced", data_dir=str(tmp_path), heldout=1)
    # a blank line is skipped, not read as a review without a label, and the line numbers stay the file's
    (folder / "valid.txt").write_text("4 great food\n\n3 fine\n4\n")
    with pytest.raises(DataError, match="line 4 of .*valid.txt is not '<label 0-4> words...'"):
        load_dataset("yelp13_reduced", data_dir=str(tmp_path), heldout=1, verify=False)


def test_reviews_of_ones_own_in_yelps_layout_read_with_verify_off(tmp_path):
    folder = tmp_path / "yelp"
    folder.mkdir()
    for name, count in (("train.txt", 30), ("valid.txt", 8), ("test.txt", 8)):
        (folder / name).write_text("".join(f"{i % 5} review number {i} of {name}\n" for i in range(count)))
    with pytest.raises(DataError, match=r"yelp13: .*valid\.txt has md5 \w+, expected d896e291874f9e06ceff2c53fb4f44eb"
                                        r".*--gin 'datasets\.yelp13\.verify = False'") as refused:
        load_dataset("yelp13", data_dir=str(tmp_path))
    assert "download" not in str(refused.value)  # no public address: deleting the file would not bring it back
    with pytest.warns(UserWarning, match="verify is off") as caught:
        corpus = load_dataset("yelp13", data_dir=str(tmp_path), verify=False)
    assert len(caught) == 1 and "train.txt has 30 lines, expected 62,522" in str(caught[0].message)
    assert [corpus.sentence_count(split) for split in ("train", "valid", "test")] == [30, 8, 8]
    assert corpus.splits["test"][3] == ["review", "number", "3", "of", "test.txt"]
    assert corpus.extras["label"]["test"][:6] == [0, 1, 2, 3, 4, 0]
    with pytest.warns(UserWarning, match="verify is off"):
        reduced = load_dataset("yelp13_reduced", data_dir=str(tmp_path), verify=False, heldout=2)
    assert [reduced.sentence_count(split) for split in ("train", "valid", "test")] == [6, 2, 8]

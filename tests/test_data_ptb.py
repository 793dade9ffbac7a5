"""PTB from ../shared/data: checksums, counts, vocabulary size, padding; and what happens when files are wrong or
missing."""

import json
import os
import warnings
import shutil
import subprocess
import sys
from pathlib import Path

import gin
import pytest

from seqvae_zoo.data import DataError, load_dataset, resolve_data_dir
from seqvae_zoo.data.batching import BucketBatchSampler
from seqvae_zoo.data.vocab import build_vocabulary
from seqvae_zoo.registry import UnknownComponentError

SHARED = Path(os.environ["SEQVAE_DATA"])


@pytest.fixture(scope="module")
def ptb():
    return load_dataset("ptb")


def test_ptb_counts_checksums_and_vocabulary(ptb):
    assert ptb.name == "ptb"
    assert [ptb.sentence_count(split) for split in ("train", "valid", "test")] == [42068, 3370, 3761]
    assert [ptb.word_count(split) for split in ("train", "valid", "test")] == [887521, 70390, 78669]
    assert ptb.checksums == {"ptb.train.txt": "f26c4b92c5fdc7b3f8c7cdcb991d8420",
                             "ptb.valid.txt": "aa0affc06ff7c36e977d7cd49e3839bf",
                             "ptb.test.txt": "8b80168b89c18661a38ef683c0dc3721"}
    assert ptb.metadata["counts"]["train"] == {"sentences": 42068, "words": 887521}
    assert max(len(words) for words in ptb.splits["train"]) == 82
    assert build_vocabulary(ptb).size == 10002  # 9,999 types with <unk>, plus pad, bos, eos


def test_fingerprint_depends_on_data_not_location(ptb, tmp_path):
    (tmp_path / "ptb").symlink_to(SHARED / "ptb")
    elsewhere = load_dataset("ptb", data_dir=str(tmp_path))
    assert elsewhere.fingerprint == ptb.fingerprint and len(ptb.fingerprint) == 12


def test_bucketing_keeps_ptb_padding_under_ten_percent(ptb):
    lengths = [len(words) + 1 for words in ptb.splits["train"]]  # with end-of-sentence
    sampler = BucketBatchSampler(lengths, batch_size=32, seed=0)
    assert sampler.padding_ratio(epoch=0) < 0.10
    assert sampler.padding_ratio(epoch=3) < 0.10


def copy_ptb(tmp_path, skip=()):
    folder = tmp_path / "ptb"
    folder.mkdir()
    for name in ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"):
        if name not in skip:
            shutil.copy(SHARED / "ptb" / name, folder / name)
    return folder


def test_checksum_mismatch_stops_with_a_clear_error(tmp_path):
    folder = copy_ptb(tmp_path)
    with open(folder / "ptb.valid.txt", "a") as handle:
        handle.write(" one more line \n")
    with pytest.raises(DataError, match=r"ptb.valid.txt has md5 \w+, expected aa0affc06ff7c36e977d7cd49e3839bf"
                                        r".* or delete it to download it again"):
        load_dataset("ptb", data_dir=str(tmp_path))


def test_missing_file_offline_names_files_checksums_and_place(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQVAE_OFFLINE", "1")
    copy_ptb(tmp_path, skip=("ptb.test.txt",))
    with pytest.raises(DataError) as error:
        load_dataset("ptb", data_dir=str(tmp_path))
    message = str(error.value)
    assert "missing ptb.test.txt (md5 8b80168b89c18661a38ef683c0dc3721, 3,761 lines)" in message
    assert f"Put them in {tmp_path / 'ptb'}/" in message and "SEQVAE_OFFLINE" in message
    assert "simple-examples.tgz" in message and "ptb.train.txt" not in message


def test_missing_file_is_downloaded_and_verified(tmp_path, monkeypatch):
    from seqvae_zoo.data.ptb import PennTreebank

    copy_ptb(tmp_path, skip=("ptb.valid.txt",))
    local = tuple(file.__class__(file.name, file.md5, file.lines, ("file://" + str(SHARED / "ptb" / file.name),))
                  for file in PennTreebank.files)
    monkeypatch.setattr(PennTreebank, "files", local)
    corpus = load_dataset("ptb", data_dir=str(tmp_path))
    assert corpus.sentence_count("valid") == 3370 and (tmp_path / "ptb" / "ptb.valid.txt").is_file()
    assert not list((tmp_path / "ptb").glob("*.part"))


def test_download_with_the_wrong_content_is_refused(tmp_path, monkeypatch):
    from seqvae_zoo.data.ptb import PennTreebank

    copy_ptb(tmp_path, skip=("ptb.test.txt",))
    wrong = tuple(file.__class__(file.name, file.md5, file.lines, ("file://" + str(SHARED / "ptb" / "ptb.valid.txt"),))
                  for file in PennTreebank.files)
    monkeypatch.setattr(PennTreebank, "files", wrong)
    with pytest.raises(DataError, match="gave a file with md5 aa0affc06ff7c36e977d7cd49e3839bf, expected 8b80"):
        load_dataset("ptb", data_dir=str(tmp_path))
    assert not (tmp_path / "ptb" / "ptb.test.txt").exists()


def test_data_dir_order_flag_then_environment_then_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQVAE_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(str(tmp_path / "flag")) == tmp_path / "flag"
    assert resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("SEQVAE_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_data_dir(None) == tmp_path / "cache" / "seqvae_zoo"


def test_unknown_dataset_and_option_are_clear_errors():
    with pytest.raises(UnknownComponentError, match="Did you mean 'ptb'"):
        load_dataset("ptbb")
    with pytest.raises(DataError, match="dataset 'ptb' has no option lowercase"):
        load_dataset("ptb", lowercase=True)


def test_a_corpus_of_ones_own_in_ptbs_layout_is_refused_saying_how_to_read_it(own_ptb_layout):
    with pytest.raises(DataError) as error:
        load_dataset("ptb", data_dir=str(own_ptb_layout))
    message = str(error.value)
    assert "ptb.train.txt has md5" in message and "Replace it with the original" in message
    assert "SEQVAE_VERIFY=0 in the environment" in message
    assert "--gin 'datasets.ptb.verify = False'" in message and "verify = false under [dataset_options.ptb]" in message
    with pytest.raises(DataError, match=r"ptb: verify is True \(check .*\) or False \(read them as they are\), "
                                        r"not 'no'"):
        load_dataset("ptb", data_dir=str(own_ptb_layout), verify="no")


def test_verify_off_reads_ones_own_files_in_ptbs_layout_as_they_are(own_ptb_layout, ptb):
    with pytest.warns(UserWarning, match="verify is off") as caught:
        corpus = load_dataset("ptb", data_dir=str(own_ptb_layout), verify=False)
    assert len(caught) == 1  # one warning naming every difference
    assert [corpus.sentence_count(split) for split in ("train", "valid", "test")] == [300, 40, 40]
    assert all(words[-1] == "extra" for split in corpus.splits.values() for words in split)
    departures = corpus.metadata["departures_from_published"]
    assert len(departures) == 6 and "ptb.test.txt has 40 lines, expected 3,761" in "; ".join(departures)
    assert set(corpus.checksums) == set(ptb.checksums) and corpus.checksums != ptb.checksums
    assert corpus.fingerprint != ptb.fingerprint
    # the published files read with the checks off are the same corpus as with them on, without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_dataset("ptb", verify=False).fingerprint == ptb.fingerprint


def test_blank_lines_and_a_byte_order_mark_in_ones_own_files_are_not_sentences(own_ptb_layout):
    """Files written on another system: a byte-order mark, Windows line ends, blank lines between sentences and at
    the end. A blank line is not an empty sentence (which would be scored as an end-of-sentence alone)."""
    folder = own_ptb_layout / "ptb"
    train = (folder / "ptb.train.txt").read_text().splitlines()
    (folder / "ptb.train.txt").write_bytes(("\ufeff" + "\r\n".join(train[:100] + ["", " "] + train[100:]) + "\r\n")
                                           .encode("utf-8"))
    (folder / "ptb.valid.txt").write_text((folder / "ptb.valid.txt").read_text() + "\n\n")
    with pytest.warns(UserWarning, match="verify is off") as caught:
        corpus = load_dataset("ptb", data_dir=str(own_ptb_layout), verify=False)
    assert [corpus.sentence_count(split) for split in ("train", "valid", "test")] == [300, 40, 40]
    assert corpus.splits["train"][0] == train[0].split() and all(corpus.splits["train"])
    assert all(word == word.strip() for words in corpus.splits["train"] for word in words)
    message = str(caught[0].message)
    assert "ptb.train.txt has 2 blank lines, skipped" in message and "ptb.valid.txt has 2 blank lines" in message


def test_seqvae_train_on_ones_own_files_in_ptbs_layout(own_ptb_layout, tmp_path, capsys):
    from seqvae_zoo.cli import main

    small = ["--gin", "EMBEDDING = 8", "--gin", "HIDDEN = 8", "--max-steps", "2", "--quiet"]
    refused = tmp_path / "refused"
    assert main(["train", "lstm", "--data", "ptb", "--data-dir", str(own_ptb_layout), "--out", str(refused),
                 *small]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ptb: ") and "datasets.ptb.verify = False" in error and not refused.exists()
    out = tmp_path / "run"
    try:
        with pytest.warns(UserWarning, match="verify is off"):
            assert main(["train", "lstm", "--data", "ptb", "--data-dir", str(own_ptb_layout), "--out", str(out),
                         "--gin", "datasets.ptb.verify = False", *small]) == 0
    finally:
        gin.clear_config()  # the binding stays in gin until the next config is parsed: not into later tests
    assert (out / "checkpoint.pt").is_file()
    # as a user meets it: SEQVAE_VERIFY=0, and the warning as one line of the command's own
    done = subprocess.run([sys.executable, "-m", "seqvae_zoo.cli", "train", "lstm", "--data", "ptb", "--data-dir",
                           str(own_ptb_layout), "--out", str(tmp_path / "run2"), *small],
                          env={**os.environ, "SEQVAE_VERIFY": "0", "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("warning: ptb: verify is off and these files are not the published dataset's, "
                                  "read as they are: ") and "UserWarning" not in done.stderr


def test_a_run_resumed_or_evaluated_on_other_files_under_its_datasets_name_is_told_so(own_ptb_layout, tmp_path,
                                                                                       monkeypatch, capsys):
    """The data folder is not part of a run: resuming or scoring it with another --data-dir reads other files under
    the same name. Resuming on them is refused, nothing written; scoring on them warns, naming the changed files."""
    from seqvae_zoo.cli import main

    monkeypatch.setenv("SEQVAE_VERIFY", "0")
    other = tmp_path / "other"
    shutil.copytree(own_ptb_layout, other)
    test_file = other / "ptb" / "ptb.test.txt"
    test_file.write_text(test_file.read_text().replace("extra", "other"))
    out = tmp_path / "run"
    small = ["--gin", "EMBEDDING = 8", "--gin", "HIDDEN = 8", "--gin", "LATENT = 2", "--quiet"]
    with pytest.warns(UserWarning, match="verify is off"):
        assert main(["train", "vrae", "--data", "ptb", "--data-dir", str(own_ptb_layout), "--out", str(out),
                     "--max-steps", "2", *small]) == 0
    checkpoint = (out / "checkpoint.pt").read_bytes()
    with pytest.warns(UserWarning, match="verify is off"):
        assert main(["train", "--resume", "--out", str(out), "--data-dir", str(other), "--epochs", "2",
                     "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: the run was trained on other ptb data than the files read now: ptb.test.txt "
                            "(md5 ") and "To resume it, point --data-dir (or $SEQVAE_DATA) at the folder" in error
    assert (out / "checkpoint.pt").read_bytes() == checkpoint
    result = tmp_path / "scores.json"
    with pytest.warns(UserWarning) as caught:
        assert main(["eval", str(out), "--data-dir", str(other), "--iw-samples", "2", "--quiet", "--device", "cpu",
                     "--json", str(result)]) == 0
    told = [str(w.message) for w in caught if "trained on other ptb data" in str(w.message)]
    assert len(told) == 1 and "ptb.test.txt (md5" in told[0] and "ptb.train.txt" not in told[0]
    assert json.loads(result.read_text())["trained_on_other_files"] == told[0].split(": these are")[0]
    # without --data-dir or $SEQVAE_DATA, the run reads the folder it was trained from: the same files
    monkeypatch.delenv("SEQVAE_DATA")
    with warnings.catch_warnings(record=True) as same:  # the verify warning was given once already
        warnings.simplefilter("always")
        assert main(["eval", str(out), "--iw-samples", "2", "--quiet", "--device", "cpu"]) == 0
        assert main(["train", "--resume", "--out", str(out), "--max-steps", "3", "--quiet"]) == 0
    assert not [w for w in same if "trained on other" in str(w.message)]
    assert json.loads((out / "progress.json").read_text())["step"] == 3


def test_seqvae_verify_0_turns_the_checks_off_for_every_dataset_and_a_bad_value_is_named(own_ptb_layout,
                                                                                       monkeypatch):
    monkeypatch.setenv("SEQVAE_VERIFY", "0")
    with pytest.warns(UserWarning, match="verify is off"):
        assert load_dataset("ptb", data_dir=str(own_ptb_layout)).sentence_count("test") == 40
    with pytest.raises(DataError, match="has md5"):  # a dataset's own verify = True still checks
        load_dataset("ptb", data_dir=str(own_ptb_layout), verify=True)
    monkeypatch.setenv("SEQVAE_VERIFY", "no")
    with pytest.raises(DataError, match=r"SEQVAE_VERIFY must be 0 \(read datasets' files as they are\) or 1 "
                                        r"\(check them against the published datasets, the default\), not 'no'"):
        load_dataset("ptb", data_dir=str(own_ptb_layout))
    from seqvae_zoo.cli import main

    out = own_ptb_layout.parent / "out"
    assert main(["bench", "quick", "--out", str(out)]) == 2  # before anything is written, whatever the data
    assert not out.exists()

"""``seqvae generate`` on a checkpoint written by the trainer (one step on a small synthetic corpus)."""

import matplotlib.image
import pytest

from seqvae_zoo.cli import main


def generate(tiny_run_dir, *arguments):
    return main(["generate", str(tiny_run_dir), "--device", "cpu", "--max-length", "8", *arguments])


def test_new_sentences_one_per_line(tiny_run_dir, capsys):
    assert generate(tiny_run_dir, "--num", "4", "--strategy", "sample", "--top-p", "0.9") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and all(len(line.split()) <= 8 for line in lines)


def test_each_given_sentence_and_its_reconstruction(tiny_run_dir, capsys):
    assert generate(tiny_run_dir, "-s", "ba be bi", "--sentence", "bo bu", "--strategy", "beam",
                    "--beam-size", "3") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "> ba be bi" and lines[2] == "> bo bu" and len(lines) == 4


def test_interpolation_prints_each_point_of_the_path(tiny_run_dir, capsys):
    assert generate(tiny_run_dir, "-s", "ba be bi", "--sentence", "bo bu", "--interpolate", "--steps", "3",
                    "--path", "spherical") == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["0.00", "0.50", "1.00"]


def test_the_attention_map_is_written_from_sentences_in_a_file(tiny_run_dir, tmp_path, capsys):
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("ba be bi bo\nbu ba\n")
    out = tmp_path / "attention.png"
    assert generate(tiny_run_dir, "--input", str(sentences), "--attention-map", str(out)) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    assert matplotlib.image.imread(out).ndim == 3


def test_a_file_of_sentences_written_elsewhere_reads_as_its_sentences(tiny_run_dir, tmp_path, capsys):
    """A byte-order mark, Windows line ends and blank lines (one at the end, say) are not words or sentences."""
    sentences = tmp_path / "sentences.txt"
    sentences.write_bytes("\ufeffba be bi\r\n\r\nbo bu\r\n\r\n".encode("utf-8"))
    assert generate(tiny_run_dir, "--input", str(sentences)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if line.startswith(">")] == ["> ba be bi", "> bo bu"]
    sentences.write_bytes("ba b\xe9\n".encode("latin-1"))
    assert generate(tiny_run_dir, "--input", str(sentences)) == 2
    assert capsys.readouterr().err.startswith(f"error: --input: {sentences} is not UTF-8 text")


@pytest.mark.parametrize("arguments, message", [
    (["-s", "ba", "-s", ""], "error: sentence 2 is empty: reconstruction needs at least one word per sentence"),
    (["-s", "ba be", "--interpolate"], "error: --interpolate needs exactly two sentences, got 1"),
    (["--attention-map", "out.png"], "error: --attention-map needs sentences: give them with --sentence (quoted, "
                                     "repeated) or --input FILE"),
    (["--top-p", "1.5"], "error: top-p must be in (0, 1], got 1.5"),
    (["--input", "no-such-file.txt"], "error: --input 'no-such-file.txt' does not exist: give a file with one "
                                      "sentence per line"),
])
def test_bad_requests_are_refused_in_one_line(tiny_run_dir, capsys, arguments, message):
    assert generate(tiny_run_dir, *arguments) == 2
    assert capsys.readouterr().err.strip() == message

"""``seqvae eval`` on a checkpoint written by the trainer (one step on a small synthetic corpus)."""

import json

import pytest

from seqvae_zoo.cli import main
from seqvae_zoo.evaluation import PROTOCOL_VERSION


def test_eval_prints_the_table_and_writes_the_result_as_json(tiny_run_dir, tmp_path, capsys):
    out = tmp_path / "result.json"
    assert main(["eval", str(tiny_run_dir), "--iw-samples", "3", "--batch-size", "8", "--json", str(out),
                 "--quiet", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"evaluation protocol v{PROTOCOL_VERSION} - synthetic test: 40 sentences")
    for label in ("recon. PPL (paper)", "IW-NLL", "KL z_t", "MI", "gap", "z_enc probe"):
        assert label in printed
    result = json.loads(out.read_text())
    assert result["protocol_version"] == PROTOCOL_VERSION and result["iw"]["samples"] == 3
    assert result["sentences"] == 40 and result["split"] == "test" and result["dataset"] == "synthetic"
    assert result["synthetic"]["gap"] == pytest.approx(result["iw"]["nll"] - result["synthetic"]["true_nll"])


def test_eval_takes_another_split_of_the_training_dataset(tiny_run_dir, capsys):
    assert main(["eval", str(tiny_run_dir), "--split", "valid", "--iw-samples", "2", "--quiet", "--device", "cpu"]) == 0
    assert "synthetic valid: 16 sentences" in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--iw-samples", "0"], "error: the number of importance samples must be at least 1, got 0; the protocol's "
                            "default is 500"),
    (["--split", "tset"], "error: dataset 'synthetic' has no split 'tset'; its splits are train, valid, test"),
])
def test_eval_refuses_bad_flags_in_one_line(tiny_run_dir, capsys, flags, message):
    assert main(["eval", str(tiny_run_dir), "--quiet", "--device", "cpu", *flags]) == 2
    assert capsys.readouterr().err.strip() == message

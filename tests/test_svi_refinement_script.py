"""benchmarks/svi_refinement.py: both refinements run on a trained run's batches and are reported per batch."""

import re

import pytest


@pytest.fixture(scope="module")
def svi_refinement(benchmark_script):
    return benchmark_script("svi_refinement")


def test_a_line_per_batch_for_each_refinement(svi_refinement, tiny_run_dir, capsys):
    assert svi_refinement.main([str(tiny_run_dir), "--batches", "2", "--draws", "2"]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [row.split("|")[0].strip() for row in rows] == ["0", "1"]  # the tiny run's 64 training sentences
    for row in rows:
        assert len(row.split("|")) == 4 and "nan" not in row and "->" in row


def test_timing_gives_each_step_per_batch_and_their_ratios(svi_refinement, tiny_run_dir, capsys):
    assert svi_refinement.main([str(tiny_run_dir), "--batches", "2", "--timing"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "batch | stopped (s) | end to end, one-sided (s) | end to end, central (s)"
    assert [line.split("|")[0].strip() for line in lines[1:3]] == ["0", "1"] and len(lines) == 4
    assert lines[3].startswith("median |")
    over_stopped = re.search(r"over stopped: one-sided ([\d.]+), central ([\d.]+); central / one-sided: ([\d.]+)$",
                             lines[3])
    one_sided, central, _ = map(float, over_stopped.groups())
    assert one_sided > 1.0 and central > 1.0  # the way back through the steps costs more


def test_a_missing_run_is_one_line_and_exit_2(svi_refinement, tmp_path, capsys):
    assert svi_refinement.main([str(tmp_path / "nowhere")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: checkpoint") and error.count("\n") == 1


def test_accuracy_gives_each_differences_error_per_batch(svi_refinement, tiny_run_dir, capsys):
    assert svi_refinement.main([str(tiny_run_dir), "--batches", "1", "--accuracy"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("batch | float64, one-sided at 0.001 | float64, central at 0.001 |") and len(lines) == 2
    for line in lines[1:]:
        one_sided, central, gap = map(float, line.split("|")[1:])
        # the one-sided difference's error is first order in its step, the central one's second: in float64, where
        # rounding is far below both, the central one is the closer; in float32 the two stay close
        assert central < one_sided < 1e-3 and gap < 1e-3

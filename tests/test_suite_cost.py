"""benchmarks/suite_cost.py: every run of a suite timed over a few updates and extrapolated to its epochs."""

import pytest

from test_bench import TINY_SUITE


@pytest.fixture(scope="module")
def suite_cost(benchmark_script):
    return benchmark_script("suite_cost")


def test_a_row_per_run_with_its_hours_and_its_ratio_to_the_first(suite_cost, tmp_path, capsys):
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY_SUITE.replace("epochs = 1", "epochs = 3"))
    assert suite_cost.main([str(suite), "--updates", "2", "--warmup", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("tiny: 2 timed updates per run after 1") and lines[0].endswith("3 epochs")
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[3:]]
    assert [row[:2] for row in rows] == [["LSTM", "synthetic"], ["VRAE", "synthetic"]]
    for model, _, per_update, per_batch, batches, hours, ratio in rows:
        assert float(per_update) > 0 and float(per_batch) == 1.0 and int(batches) == 4  # 128 sentences, batch 32
        assert float(hours) == pytest.approx(float(per_update) * 4 * 3 / 3600, abs=0.051)
    assert rows[0][6] == "1.0"


def test_an_unknown_model_is_one_line_and_exit_2(suite_cost, tmp_path, capsys):
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY_SUITE)
    assert suite_cost.main([str(suite), "--models", "VAE"]) == 2
    error = capsys.readouterr().err
    assert error == "error: no model of suite '" + str(suite) + "' is named VAE; its models: LSTM, VRAE\n"

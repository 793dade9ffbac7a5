"""benchmarks/validation_curves.py: curves drawn from the records alone, seeds averaged, diverged runs left out."""

import json

import pytest


@pytest.fixture(scope="module")
def curves(benchmark_script):
    return benchmark_script("validation_curves")


def record(model: str, seed: int, history: list[tuple[float, float]] | None, folder: str | None = None) -> dict:
    body = {"model": model, "seed": seed, "suite": "s", "dataset": {"name": "ptb"}, "metrics": {},
            "protocol_version": "1", "training_folder": folder or f"{model}-{seed}"}
    if history is None:
        return {**body, "diverged": {"step": 3, "epoch": 1, "reason": "the training loss became nan"}}
    rows = [{"epoch": e + 1, "valid_nll": nll, "valid_neg_elbo": elbo, "train_nll": nll - 5, "train_neg_elbo": elbo - 5}
            for e, (nll, elbo) in enumerate(history)]
    return {**body, "training": {"history": rows}}


def test_the_mean_curve_averages_seeds_over_the_epochs_all_of_them_reached(curves):
    histories = [[{"v": 4.0}, {"v": 2.0}, {"v": 1.0}], [{"v": 6.0}, {"v": 4.0}]]
    assert curves.mean_curve(histories, "v") == ([1, 2], [5.0, 3.0])


def test_a_png_per_suite_and_dataset_from_the_records_alone(curves, tmp_path, capsys):
    suite = tmp_path / "s"
    (suite / "records").mkdir(parents=True)
    (suite / "suite.json").write_text(json.dumps({"name": "s", "title": "t", "models": ["LSTM", "VRAE"],
                                                  "columns": []}))
    for name, content in {"a": record("LSTM", 0, [(110.0, 110.0), (105.0, 105.0)]),
                          "b": record("LSTM", 1, [(112.0, 112.0), (107.0, 107.0)]),
                          "c": record("VRAE", 0, None)}.items():
        (suite / "records" / f"{name}.json").write_text(json.dumps(content))
    assert curves.main([str(tmp_path)]) == 0
    png = suite / "validation-ptb.png"
    assert capsys.readouterr().out.strip() == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert curves.main([str(tmp_path / "nothing")]) == 2
    assert "no results under" in capsys.readouterr().err


def test_a_panel_with_a_run_that_ran_away_is_drawn_on_a_log_scale(curves):
    assert curves.y_scale([92.3, 108.9, 117.5]) == "linear"
    assert curves.y_scale([92.3, 108.9, 868.7]) == "log"  # the literal eq. 13 row beside the paper's four
    assert curves.y_scale([-0.5, 2.0]) == "linear"


def test_a_row_scored_from_another_rows_training_is_drawn_once(curves):
    """A best-epoch row shares its twin's training, so its curve is its twin's: one line, under the twin's name;
    a row with a training of its own is drawn, whatever its name."""
    history = [(110.0, 111.0), (108.0, 109.0)]
    trained = [record("VRAE", 0, history, "t1"), record("VRAE, best validation epoch", 0, history, "t1"),
               record("VRAE-SA", 0, [(109.0, 111.0), (107.0, 109.0)], "t2")]
    drawn = curves.curves_of(["VRAE", "VRAE, best validation epoch", "VRAE-SA"], trained, "ptb")
    assert [model for model, _ in drawn] == ["VRAE", "VRAE-SA"]
    assert [len(histories) for _, histories in drawn] == [1, 1]


@pytest.mark.parametrize("count", [4, 10, 17, 45])
def test_every_model_of_a_suite_gets_a_line_style_of_its_own(curves, count):
    """The zoo's suite has 17 rows: past matplotlib's ten colours, its eleventh would take the first's."""
    styles = curves.line_styles(count)
    assert len(styles) == count and len(set(styles)) == count
    if count > 10:
        assert styles[0][0] != styles[1][0] != styles[10][0] != styles[0][0]  # neighbours, and a round later


def test_two_trainings_the_same_to_the_bit_are_one_line_that_names_both(curves):
    """paper-ptb's LSTM (authors' code: init) and its best-epoch row were two trainings with the same values:
    drawn twice, the second hid the first. Different timings do not make two curves different."""
    history = [(110.0, 111.0), (108.0, 109.0)]
    first, again = record("LSTM", 0, history, "t1"), record("LSTM, best validation epoch", 0, history, "t2")
    again["training"]["history"][0]["seconds"] = 241.0
    trained = [first, again, record("VRAE", 0, [(110.0, 111.0), (107.0, 109.0)], "t3")]
    drawn = curves.curves_of(["LSTM", "LSTM, best validation epoch", "VRAE"], trained, "ptb")
    assert [label for label, _ in drawn] == ["LSTM = LSTM, best validation epoch", "VRAE"]

"""The benchmark scripts: what they time is what they say, and a bad option fails before any timing."""

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def step_breakdown():
    sys.path.insert(0, str(BENCHMARKS))  # the scripts import each other as siblings
    try:
        import step_breakdown
        yield step_breakdown
    finally:
        sys.path.remove(str(BENCHMARKS))


TINY = ["EMBEDDING = 8", "HIDDEN = 8", "LATENT = 1"]


def test_step_breakdown_times_the_attention_within_the_recurrence(step_breakdown):
    attentive = step_breakdown.breakdown("vrae_sa", None, batches=2, repeats=1, bindings=TINY)
    for direction in ("forward", "backward"):
        assert 0 < attentive[f"attention {direction}"] < attentive[f"recurrence {direction}"]
    parts = sum(attentive[part] for part in ("encoder forward", "recurrence forward", "output layer forward",
                                             "rest of forward", "recurrence backward", "output layer backward",
                                             "rest of backward", "clipping", "Adam"))
    assert parts == pytest.approx(attentive["step"], rel=0.2)
    plain = step_breakdown.breakdown("vrae", None, batches=2, repeats=1, bindings=TINY)
    assert "attention forward" not in plain and "recurrence forward" not in plain
    # the clocks are taken off again: the head's methods are the class's own
    from seqvae_zoo.decoders.attentive import AttentiveHead
    assert AttentiveHead._params.__qualname__ == "AttentiveHead._params"


def test_step_breakdown_refuses_a_bad_binding_before_reading_data(step_breakdown, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        step_breakdown.main(["--presets", "vrae_sa", "--gin", "HIDDEN = ", "--data-dir", str(tmp_path / "none")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    assert "parse" in error and "ptb" not in error


@pytest.fixture(scope="module")
def throughput(step_breakdown):  # importable while the fixture above holds the scripts' folder on the path
    import throughput
    return throughput


def test_throughput_reports_a_ptb_epochs_seconds_at_the_measured_rate(throughput):
    options = dict(data_dir=None, device="cpu", threads=0, batches=1, repeats=1, warmup=0, unseen_batches=0,
                   iw_batches=0, iw_samples=500, adam="trainer", malloc="tuned", seed=0)
    result = throughput.measure_preset("lstm", options)
    training = result["training"]
    # PTB's training split: 887,521 words and 42,068 ends of sentence
    assert training["ptb_epoch_seconds"] * training["tokens_per_second"] == pytest.approx(929_589)
    assert 0 < training["fraction_of_ceiling"] <= training["fraction_of_torch_mm_ceiling"]
    header = throughput.table([result]).splitlines()[0]
    assert [column.strip() for column in header.split("|")[2:5]] == ["MFLOP/token", "train tok/s", "epoch s"]

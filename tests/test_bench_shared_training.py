"""Rows of a suite that differ only in how they are scored (``checkpoint = "best"``, a summarization ranker) train
once, in one folder; a row scored at its best validation epoch is scored with that epoch's weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from seqvae_zoo.bench.evaluations import evaluate_bounds_of
from seqvae_zoo.bench.harness import Bench, BenchStopped
from seqvae_zoo.bench.status import campaign_status
from seqvae_zoo.bench.suite import ModelSpec, SuiteError, load_suite
from seqvae_zoo.cli import main
from seqvae_zoo.data.loading import load_dataset
from seqvae_zoo.training.checkpoint import load_checkpoint
from test_bench_campaign import StopAfter  # asks to stop at its n-th consultation

SUITE = """
title = "scored"
datasets = ["synthetic"]
seeds = [0]
epochs = 3
bindings = ["EMBEDDING = 16", "HIDDEN = 16", "LATENT = 4", "training.TrainingSettings.batch_size = 16",
            "training.TrainingSettings.checkpoint_every = 0"]

[dataset_options.synthetic]
train_size = 96
valid_size = 32
test_size = 24

[evaluation]
split = "test"
iw_samples = 3
batch_size = 8

[[models]]
name = "VRAE"
configs = ["vrae"]

[[models]]
name = "VRAE, best validation epoch"
configs = ["vrae"]
evaluation = { checkpoint = "best" }

[[models]]
name = "LSTM"
configs = ["lstm"]

[[columns]]
header = "IW-NLL"
metric = "iw.nll"
"""


def write_suite(tmp_path: Path, text: str = SUITE) -> Path:
    path = tmp_path / "scored.toml"
    path.write_text(text)
    return path


def records_by_model(out: Path) -> dict[str, dict]:
    records = [json.loads(p.read_text()) for p in (out / "scored" / "records").glob("*.json")]
    return {record["model"]: record for record in records}


def test_a_best_epoch_row_shares_its_twins_training_and_is_scored_with_best_pt(tmp_path):
    """Over two worker processes, the two VRAE rows are one training (one task, one folder); the best row's
    metrics are those of best.pt, the epoch of the lowest validation -ELBO, and its record says which epoch."""
    out = tmp_path / "out"
    suite = load_suite(str(write_suite(tmp_path)))
    Bench(suite, out, progress=False, log=lambda _: None, workers=2).run()
    records = records_by_model(out)
    last, best = records["VRAE"], records["VRAE, best validation epoch"]
    assert last["run_key"] != best["run_key"]
    assert last["training_folder"] == best["training_folder"] != records["LSTM"]["training_folder"]
    assert sorted(d.name for d in (out / "scored" / "runs").iterdir()) == sorted(
        {last["training_folder"], records["LSTM"]["training_folder"]})
    assert best["training"]["history"] == last["training"]["history"]  # trained once, read twice

    history = last["training"]["history"]
    best_epoch = min(history, key=lambda row: row["valid_neg_elbo"])
    assert best_epoch["epoch"] < 3  # this small run's validation -ELBO rises again in its last epoch
    assert last["scored_checkpoint"] == {"checkpoint": "last", "epoch": 3, "step": history[-1]["step"],
                                         "valid_neg_elbo": history[-1]["valid_neg_elbo"]}
    assert best["scored_checkpoint"] == {"checkpoint": "best", "epoch": best_epoch["epoch"],
                                         "step": best_epoch["step"], "valid_neg_elbo": best_epoch["valid_neg_elbo"]}

    run_dir = out / "scored" / "runs" / best["training_folder"]
    corpus = load_dataset("synthetic", **suite.dataset_options["synthetic"])
    for record, checkpoint in ((best, "best.pt"), (last, "checkpoint.pt")):
        loaded = load_checkpoint(run_dir / checkpoint)
        expected = evaluate_bounds_of(suite.evaluation, loaded.model, loaded.vocab, corpus, 0)
        assert record["metrics"]["elbo"]["nll"] == pytest.approx(expected["elbo"]["nll"], rel=1e-6)
        assert record["metrics"]["iw"]["nll"] <= record["metrics"]["elbo"]["nll"] + 1e-6
    assert best["metrics"]["elbo"]["nll"] != last["metrics"]["elbo"]["nll"]
    assert sorted(p.name for p in (out / "scored" / "iw-progress").iterdir()) == \
        sorted(p.name for p in (out / "scored" / "records").iterdir())  # one saved pass a row

    (out / "scored" / "records" / best_record_name(out)).unlink()  # as if the best row had not been scored yet
    line = row_status(out, "VRAE, best validation epoch")
    assert line.split()[0] == "pending" and "scored from the training of VRAE on synthetic, seed 0: only its " \
        "evaluation is left" in line
    assert "1 sharing a training at the finished latent models' mean evaluation of" in campaign_status(out)
    shutil.rmtree(run_dir)  # the training is lost: the best row must train again
    assert row_status(out, "VRAE, best validation epoch").endswith(": not started")
    with pytest.raises(BenchStopped):
        Bench(suite, out, progress=False, log=lambda _: None, stop=StopAfter(1 + 2)).run()
    line = row_status(out, "VRAE, best validation epoch")  # its training again, in progress: not its twin's
    assert line.split()[0] == "training" and ", step 3 of 18," in line


def test_rows_sharing_a_lost_training_are_both_scored_again_from_the_new_one(tmp_path):
    """The training two rows share is lost after both recorded their cheap columns: the first row trains again,
    and the second, finding a checkpoint newer than its record, is scored again from it too (not left with the
    lost training's columns beside the new training's IW-NLL); each row's saved IW pass, kept beside the records,
    goes on, the new training being the lost one to the last bit."""
    out = tmp_path / "out"
    suite = load_suite(str(write_suite(tmp_path)))
    Bench(suite, out, progress=False, log=lambda _: None).run()
    uninterrupted = records_by_model(out)
    run_dir = out / "scored" / "runs" / uninterrupted["VRAE"]["training_folder"]
    for path in (out / "scored" / "records").glob("vrae-*.json"):  # both VRAE rows, as before their IW passes
        record = json.loads(path.read_text())
        record["metrics"].pop("iw")
        record.update(complete=False, provenance={**record["provenance"], "finished_at": "2026-01-01T00:00:00Z"})
        path.write_text(json.dumps(record))
    (run_dir / "checkpoint.pt").unlink()
    (run_dir / "best.pt").unlink()
    logged = []
    Bench(suite, out, progress=False, log=logged.append).run()
    again = records_by_model(out)
    for model in ("VRAE", "VRAE, best validation epoch"):
        assert again[model]["retrained"]["reproduced"], again[model]["retrained"]["summary"]
        assert again[model]["metrics"]["iw"]["nll"] == pytest.approx(uninterrupted[model]["metrics"]["iw"]["nll"])
        assert [row["valid_neg_elbo"] for row in again[model]["training"]["history"]] == \
            [row["valid_neg_elbo"] for row in uninterrupted[model]["training"]["history"]]  # one new training
    assert sum("trained again (the training its record came from is gone)" in line and
               line.endswith("; its saved IW pass goes on") for line in logged) == 2


def best_record_name(out: Path) -> str:
    return next(p.name for p in (out / "scored" / "records").glob("vrae--best-validation-epoch-*.json"))


def row_status(out: Path, model: str) -> str:
    return next(line for line in campaign_status(out).splitlines() if f"  {model} on synthetic" in line)


def test_scoring_the_last_checkpoint_explicitly_keeps_the_key_runs_had_before_the_setting(tmp_path):
    bench = Bench(load_suite(str(write_suite(tmp_path))), tmp_path / "out", progress=False)
    plain = ModelSpec("VRAE", ("vrae",))
    explicit = ModelSpec("VRAE", ("vrae",), evaluation=(("checkpoint", "last"),))
    best = ModelSpec("VRAE", ("vrae",), evaluation=(("checkpoint", "best"),))
    assert bench.run_key(explicit, "synthetic", 0) == bench.run_key(plain, "synthetic", 0)
    assert bench.run_key(best, "synthetic", 0)[0] != bench.run_key(plain, "synthetic", 0)[0]


def test_a_row_added_later_continues_in_the_folder_its_twin_began_in_before_trainings_were_shared(tmp_path):
    """Folders used to be named by record key: a best-epoch row added to such a suite reads that training, and
    trains nothing again."""
    out = tmp_path / "out"
    only_last = SUITE.split('[[models]]\nname = "VRAE, best')[0] + "[[columns]]" + SUITE.split("[[columns]]")[1]
    Bench(load_suite(str(write_suite(tmp_path, only_last))), out, progress=False, log=lambda _: None).run()
    last = records_by_model(out)["VRAE"]
    runs = out / "scored" / "runs"
    (runs / last["training_folder"]).rename(runs / last["run_key"])  # the layout a bench wrote before
    before = (runs / last["run_key"] / "checkpoint.pt").read_bytes()

    logged: list[str] = []
    Bench(load_suite(str(write_suite(tmp_path))), out, progress=False, log=logged.append).run()
    best = records_by_model(out)["VRAE, best validation epoch"]
    assert best["training_folder"] == last["run_key"]
    assert best["training"]["history"] == last["training"]["history"]
    assert (runs / last["run_key"] / "checkpoint.pt").read_bytes() == before
    assert sum("cached" in line for line in logged) == 1  # the VRAE row; LSTM is new, the best row scores only
    assert any(line.endswith("VRAE, best validation epoch on synthetic, seed 0: evaluating (trained)")
               for line in logged)
    assert sorted(d.name for d in runs.iterdir()) == sorted({last["run_key"],
                                                             records_by_model(out)["LSTM"]["training_folder"]})


def test_a_checkpoint_setting_other_than_last_or_best_is_one_clear_error(tmp_path, capsys):
    path = write_suite(tmp_path, SUITE.replace('checkpoint = "best"', 'checkpoint = "final"'))
    with pytest.raises(SuiteError, match="model 'VRAE, best validation epoch' sets checkpoint = 'final'; use "
                                         "\"last\""):
        load_suite(str(path))
    path.write_text(SUITE.replace('batch_size = 8', 'batch_size = 8\ncheckpoint = 3'))
    assert main(["bench", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "[evaluation] sets checkpoint = 3" in err
    assert not (tmp_path / "out").exists()


def test_a_best_epoch_row_of_a_budget_under_one_epoch_says_why_it_cannot_be_scored(tmp_path, capsys):
    text = SUITE.replace("epochs = 3", "max_steps = 2").replace('[[models]]\nname = "VRAE"\nconfigs = ["vrae"]\n\n', "")
    out = tmp_path / "out"
    assert main(["bench", str(write_suite(tmp_path, text)), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "scores the best validation epoch" in err and "before its first epoch" in err
    assert not list((out / "scored" / "records").glob("*.json"))


def test_a_last_checkpoint_past_an_epochs_end_names_its_step_and_no_epochs_validation(tmp_path):
    """A budget of 8 steps with 6 to an epoch: the weights scored are those of step 8, not of epoch 1's end."""
    text = SUITE.replace("epochs = 3", "max_steps = 8")
    text = text[:text.index("[[models]]")] + '[[models]]\nname = "LSTM"\nconfigs = ["lstm"]\n\n' + \
        text[text.index("[[columns]]"):]
    out = tmp_path / "out"
    Bench(load_suite(str(write_suite(tmp_path, text))), out, progress=False, log=lambda _: None).run()
    record = records_by_model(out)["LSTM"]
    assert record["training"]["history"][-1]["step"] == 6
    assert record["scored_checkpoint"] == {"checkpoint": "last", "epoch": 1, "step": 8, "valid_neg_elbo": None}

"""Running a suite in slices: time limits, stop signals, the folder lock, --status, cheap columns first, diverged
runs, and one clear error for each bad input with the results folder left as it was."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from seqvae_zoo.bench import harness
from seqvae_zoo.bench.harness import Bench, BenchLockedError, BenchStopped, PendingRun
from seqvae_zoo.bench.records import planned_steps
from seqvae_zoo.bench.status import campaign_status
from seqvae_zoo.bench.suite import load_suite
from seqvae_zoo.cli import main
from seqvae_zoo.errors import UserError
from seqvae_zoo.evaluation.saved_pass import claim_file
from seqvae_zoo.training.checkpoint import read_checkpoint
from seqvae_zoo.training.run import train_run
from seqvae_zoo.training.stopping import EXIT_STOPPED_EARLY, StopRequest, StopRequested, parse_duration

SUITE = """
title = "slices"
datasets = ["synthetic"]
seeds = [0]
epochs = 2
bindings = ["EMBEDDING = 16", "HIDDEN = 16", "LATENT = 4", "training.TrainingSettings.batch_size = 16",
            "training.TrainingSettings.checkpoint_every = 3"]

[dataset_options.synthetic]
train_size = 96
valid_size = 16
test_size = 24

[evaluation]
split = "test"
iw_samples = 3
batch_size = 8

[[models]]
name = "LSTM"
configs = ["lstm"]

[[models]]
name = "VRAE-SA"
configs = ["vrae_sa_aux"]

[[columns]]
header = "IW-NLL"
metric = "iw.nll"

[[columns]]
header = "ELBO-NLL"
metric = "elbo.nll"
"""


class StopAfter(StopRequest):
    """Asks to stop at its ``checks``-th consultation: a limit that falls at a chosen point, without a clock."""

    def __init__(self, checks: int):
        super().__init__()
        self.checks_left = checks

    def reason(self, next_unit_s: float = 0.0) -> str | None:
        self.checks_left -= 1
        return "the test's limit was reached" if self.checks_left < 0 else None


@pytest.fixture()
def suite_file(tmp_path: Path) -> Path:
    path = tmp_path / "slices.toml"
    path.write_text(SUITE)
    return path


def quiet_bench(suite_file: Path, out: Path, stop: StopRequest | None = None, log=lambda _: None) -> Bench:
    return Bench(load_suite(str(suite_file)), out, progress=False, log=log, stop=stop)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def comparable(record: dict) -> dict:
    """A record without what differs between two runs of the same work: clocks and timestamps."""
    record = json.loads(json.dumps(record))
    record.pop("provenance"), record.pop("evaluation_seconds")
    record["metrics"].pop("seconds")
    training = record["training"]
    training.pop("wall_seconds"), training.pop("tokens_per_s")
    for row in training["history"]:
        row.pop("seconds"), row.pop("tokens_per_s")
    return record


def records_of(out: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((out / "slices" / "records").glob("*.json"))}


@pytest.mark.parametrize("text,seconds", [("1h", 3600), ("90m", 5400), ("2h40m", 9600), ("45s", 45),
                                          ("1h5m30s", 3930), ("2:40:00", 9600), ("40:00", 2400)])
def test_time_limits_parse_in_every_documented_form(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2x", "h", "0m", "1.5h", "-1h", "m40"])
def test_a_time_limit_that_does_not_parse_says_which_forms_do(text):
    with pytest.raises(UserError, match="does not parse: write a positive duration such as 90m, 1h, 2h40m"):
        parse_duration(text)


def test_a_suite_stopped_at_every_kind_of_point_gives_the_records_of_one_uninterrupted_run(tmp_path, suite_file):
    """Stopped at the run boundary, mid-training (between checkpoints) and mid-IW pass, then run again until done:
    the records are those of a bench that was never stopped, clocks aside."""
    whole = tmp_path / "whole"
    quiet_bench(suite_file, whole).run()
    sliced = tmp_path / "sliced"
    slices, stopped_in_evaluation, logged = 0, False, []
    # run start | LSTM to step 5 | LSTM trained, VRAE-SA begun | VRAE-SA to step 9 | both trained, at LSTM's IW pass
    # | LSTM done, VRAE-SA in its IW pass (every run is trained before the first IW pass begins)
    for checks in (0, 5, 9, 8, 4, 6):
        try:
            quiet_bench(suite_file, sliced, StopAfter(checks), log=logged.append).run()
            break
        except BenchStopped as stopped:
            slices += 1
            assert stopped.total == 2 and 0 <= stopped.done < 2
            for record in records_of(sliced).values():
                stopped_in_evaluation |= not record["complete"]
    else:
        quiet_bench(suite_file, sliced, log=logged.append).run()
    assert slices == 6 and stopped_in_evaluation
    # each slice's line for the run it starts says what that run has left
    starts = [line.split(", seed 0: ")[1] for line in logged if line.startswith("[")]
    assert starts[0] == "training" and "IW-NLL (its other columns are recorded)" in starts
    assert any(re.fullmatch(r"resuming training at step \d+ of 12", start) for start in starts)
    assert {k: comparable(v) for k, v in records_of(sliced).items()} == \
           {k: comparable(v) for k, v in records_of(whole).items()}
    assert (sliced / "slices" / "leaderboard.md").read_text() == (whole / "slices" / "leaderboard.md").read_text()


def test_every_run_is_trained_and_given_its_cheap_columns_before_the_first_iw_pass(tmp_path, suite_file):
    with pytest.raises(BenchStopped) as stopped:
        quiet_bench(suite_file, tmp_path, StopAfter(2 * (1 + 12))).run()  # both trained; stopped at the first IW pass
    assert [record["complete"] for record in records_of(tmp_path).values()] == [False, False]
    assert stopped.value.table.count("incomplete") == 2
    logged = []
    quiet_bench(suite_file, tmp_path, log=logged.append).run()
    assert [line.split(", seed 0: ")[1].split(",")[0] for line in logged if line.startswith("[")] == \
           ["IW-NLL (its other columns are recorded)"] * 2
    assert all(record["complete"] for record in records_of(tmp_path).values())


def test_a_record_whose_training_is_lost_is_trained_again_and_its_columns_computed_again(tmp_path, suite_file):
    """A campaign's folder lost with its machine, the committed records without IW-NLL copied into a new one: each
    row trains again and its cheap columns are computed again from that training before its IW pass, so no record
    mixes two trainings; the record says whether the new training reproduced them."""
    whole = tmp_path / "whole"
    quiet_bench(suite_file, whole).run()
    out = tmp_path / "lost"
    with pytest.raises(BenchStopped):
        quiet_bench(suite_file, out, StopAfter(2 * (1 + 12))).run()  # both trained; stopped at the first IW pass
    shutil.rmtree(out / "slices" / "runs")
    records = out / "slices" / "records"
    (lstm_path,) = records.glob("lstm-*.json")
    lstm = json.loads(lstm_path.read_text())
    lstm["metrics"]["elbo"]["nll"] += 1.0  # as if the lost training had come out otherwise
    lstm_path.write_text(json.dumps(lstm))
    before = {p.name: p.read_bytes() for p in records.iterdir()}
    status = campaign_status(out).splitlines()
    assert [line.split()[0] for line in status[2:4]] == ["pending", "pending"]
    assert all("came from is gone: trained again, every column is computed again" in line for line in status[2:4])
    assert {p.name: p.read_bytes() for p in records.iterdir()} == before  # --status changes nothing
    logged = []
    quiet_bench(suite_file, out, log=logged.append).run()
    assert [line.split(", seed 0: ")[1].split(", about")[0] for line in logged if line.startswith("[")] == \
        ["training again, then every column (the training its record came from is gone)"] * 2
    retrained = {name: record.pop("retrained") for name, record in records_of(out).items()}
    lstm_name, vrae_sa_name = sorted(retrained)
    assert retrained[vrae_sa_name]["reproduced"] and not retrained[lstm_name]["reproduced"]
    assert retrained[lstm_name]["previous_metrics"]["elbo"]["nll"] == lstm["metrics"]["elbo"]["nll"]
    assert retrained[lstm_name]["summary"].startswith(
        f"differ from the recorded ones: elbo.nll {lstm['metrics']['elbo']['nll']!r} -> ")
    assert any(line.startswith("VRAE-SA: trained again (the training its record came from is gone); its columns, "
                               "computed again, are the recorded ones, every number the same") for line in logged)
    # every record, IW-NLL included, is the uninterrupted run's: one training's columns throughout
    for name, record in records_of(out).items():
        record.pop("retrained")
        assert comparable(record) == comparable(records_of(whole)[name])


def vrae_sa_one_iw_batch_in(suite_file: Path, out: Path):
    """The latent row alone, trained and stopped one batch into its IW pass (of 3); the suite is returned."""
    suite = load_suite(str(suite_file))
    suite.models = suite.models[1:]
    with pytest.raises(BenchStopped):
        Bench(suite, out, progress=False, log=lambda _: None, stop=StopAfter(1 + 2 * 6 + 1 + 1)).run()
    return suite


@pytest.mark.parametrize("reproduced", [True, False])
def test_a_saved_iw_pass_outlives_its_lost_training_only_if_the_new_one_reproduces_it(tmp_path, suite_file,
                                                                                      reproduced):
    """The pass is kept beside the records, not in the training folder: when the training is lost and trained
    again, the pass goes on if the new training's columns are the recorded ones to the last bit, and starts again
    if not."""
    suite = load_suite(str(suite_file))
    suite.models = suite.models[1:]
    Bench(suite, tmp_path / "whole", progress=False, log=lambda _: None).run()
    (uninterrupted,) = records_of(tmp_path / "whole").values()
    out = tmp_path / "lost"
    vrae_sa_one_iw_batch_in(suite_file, out)
    (state_path,) = (out / "slices" / "iw-progress").iterdir()
    state = json.loads(state_path.read_text())
    done, *others = state["values"]
    assert others == [None, None]
    state["values"][0] = [value + 1.0 for value in done]  # a mark: one nat more on each sentence the pass has done
    state_path.write_text(json.dumps(state))
    shutil.rmtree(out / "slices" / "runs")
    if not reproduced:
        (record_path,) = (out / "slices" / "records").iterdir()
        record = json.loads(record_path.read_text())
        record["metrics"]["elbo"]["nll"] += 1.0  # as if the lost training had come out otherwise
        record_path.write_text(json.dumps(record))
    logged = []
    Bench(suite, out, progress=False, log=logged.append).run()
    (record,) = records_of(out).values()
    shift = len(done) / record["metrics"]["sentences"] if reproduced else 0.0
    assert record["metrics"]["iw"]["nll"] == pytest.approx(uninterrupted["metrics"]["iw"]["nll"] + shift, abs=1e-9)
    assert record["retrained"]["reproduced"] is reproduced
    assert any(line.endswith("; its saved IW pass goes on") for line in logged) is reproduced


def test_a_record_deleted_to_redo_its_run_takes_its_saved_iw_pass_with_it(tmp_path, suite_file):
    suite = load_suite(str(suite_file))
    suite.models = suite.models[1:]
    Bench(suite, tmp_path / "whole", progress=False, log=lambda _: None).run()
    out = tmp_path / "out"
    vrae_sa_one_iw_batch_in(suite_file, out)
    (state_path,) = (out / "slices" / "iw-progress").iterdir()
    state = json.loads(state_path.read_text())
    state["values"][0] = [value + 1.0 for value in state["values"][0]]
    state_path.write_text(json.dumps(state))
    (out / "slices" / "records" / state_path.name).unlink()
    Bench(suite, out, progress=False, log=lambda _: None).run()
    assert [comparable(r) for r in records_of(out).values()] == \
        [comparable(r) for r in records_of(tmp_path / "whole").values()]  # its pass began again: no mark in it


def test_an_iw_pass_saved_in_the_training_folder_by_an_earlier_version_goes_on_from_there(tmp_path, suite_file):
    whole = tmp_path / "whole"
    suite = vrae_sa_one_iw_batch_in(suite_file, tmp_path / "out")
    Bench(suite, whole, progress=False, log=lambda _: None).run()
    out = tmp_path / "out"
    (state_path,) = (out / "slices" / "iw-progress").iterdir()
    (run_dir,) = (out / "slices" / "runs").iterdir()
    state_path.replace(run_dir / "iw-progress.json")  # where passes were saved before
    line = next(line for line in campaign_status(out).splitlines() if "VRAE-SA" in line)
    assert "IW-NLL 1 of 3 batches done (" in line
    Bench(suite, out, progress=False, log=lambda _: None).run()
    assert not (run_dir / "iw-progress.json").exists() and state_path.is_file()
    assert [comparable(r) for r in records_of(out).values()] == [comparable(r) for r in records_of(whole).values()]



def the_run(bench: Bench, index: int = 0) -> PendingRun:
    model, dataset, seed = bench.suite.runs()[index]
    key, text = bench.run_key(model, dataset, seed)
    folder = bench.training_folders([(model, dataset, seed, key, text)])[key]
    return PendingRun(model.name, model, dataset, seed, key, text, folder)


def test_a_worker_joining_an_iw_pass_takes_its_longest_batches_and_the_record_is_that_of_a_pass_alone(
        tmp_path, suite_file):
    """What an idle worker runs: the scored checkpoint loaded, the open batches taken from the longest down; the
    worker running the pass then finds them done. A pass on a training being redone (its record from a lost one)
    is not joined."""
    out, whole = tmp_path / "out", tmp_path / "whole"
    suite = vrae_sa_one_iw_batch_in(suite_file, out)
    Bench(suite, whole, progress=False, log=lambda _: None).run()
    shutil.copytree(out, tmp_path / "lost")
    shutil.rmtree(tmp_path / "lost" / "slices" / "runs")
    lost = Bench(suite, tmp_path / "lost", progress=False, log=lambda _: None)
    assert lost.joinable_pass(the_run(lost)) is None

    bench = Bench(suite, out, progress=False, log=lambda _: None)
    state_path = bench.joinable_pass(the_run(bench))
    assert state_path is not None and bench.help_with_pass(the_run(bench)) == 2
    assert all(batch is not None for batch in json.loads(state_path.read_text())["values"])
    assert bench.joinable_pass(the_run(bench)) is None
    Bench(suite, out, progress=False, log=lambda _: None).run()
    assert [comparable(r) for r in records_of(out).values()] == [comparable(r) for r in records_of(whole).values()]
    assert [path.name for path in state_path.parent.iterdir()] == [state_path.name]  # no claim is left


def test_a_workers_finished_training_gets_its_iw_pass_while_another_training_goes_on(tmp_path, suite_file):
    """A training's IW task is queued as soon as its cheap columns are recorded, not once every task under way is
    done: the LSTM's row is done while the slower VRAE-SA row still trains."""
    suite_file.write_text(SUITE.replace('configs = ["vrae_sa_aux"]', 'configs = ["vrae_sa_aux"]\n'
                                        'bindings = ["training.TrainingSettings.batch_size = 2"]'))
    logged: list[str] = []
    Bench(load_suite(str(suite_file)), tmp_path, progress=False, log=logged.append, workers=2).run()
    lstm_done = next(i for i, line in enumerate(logged) if line.startswith("[1/2] LSTM") and ": done (" in line)
    vrae_sa_trained = next(i for i, line in enumerate(logged) if line.startswith("[2/2] VRAE-SA")
                           and ": trained, cheap columns recorded" in line)
    assert lstm_done < vrae_sa_trained

def test_with_several_workers_a_row_marked_starts_first_is_taken_up_first(tmp_path, suite_file):
    """Its training is handed to the workers before the rows above it (the pool takes tasks in that order), and
    with one worker the suite's order holds; the records are those of the suite run in order."""
    suite_file.write_text(SUITE.replace('[[models]]\nname = "VRAE-SA"', '[[models]]\nname = "VRAE"\nconfigs = ["vrae"]'
                                        '\n\n[[models]]\nname = "VRAE-SA"\nstarts_first = true'))
    suite = load_suite(str(suite_file))
    assert [(model.name, model.starts_first) for model in suite.models] == [
        ("LSTM", False), ("VRAE", False), ("VRAE-SA", True)]
    logged: list[str] = []
    Bench(suite, tmp_path / "two", progress=False, log=logged.append, workers=2).run()
    taken_up = [line.split(" on synthetic")[0] for line in logged if line.endswith(": training")]
    assert taken_up == ["[3/3] VRAE-SA", "[1/3] LSTM", "[2/3] VRAE"]
    one: list[str] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // 2))  # a worker's share: the products round by their thread count
    try:
        Bench(suite, tmp_path / "one", progress=False, log=one.append).run()
    finally:
        torch.set_num_threads(threads)
    assert [line.split(" on synthetic")[0] for line in one if ": training" in line] == [
        "[1/3] LSTM", "[2/3] VRAE", "[3/3] VRAE-SA"]
    assert [comparable(r) for r in records_of(tmp_path / "two").values()] == \
        [comparable(r) for r in records_of(tmp_path / "one").values()]


def test_workers_resuming_a_stopped_suite_train_what_is_left_before_the_iw_passes_of_what_was_trained(tmp_path,
                                                                                                       suite_file):
    """A bench stopped after its first training (cheap columns recorded, IW pass not begun) and run again with two
    workers hands out the trainings left first, as the suite run without a stop would: the whole table is there,
    marked incomplete, before the first IW pass."""
    suite_file.write_text(SUITE.replace('name = "LSTM"\nconfigs = ["lstm"]', 'name = "VRAE"\nconfigs = ["vrae"]')
                          + '\n[[models]]\nname = "LSTM"\nconfigs = ["lstm"]\n')
    with pytest.raises(BenchStopped):
        quiet_bench(suite_file, tmp_path, StopAfter(1 + 12)).run()  # the first trained, the second not begun
    assert [record["model"] for record in records_of(tmp_path).values()] == ["VRAE"]
    logged: list[str] = []
    Bench(load_suite(str(suite_file)), tmp_path, progress=False, log=logged.append, workers=2).run()
    handed_out = [line.split(" on synthetic, seed 0: ") for line in logged if line.startswith("[")][:3]
    assert handed_out == [["[2/3] VRAE-SA", "training"], ["[3/3] LSTM", "training"],
                          ["[1/3] VRAE", "IW-NLL (its other columns are recorded)"]]
    assert all(record["complete"] for record in records_of(tmp_path).values())


def test_a_worker_with_nothing_left_joins_the_iw_pass_another_is_running(tmp_path, suite_file, monkeypatch):
    """Two workers, one latent row with a long IW pass: once the LSTM's row is done, its worker takes the pass's
    longest batches; the record's IW-NLL is the pass's over every batch (that a joining worker's batches are those
    of the pass alone is the test above's)."""
    monkeypatch.setattr(harness, "HELP_POLL_S", 0.05)
    suite_file.write_text(SUITE.replace("iw_samples = 3\nbatch_size = 8", "iw_samples = 3000\nbatch_size = 2"))
    suite = load_suite(str(suite_file))
    logged: list[str] = []
    Bench(suite, tmp_path, progress=False, log=logged.append, workers=2).run()
    joined = [line for line in logged if "the joining worker did" in line]
    assert any(line.endswith("VRAE-SA on synthetic, seed 0: another worker joins its IW pass") for line in logged)
    assert len(joined) == 1 and int(joined[0].split(" did ")[1].split()[0]) > 0
    name, record = next((n, r) for n, r in records_of(tmp_path).items() if r["model"] == "VRAE-SA")
    assert record["complete"] and record["metrics"]["iw"]["nll"] <= record["metrics"]["elbo"]["nll"] + 1e-6
    saved = json.loads((tmp_path / "slices" / "iw-progress" / name).read_text())
    assert record["metrics"]["iw"]["nll"] == pytest.approx(sum(map(sum, saved["values"])) / 24, rel=1e-12)

def test_status_counts_the_iw_passes_not_yet_begun_in_the_time_left(tmp_path, suite_file):
    with pytest.raises(BenchStopped):
        quiet_bench(suite_file, tmp_path, StopAfter(2 * (1 + 12))).run()  # both trained, no IW pass begun
    assert campaign_status(tmp_path).splitlines()[-1] == \
        "time left: unknown until an IW pass has measured its rate (2 awaiting their IW pass)"
    with pytest.raises(BenchStopped):
        quiet_bench(suite_file, tmp_path, StopAfter(1 + 3)).run()  # the LSTM's IW pass (3 batches), then stopped
    lines = campaign_status(tmp_path).splitlines()
    assert lines[1] == "1 of 2 runs done; no bench running"
    assert next(line for line in lines if "VRAE-SA" in line).split()[0] == "evaluating"
    # the language model's exact pass (one pass over the split) says nothing of a latent model's K-sample pass
    assert lines[-1] == "time left: unknown until an IW pass has measured its rate (1 awaiting their IW pass)"


def test_cheap_columns_are_recorded_and_shown_as_incomplete_before_the_iw_pass(tmp_path, suite_file):
    suite = load_suite(str(suite_file))
    suite.models = suite.models[1:]  # the latent model: its IW pass has several batches to stop between
    checks = 1 + 2 * 6 + 1 + 1  # the run's start, two epochs of 6 steps, its IW pass's start, the first IW batch
    with pytest.raises(BenchStopped) as stopped:
        Bench(suite, tmp_path, progress=False, log=lambda _: None, stop=StopAfter(checks)).run()
    (record,) = records_of(tmp_path).values()
    assert record["complete"] is False and "iw" not in record["metrics"]
    assert record["metrics"]["elbo"]["nll"] > 0 and record["metrics"]["paper"]["ppl"] > 1
    row = next(line for line in stopped.value.table.splitlines() if line.startswith("| VRAE-SA"))
    assert "incomplete: IW-NLL of 1 run pending" in row
    (state_path,) = (tmp_path / "slices" / "iw-progress").iterdir()  # beside the records, named as its record is
    assert state_path.name == next(iter(records_of(tmp_path)))
    saved = json.loads(state_path.read_text())
    assert [batch is not None for batch in saved["values"]] == [True, False, False] and saved["batches"] == 3
    line = next(line for line in campaign_status(tmp_path).splitlines() if "VRAE-SA" in line)
    assert line.split()[0] == "evaluating" and "ELBO-NLL" in line and "IW-NLL 1 of 3 batches done (" in line
    assert "% of the tokens), about" in line
    assert len(saved["batch_tokens"]) == 3 and sum(saved["batch_tokens"]) == record["metrics"]["tokens"]


def test_status_counts_the_iw_time_left_by_tokens_not_batches(tmp_path, suite_file):
    """The protocol's batches run from the shortest sentences to the longest: the first batch's time, times the
    batches left, would promise the rest too soon."""
    suite = load_suite(str(suite_file))
    suite.models = suite.models[1:]
    with pytest.raises(BenchStopped):
        Bench(suite, tmp_path, progress=False, log=lambda _: None, stop=StopAfter(1 + 2 * 6 + 1 + 1)).run()
    (path,) = (tmp_path / "slices" / "iw-progress").iterdir()
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({**saved, "seconds": 60.0, "batch_tokens": [10, 30, 60],
                                "slowest_seconds_per_token": 8.0}))
    line = next(line for line in campaign_status(tmp_path).splitlines() if "VRAE-SA" in line)
    assert "IW-NLL 1 of 3 batches done (10% of the tokens), about 12 min left" in line  # 8 s a token at the slowest
    claims = [open(claim_file(path, index), "a") for index in (1, 2)]  # two workers on the pass, one batch each
    for claim in claims:
        fcntl.flock(claim, fcntl.LOCK_EX)
    line = next(line for line in campaign_status(tmp_path).splitlines() if "VRAE-SA" in line)
    assert "IW-NLL 1 of 3 batches done (10% of the tokens), 2 workers on it, about 6 min left" in line
    for claim in claims:
        claim.close()
    del saved["slowest_seconds_per_token"]  # as a pass saved before the slowest rate was kept: its mean rate
    path.write_text(json.dumps({**saved, "seconds": 60.0, "batch_tokens": [10, 30, 60]}))
    line = next(line for line in campaign_status(tmp_path).splitlines() if "VRAE-SA" in line)
    assert "IW-NLL 1 of 3 batches done (10% of the tokens), about 9 min left" in line  # 60 s per 10 tokens, 90 left
    del saved["batch_tokens"]  # as a pass saved before token counts were kept: by batches
    path.write_text(json.dumps({**saved, "seconds": 60.0}))
    line = next(line for line in campaign_status(tmp_path).splitlines() if "VRAE-SA" in line)
    assert "IW-NLL 1 of 3 batches done, about 2 min left" in line


def test_status_counts_the_iw_passes_to_come_at_the_rate_of_one_in_progress(tmp_path, suite_file):
    """Before any latent model's evaluation has finished (a long suite's first IW pass can take hours), a pass in
    progress tells what a whole one costs: its seconds so far and its tokens left at its slowest rate per token;
    once one has finished, its time stands for the passes to come."""
    suite = load_suite(str(suite_file))
    suite.models, suite.seeds = suite.models[1:], [0, 1]  # two latent runs
    with pytest.raises(BenchStopped):  # both trained, the first IW pass one batch in
        Bench(suite, tmp_path, progress=False, log=lambda _: None, stop=StopAfter(2 * (1 + 12) + 1 + 1)).run()
    (path,) = (tmp_path / "slices" / "iw-progress").iterdir()
    saved = json.loads(path.read_text())
    assert [batch is not None for batch in saved["values"]] == [True, False, False]
    path.write_text(json.dumps({**saved, "seconds": 60.0, "batch_tokens": [10, 30, 60],
                                "slowest_seconds_per_token": 6.0}))
    # 9 minutes left of the pass in progress (90 tokens at 6 s), 10 for the whole pass still to come
    assert campaign_status(tmp_path).splitlines()[-1] == \
        "time left: about 19 min (1 awaiting their IW pass at the IW pass in progress's projected whole pass of 10 min)"
    with Bench(suite, tmp_path, progress=False, log=lambda _: None, workers=2).locked():  # a bench of two workers
        assert campaign_status(tmp_path).splitlines()[-1].endswith("; 2 workers share it: about 10 min")
    with pytest.raises(BenchStopped):  # the first pass's last two batches
        Bench(suite, tmp_path, progress=False, log=lambda _: None, stop=StopAfter(1 + 2)).run()
    lines = campaign_status(tmp_path).splitlines()
    assert lines[1] == "1 of 2 runs done; no bench running"
    assert re.fullmatch(r"time left: about .+ \(1 awaiting their IW pass at the finished latent models' mean "
                        r"evaluation of .+\)", lines[-1])


def test_status_with_workers_is_never_shorter_than_the_longest_training_left():
    """Workers share out IW passes and trainings, but one training runs on one worker: a suite whose last row alone
    outlasts the rest (SA-VAE in zoo-ptb) ends no sooner than that row's training."""
    from seqvae_zoo.bench.status import _shared_by_workers

    assert _shared_by_workers(3600 * 40, 3600 * 10, 2) == "; 2 workers share it: about 20 h 00 min"
    assert _shared_by_workers(3600 * 40, 3600 * 30, 2) == \
        "; 2 workers: about 30 h 00 min, the longest training left alone"
    assert _shared_by_workers(3600 * 40, 3600 * 30, 1) == ""


def test_a_training_s_time_left_is_at_its_latest_interval_s_rate_where_that_is_long_enough():
    """A run stopped and resumed beside other work has an average rate of other days' loads: the time left comes
    from the steps since the latest launch's previous checkpoint, when there are enough of them, or enough minutes
    of them, to stand for it."""
    from seqvae_zoo.bench.status import RECENT_SECONDS, RECENT_STEPS, _training_detail

    progress = {"step": 1000, "epoch": 0, "epochs": 2, "steps_per_epoch": 1000, "total_steps": 2000,
                "train_seconds": 10_000.0, "last_valid_nll": None, "updated_at": "2026-01-01T00:00:00Z"}
    average = _training_detail(progress)  # progress.json from before the interval: the run's average
    assert average["left_s"] == 10_000.0 and "about 2 h 47 min left (at the last checkpoint" in average["detail"]
    recent = _training_detail({**progress, "recent": {"steps": 400, "seconds": 2400.0}})
    assert recent["left_s"] == 6000.0 and recent["projected_s"] == 12_000.0
    assert "about 1 h 40 min left at the rate of its last 400 steps (at the last checkpoint" in recent["detail"]
    short = _training_detail({**progress, "recent": {"steps": RECENT_STEPS - 1, "seconds": 99.0}})
    assert short["left_s"] == 10_000.0  # too few steps and seconds to stand for a load: the average
    slow = _training_detail({**progress, "recent": {"steps": 30, "seconds": RECENT_SECONDS + 60}})
    assert slow["left_s"] == 1000 * (RECENT_SECONDS + 60) / 30  # a slow model: few steps, but minutes of them
    assert "at the rate of its last 30 steps" in slow["detail"]


def lstm_done_and_vrae_sa_at_step_5(suite_file: Path, out: Path) -> None:
    """The LSTM row recorded in full by an earlier bench of the LSTM alone, VRAE-SA stopped at step 5 of 12 (a bench
    trains every run before the first IW pass, so one bench of both never leaves a row done and one training)."""
    suite = load_suite(str(suite_file))
    suite.models = suite.models[:1]
    Bench(suite, out, progress=False, log=lambda _: None).run()
    with pytest.raises(BenchStopped):
        quiet_bench(suite_file, out, StopAfter(1 + 4)).run()  # VRAE-SA's start, four steps


def test_status_lists_done_in_progress_and_pending_runs_and_changes_nothing(tmp_path, suite_file):
    lstm_done_and_vrae_sa_at_step_5(suite_file, tmp_path)
    before = snapshot(tmp_path)
    assert main(["bench", "--status", str(tmp_path)]) == 0
    status = campaign_status(tmp_path)
    assert snapshot(tmp_path) == before
    lines = status.splitlines()
    assert lines[1] == "1 of 2 runs done; no bench running"
    done = next(line for line in lines if "LSTM on synthetic" in line)
    assert done.split()[0] == "done" and "IW-NLL" in done and "ELBO-NLL" in done
    training = next(line for line in lines if "VRAE-SA on synthetic" in line)
    assert training.split()[0] == "training" and "epoch 1 of 2, step 5 of 12" in training and "left" in training
    assert re.fullmatch(r"time left: unknown until an IW pass has measured its rate \(the trainings alone: about "
                        r"[^;]+; 1 to be evaluated after training\)", lines[-1])


def test_status_does_not_pass_the_trainings_alone_for_the_time_left(tmp_path, suite_file):
    """With no evaluation finished yet (a suite's IW passes can cost more than its trainings), the time left is
    unknown, and the line gives what the trainings alone have left."""
    with pytest.raises(BenchStopped):
        quiet_bench(suite_file, tmp_path, StopAfter(1 + 4)).run()  # the LSTM's start, four steps
    assert re.fullmatch(r"time left: unknown until an IW pass has measured its rate \(the trainings alone: about "
                        r"[^;]+; pending runs at the running one's projected [^,]+, 2 to be evaluated after "
                        r"training\)", campaign_status(tmp_path).splitlines()[-1])
    with pytest.raises(BenchStopped):
        quiet_bench(suite_file, tmp_path, StopAfter(7 + 1)).run()  # the LSTM's last 7 steps, VRAE-SA's start
    # the trained LSTM's measured training, not a projection, stands for the pending run
    assert re.fullmatch(r"time left: unknown until an IW pass has measured its rate \(the trainings alone: about "
                        r"[^;]+; pending runs at the trained runs' mean training of [^,]+, 1 awaiting their IW "
                        r"pass, 1 to be evaluated after training\)", campaign_status(tmp_path).splitlines()[-1])


def test_status_does_not_price_a_pending_latent_run_at_a_language_models_whole_run(tmp_path, suite_file):
    """The LSTM done (its exact pass takes a K-th of an IW pass), VRAE-SA not begun: the pending run counts its
    training at the trained runs' mean and its evaluation at its kind's rate, unknown here, not at the LSTM's
    training and evaluation together."""
    suite = load_suite(str(suite_file))
    suite.models = suite.models[:1]
    Bench(suite, tmp_path, progress=False, log=lambda _: None).run()
    with pytest.raises(BenchStopped):
        quiet_bench(suite_file, tmp_path, StopAfter(0)).run()  # the suite of both, stopped before VRAE-SA begins
    assert re.fullmatch(r"time left: unknown until an IW pass has measured its rate \(the trainings alone: about "
                        r"[^;]+; pending runs at the trained runs' mean training of [^,]+, 1 to be evaluated after "
                        r"training\)", campaign_status(tmp_path).splitlines()[-1])


def test_status_and_the_resuming_line_count_the_steps_that_the_suites_max_steps_allows(tmp_path):
    suite_file = tmp_path / "capped.toml"
    suite_file.write_text(SUITE.replace("epochs = 2", "epochs = 2\nmax_steps = 8").replace('title = "slices"',
                                                                                            'title = "capped"'))
    with pytest.raises(BenchStopped):
        quiet_bench(suite_file, tmp_path, StopAfter(1 + 7 + 1 + 4)).run()  # LSTM trained, VRAE-SA at step 5
    # (no check after a run's last step under max_steps: the training ends there)
    training = next(line for line in campaign_status(tmp_path).splitlines() if "VRAE-SA on synthetic" in line)
    assert "epoch 1 of 2, step 5 of 8," in training
    starts = []
    quiet_bench(suite_file, tmp_path, log=starts.append).run()
    assert any(line.endswith("resuming training at step 5 of 8") for line in starts)


def test_progress_files_without_a_planned_total_count_epochs_times_steps_per_epoch():
    written_before = {"step": 5, "epoch": 0, "epochs": 2, "steps_per_epoch": 6}
    assert planned_steps(written_before) == 12
    assert planned_steps(written_before, max_steps=8) == 8
    assert planned_steps({**written_before, "total_steps": 8}) == 8


def test_status_of_a_suite_not_started_and_of_a_folder_without_results(tmp_path, suite_file):
    with pytest.raises(BenchStopped) as stopped:
        quiet_bench(suite_file, tmp_path, StopAfter(0)).run()
    assert stopped.value.done == 0
    status = campaign_status(tmp_path / "slices")
    assert "0 of 2 runs done" in status and status.count("pending") == 2
    assert "time left: unknown until a run has measured its rate" in status
    with pytest.raises(UserError, match="no suite results in"):
        campaign_status(tmp_path / "elsewhere")


def test_the_cli_stops_at_its_time_limit_with_the_requeue_status(tmp_path, suite_file, capsys):
    # a limit inside the stop margin: the bench stops at its first check, before any training
    assert main(["bench", str(suite_file), "--out", str(tmp_path), "--quiet", "--time-limit", "5s"]) == \
        EXIT_STOPPED_EARLY == 75
    captured = capsys.readouterr()
    assert "0 of 2 runs done; run the same command again to continue" in captured.out
    assert "the time limit is near" in captured.err
    assert main(["bench", str(suite_file), "--out", str(tmp_path), "--quiet", "--time-limit", "1h"]) == 0
    assert "2 of 2 runs done" in campaign_status(tmp_path)


def test_several_suites_run_in_order_within_one_limit_and_bad_names_stop_all_before_any_writes(
        tmp_path, suite_file, capsys):
    second = tmp_path / "second.toml"
    second.write_text(SUITE.replace('title = "slices"', 'title = "second"'))
    out = tmp_path / "out"
    one_line_error_and_nothing_changed(["bench", str(suite_file), "paper-ptbb", "--out", str(out)], out, capsys,
                                       "unknown suite 'paper-ptbb'")
    assert not out.exists()
    assert main(["bench", str(suite_file), str(second), "--out", str(out), "--quiet", "--time-limit", "5s"]) == 75
    assert ("slices: 0 of 2 runs done; second not started; run the same command again to continue"
            in capsys.readouterr().out)
    assert main(["bench", str(suite_file), str(second), "--out", str(out), "--quiet"]) == 0
    assert "second" in capsys.readouterr().out
    status = campaign_status(out)
    assert status.count("2 of 2 runs done") == 2


def start_bench(suite_file: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "seqvae_zoo.cli", "bench", str(suite_file), "--out", str(out),
                             "--quiet", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGUSR1])
def test_a_stop_signal_ends_the_bench_at_a_checkpoint_and_the_same_command_continues(tmp_path, suite_file, number):
    suite_file.write_text(SUITE.replace("epochs = 2", "epochs = 200"))  # long enough to be caught training
    process = start_bench(suite_file, tmp_path)
    progress = tmp_path / "slices" / "runs"
    deadline = time.monotonic() + 120
    while not list(progress.glob("*/progress.json")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    process.send_signal(number)
    out, err = process.communicate(timeout=120)
    assert process.returncode == EXIT_STOPPED_EARLY, err
    assert f"{signal.Signals(number).name} was received" in err
    assert "0 of 2 runs done; run the same command again to continue" in out
    (saved,) = [json.loads(p.read_text()) for p in progress.glob("*/progress.json")]
    assert saved["step"] >= 3 and (progress / next(progress.iterdir()).name / "checkpoint.pt").is_file()


def hold_lock(path: Path) -> subprocess.Popen:
    """Another process holding the folder's lock, as a running bench does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    code = ("import fcntl, sys, time\nh = open(sys.argv[1], 'a+')\nfcntl.flock(h, fcntl.LOCK_EX)\n"
            "h.seek(0); h.truncate()\n"
            "h.write('pid ' + str(__import__('os').getpid()) + ' on testhost'); h.flush()\nprint('held', flush=True)\n"
            "time.sleep(600)\n")
    process = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_status_tells_a_run_begun_by_the_running_bench_from_one_a_killed_bench_left(tmp_path, suite_file):
    """Before its first checkpoint a run has only started.json: the running bench is training it if it wrote that
    file, else a bench was killed (SIGKILL, a lost node) in it and the run begins again."""
    with pytest.raises(BenchStopped):
        quiet_bench(suite_file, tmp_path, StopAfter(0)).run()
    first_run = json.loads((tmp_path / "slices" / "suite.json").read_text())["runs"][0]
    started = tmp_path / "slices" / "runs" / first_run["folder"] / "started.json"
    started.parent.mkdir(parents=True)
    started.write_text(json.dumps({"git_commit": None, "started_at": "2026-01-01T00:00:00Z"}))
    assert first_run["model"] == "LSTM"
    line = next(line for line in campaign_status(tmp_path).splitlines() if "LSTM on synthetic" in line)
    assert line.split()[0] == "pending" and ("started at 2026-01-01T00:00:00Z, stopped before its first checkpoint: "
                                             "it starts again from the beginning") in line
    holder = hold_lock(tmp_path / "slices" / "bench.lock")
    try:
        lock_time = (tmp_path / "slices" / "bench.lock").stat().st_mtime
        line = next(line for line in campaign_status(tmp_path).splitlines() if "LSTM on synthetic" in line)
        assert line.split()[0] == "pending"  # written before the running bench took the lock: not its run
        os.utime(started, (lock_time + 1, lock_time + 1))  # as the running bench writes it when it begins the run
        status = campaign_status(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    line = next(line for line in status.splitlines() if "LSTM on synthetic" in line)
    assert line.split()[0] == "training" and "before its first checkpoint" in line
    assert "a bench is running (pid" in status and "testhost" in status
    assert "time left: unknown until a run has measured its rate" in status  # it still counts as a run to come


def test_status_tells_the_runs_a_running_bench_works_on_from_those_waiting_for_a_worker(tmp_path, suite_file):
    """With fewer workers than runs begun, a run with a checkpoint is in training only once the running bench has
    taken it up (taken.json newer than its lock); before that it is queued, with where it stands and what it has
    left, which the time left counts as before. A recorded run's IW pass with no batch held by a live worker is
    queued too."""
    lstm_done_and_vrae_sa_at_step_5(suite_file, tmp_path)
    taken = next(path for path in (tmp_path / "slices" / "runs").glob("*/taken.json")
                 if (path.parent / "progress.json").is_file() and json.loads(
                     (path.parent / "progress.json").read_text())["step"] == 5)
    alone = campaign_status(tmp_path).splitlines()[-1]
    holder = hold_lock(tmp_path / "slices" / "bench.lock")
    try:
        lock_time = (tmp_path / "slices" / "bench.lock").stat().st_mtime
        os.utime(taken, (lock_time - 60, lock_time - 60))  # taken up by the bench before this one
        queued = next(line for line in campaign_status(tmp_path).splitlines() if "VRAE-SA on synthetic" in line)
        last_line = campaign_status(tmp_path).splitlines()[-1]
        os.utime(taken, (lock_time + 1, lock_time + 1))  # as the running bench writes it when it takes the run up
        training = next(line for line in campaign_status(tmp_path).splitlines() if "VRAE-SA on synthetic" in line)
    finally:
        holder.kill()
        holder.wait()
    assert queued.split()[0] == "queued" and "begun, waits for a worker: epoch 1 of 2, step 5 of 12" in queued
    assert training.split()[0] == "training" and "begun" not in training
    assert last_line == alone  # the same work left either way

    out = tmp_path / "evaluating"
    vrae_sa_one_iw_batch_in(suite_file, out)
    holder = hold_lock(out / "slices" / "bench.lock")
    try:
        queued = next(line for line in campaign_status(out).splitlines() if "VRAE-SA on synthetic" in line)
        (state_path,) = (out / "slices" / "iw-progress").iterdir()
        with open(claim_file(state_path, 1), "a") as claim:  # a worker computing its second batch
            fcntl.flock(claim, fcntl.LOCK_EX)
            evaluating = next(line for line in campaign_status(out).splitlines() if "VRAE-SA on synthetic" in line)
    finally:
        holder.kill()
        holder.wait()
    assert queued.split()[0] == "queued" and "its IW pass waits for a worker; " in queued
    assert evaluating.split()[0] == "evaluating" and "IW-NLL 1 of 3 batches done" in evaluating

def test_a_live_lock_refuses_a_second_bench_and_changes_nothing(tmp_path, suite_file, capsys):
    with pytest.raises(BenchStopped):
        quiet_bench(suite_file, tmp_path, StopAfter(3)).run()
    holder = hold_lock(tmp_path / "slices" / "bench.lock")
    try:
        before = snapshot(tmp_path)
        assert main(["bench", str(suite_file), "--out", str(tmp_path), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "is being written by another `seqvae bench`" in err
        assert f"pid {holder.pid} on testhost" in err
        assert snapshot(tmp_path) == before
        assert f"a bench is running (pid {holder.pid} on testhost)" in campaign_status(tmp_path)
        with pytest.raises(BenchLockedError):
            quiet_bench(suite_file, tmp_path).run()
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_of_a_killed_bench_is_taken_over(tmp_path, suite_file):
    holder = hold_lock(tmp_path / "slices" / "bench.lock")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert "testhost" in (tmp_path / "slices" / "bench.lock").read_text()  # the file stays; its lock died with it
    with pytest.raises(BenchStopped):
        quiet_bench(suite_file, tmp_path, StopAfter(0)).run()
    assert (tmp_path / "slices" / "bench.lock").read_text().startswith(f"pid {os.getpid()} on ")


def test_a_diverged_run_is_recorded_with_its_step_and_the_suite_goes_on(tmp_path, suite_file, monkeypatch):
    from seqvae_zoo.model import SeqVAE

    original = SeqVAE.objective

    def poisoned(self, terms, weights):  # the latent model's loss turns NaN at its 5th step
        loss = original(self, terms, weights)
        if self.encoder is not None:
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls == 5:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(SeqVAE, "objective", poisoned)
    suite = load_suite(str(suite_file))
    suite.models = suite.models[::-1]  # the diverging run first: the LSTM after it must still be trained
    table = Bench(suite, tmp_path, progress=False, log=lambda _: None).run()
    records = {r["model"]: r for r in records_of(tmp_path).values()}
    assert records["VRAE-SA"]["diverged"]["step"] == 5 and records["VRAE-SA"]["diverged"]["epoch"] == 1
    assert records["VRAE-SA"]["diverged"]["last_checkpoint_step"] == 3
    assert "iw" in records["LSTM"]["metrics"]
    row = next(line for line in table.splitlines() if line.startswith("| VRAE-SA"))
    assert "diverged at step 5 (epoch 1): the training loss became nan" in row
    assert "diverged at step 5" in campaign_status(tmp_path)


def test_a_workers_lines_reach_the_bench_output(tmp_path, suite_file, capfd):
    """What a worker has to say (here: its training diverged) is printed, as the single-process bench logs it."""
    suite_file.write_text(SUITE.replace('configs = ["vrae_sa_aux"]', 'configs = ["vrae_sa_aux"]\n'
                                        'bindings = ["training.TrainingSettings.lr = 1e30"]'))
    Bench(load_suite(str(suite_file)), tmp_path, progress=False, log=print, workers=2).run()
    (diverged,) = [r for r in records_of(tmp_path).values() if r.get("diverged")]
    out = capfd.readouterr().out
    assert f"VRAE-SA: training diverged at step {diverged['diverged']['step']} (epoch " in out

def one_line_error_and_nothing_changed(args: list[str], folder: Path, capsys, expected: str) -> None:
    before = snapshot(folder) if folder.exists() else None
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and expected in err, err
    assert (snapshot(folder) if folder.exists() else None) == before


def test_bad_input_gets_one_line_exit_2_and_leaves_the_folder_as_it_was(tmp_path, suite_file, capsys):
    out = tmp_path / "out"
    without_vrae_sa = SUITE.split("[[models]]\nname = \"VRAE-SA\"")[0] + SUITE.split('configs = ["vrae_sa_aux"]')[1]
    suite_file.write_text(without_vrae_sa)
    quiet_bench(suite_file, out).run()
    one_line_error_and_nothing_changed(["bench", "paper-ptbb", "--out", str(out)], out, capsys,
                                       "unknown suite 'paper-ptbb'. Did you mean 'paper-ptb'")
    one_line_error_and_nothing_changed(["bench", str(suite_file), "--out", str(out), "--time-limit", "2 hours"],
                                       out, capsys, "the time limit '2 hours' does not parse")
    one_line_error_and_nothing_changed(["bench", str(suite_file), "--out", str(out / "slices")], out, capsys,
                                       "is itself the folder of one suite's results: give --out its parent")
    foreign = tmp_path / "foreign"
    (foreign / "slices").mkdir(parents=True)
    (foreign / "slices" / "suite.json").write_text(json.dumps({"name": "quick"}))
    one_line_error_and_nothing_changed(["bench", str(suite_file), "--out", str(foreign)], foreign, capsys,
                                       "holds the results of suite 'quick', not 'slices'")
    records = out / "slices" / "records"
    moved = next(records.glob("lstm-*.json"))
    record = json.loads(moved.read_text())
    moved.write_text(json.dumps({**record, "suite": "quick"}))
    one_line_error_and_nothing_changed(["bench", str(suite_file), "--out", str(out)], out, capsys,
                                       "is a record of suite 'quick', not 'slices'")
    moved.write_text(json.dumps(record)[:-40])
    one_line_error_and_nothing_changed(["bench", str(suite_file), "--out", str(out)], out, capsys,
                                       "is corrupt")
    one_line_error_and_nothing_changed(["leaderboard", str(out)], out, capsys, "is corrupt")
    moved.write_text(json.dumps({"model": "LSTM"}))
    one_line_error_and_nothing_changed(["bench", str(suite_file), "--out", str(out)], out, capsys,
                                       "no dataset, metrics, protocol_version, suite")


def test_a_signal_to_the_bench_reaches_its_worker_processes(tmp_path, suite_file):
    """With --workers, SIGTERM to the main process stops every worker at a checkpoint through the shared flag."""
    suite_file.write_text(SUITE.replace("epochs = 2", "epochs = 200"))
    process = start_bench(suite_file, tmp_path, "--workers", "2")
    runs = tmp_path / "slices" / "runs"
    deadline = time.monotonic() + 180
    while len(list(runs.glob("*/progress.json"))) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=180)
    assert process.returncode == EXIT_STOPPED_EARLY, err
    assert "0 of 2 runs done" in out
    assert len(list(runs.glob("*/checkpoint.pt"))) == 2


TRAIN = ["vrae_sa_aux", "--data", "synthetic", "--quiet", "--epochs", "2", "--gin", "synthetic.train_size = 96",
         "--gin", "synthetic.valid_size = 16", "--gin", "synthetic.test_size = 16", "--gin", "EMBEDDING = 16",
         "--gin", "HIDDEN = 16", "--gin", "LATENT = 4", "--gin", "training.TrainingSettings.batch_size = 16"]


def test_train_stopped_by_a_request_resumes_to_the_parameters_of_an_uninterrupted_run(tmp_path):
    options = {"bindings": TRAIN[7::2], "progress": False, "epochs": 2}  # the --gin bindings
    train_run(["vrae_sa_aux"], "synthetic", tmp_path / "whole", **options)
    with pytest.raises(StopRequested, match="stopped at step 7 \\(epoch 2\\), checkpoint written"):
        train_run(["vrae_sa_aux"], "synthetic", tmp_path / "sliced", stop=StopAfter(6), **options)
    assert read_checkpoint(tmp_path / "sliced" / "checkpoint.pt")["step"] == 7
    train_run([], "synthetic", tmp_path / "sliced", resume=True, progress=False)
    whole, sliced = (read_checkpoint(tmp_path / run / "checkpoint.pt")["model"] for run in ("whole", "sliced"))
    assert all(torch.equal(whole[name], sliced[name]) for name in whole)


def test_a_run_stopped_after_its_epochs_last_batch_resumes_without_warnings_to_the_uninterrupted_parameters(
        tmp_path):
    options = {"bindings": TRAIN[7::2], "progress": False, "epochs": 2}
    train_run(["vrae_sa_aux"], "synthetic", tmp_path / "whole", **options)
    steps_per_epoch = json.loads((tmp_path / "whole" / "progress.json").read_text())["steps_per_epoch"]
    with pytest.raises(StopRequested, match=f"stopped at step {steps_per_epoch} \\(epoch 1\\)"):
        train_run(["vrae_sa_aux"], "synthetic", tmp_path / "sliced", stop=StopAfter(steps_per_epoch - 1), **options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_run([], "synthetic", tmp_path / "sliced", resume=True, progress=False)
    assert [str(warning.message) for warning in caught] == []
    whole, sliced = (read_checkpoint(tmp_path / run / "checkpoint.pt")["model"] for run in ("whole", "sliced"))
    assert all(torch.equal(whole[name], sliced[name]) for name in whole)


def test_train_cli_stops_at_its_time_limit_with_the_requeue_status(tmp_path, capsys):
    assert main(["train", *TRAIN, "--out", str(tmp_path / "run"), "--time-limit", "5s"]) == EXIT_STOPPED_EARLY
    out = capsys.readouterr().out
    assert "the time limit is near: stopped at step 1 (epoch 1)" in out
    assert f"run `seqvae train --resume --out {tmp_path / 'run'}` to continue" in out
    assert main(["train", "--resume", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert read_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 12
    assert main(["train", *TRAIN, "--out", str(tmp_path / "other"), "--time-limit", "soon"]) == 2
    assert "the time limit 'soon' does not parse" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_status_reads_a_folder_written_before_suite_json_listed_its_runs(tmp_path, suite_file):
    """Records without "complete" and a suite.json without "runs": what the folders themselves show."""
    lstm_done_and_vrae_sa_at_step_5(suite_file, tmp_path)
    root = tmp_path / "slices"
    description = json.loads((root / "suite.json").read_text())
    del description["runs"]
    (root / "suite.json").write_text(json.dumps(description))
    for path in (root / "records").glob("*.json"):
        record = json.loads(path.read_text())
        del record["complete"]
        path.write_text(json.dumps(record))
    lines = campaign_status(tmp_path).splitlines()
    assert lines[1].startswith("1 runs done (pending runs unknown: this suite.json predates run lists")
    assert lines[2].split()[0] == "done" and "LSTM on synthetic, seed 0: IW-NLL" in lines[2]
    trained = {json.loads(p.read_text())["training_folder"] for p in (root / "records").iterdir()}
    key = next(d.name for d in (root / "runs").iterdir() if d.name not in trained)
    assert lines[3].split()[0] == "training" and f"run {key}: " in lines[3] and "step 5 of 12" in lines[3]


def test_the_campaign_script_runs_in_slices_and_copies_records_and_tables_but_no_checkpoints(tmp_path, suite_file):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "campaign.sh"
    seqvae = Path(sys.executable).with_name("seqvae")
    env = {**os.environ, "SEQVAE": str(seqvae), "RESULTS": str(tmp_path / "committed")}
    out = tmp_path / "campaign"

    def campaign(budget: str, workers: int = 1) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(script), str(out), budget, str(suite_file)],
                              env={**env, "WORKERS": str(workers)}, capture_output=True, text=True, timeout=600)

    stopped = campaign("5s", workers=2)
    assert stopped.returncode == EXIT_STOPPED_EARLY, stopped.stderr
    assert "2 runs (2 trainings) over 2 worker processes" in stopped.stdout
    assert "0 of 2 runs done; run the same command again to continue" in stopped.stdout
    assert "0 of 2 runs done; no bench running" in stopped.stdout  # the closing --status
    committed = tmp_path / "committed" / "slices"
    with pytest.raises(BenchStopped):  # the LSTM done, VRAE-SA one batch into its IW pass
        quiet_bench(suite_file, out, StopAfter(2 * (1 + 12) + 1 + 3 + 1 + 1)).run()
    assert campaign("1s").returncode == EXIT_STOPPED_EARLY
    vrae_sa = next(name for name, record in records_of(out).items() if not record["complete"])
    assert [p.name for p in (committed / "iw-progress").iterdir()] == [vrae_sa]  # the pass of the row still waiting
    finished = campaign("1h")
    assert finished.returncode == 0, finished.stderr
    assert not (committed / "iw-progress").exists()
    assert sorted(p.name for p in (committed / "records").iterdir()) == sorted(records_of(out))
    assert (committed / "leaderboard.md").read_text() == (out / "slices" / "leaderboard.md").read_text()
    assert not list(committed.rglob("*.pt")) and not (committed / "runs").exists()
    assert subprocess.run(["bash", str(script), str(out)], env=env, capture_output=True).returncode == 2


def test_the_campaign_script_starts_a_lost_folder_again_from_the_committed_records(tmp_path, suite_file):
    """OUT lost with its machine: the next slice copies the committed records and saved IW passes into a new OUT, so
    the complete row is not trained again and the row still waiting for its IW pass trains again and goes on with
    the committed pass (the new training reproduces the lost one); a folder that is there is left as it is."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "campaign.sh"
    env = {**os.environ, "SEQVAE": str(Path(sys.executable).with_name("seqvae")),
           "RESULTS": str(tmp_path / "committed")}
    out = tmp_path / "campaign"

    def campaign(budget: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(script), str(out), budget, str(suite_file)], env=env, capture_output=True,
                              text=True, timeout=600)

    with pytest.raises(BenchStopped):  # the LSTM done, VRAE-SA one batch into its IW pass
        quiet_bench(suite_file, out, StopAfter(2 * (1 + 12) + 1 + 3 + 1 + 1)).run()
    landed = campaign("1s")
    assert landed.returncode == EXIT_STOPPED_EARLY and "was not there" not in landed.stdout
    committed = tmp_path / "committed" / "slices"
    assert len(list((committed / "iw-progress").iterdir())) == 1
    shutil.rmtree(out)
    finished = campaign("1h")
    assert finished.returncode == 0, finished.stderr
    assert f"slices: {out / 'slices'} was not there; its records and saved IW passes come from {committed}" in \
        finished.stdout
    assert "[1/2] LSTM on synthetic, seed 0: cached" in finished.stdout
    assert "training again, then every column (the training its record came from is gone)" in finished.stdout
    assert "its saved IW pass goes on" in finished.stdout
    whole = tmp_path / "whole"
    quiet_bench(suite_file, whole).run()
    for name, record in records_of(out).items():
        record.pop("retrained", None)
        assert comparable(record) == comparable(records_of(whole)[name])

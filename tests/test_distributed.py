"""Training over several processes: the sharded sampler, the torchrun environment, DDP steps that equal
single-process steps, a killed two-process run resumed by one process, and the bench's worker processes.

The multi-process tests start 2 gloo processes on this machine with torchrun. To compare runs parameter for
parameter they train without random draws: input dropout 0 and every latent at its posterior mean (a script that
sets ``latent_mode="posterior_mean"`` as the default of ``SeqVAE.forward``), so that what differs between one and
two processes is only how the batch is split, weighed, reduced and stepped: what these tests are about. (With
random draws the processes draw different noise for different sentences, as they must, so no two runs could agree.)
The same script gives the model a parameter that no training step uses, as a variant with a generation-only layer
would have: DistributedDataParallel must cope with it.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from seqvae_zoo.cli import main
from seqvae_zoo.data.base import DataError
from seqvae_zoo.data.loading import load_dataset
from seqvae_zoo.data.batching import BucketBatchSampler, DistributedBucketBatchSampler, share_of
from seqvae_zoo.model import SeqVAE
from seqvae_zoo.training.checkpoint import read_checkpoint
from seqvae_zoo.training.distributed import (DistributedError, choose_backend, launch_from_environment,
                                             rank_seed)
from seqvae_zoo.training.run import train_run
from seqvae_zoo.training.trainer import processes_of

LENGTHS = [int(n) for n in np.random.default_rng(0).integers(2, 40, size=203)]
TINY = ["EMBEDDING = 16", "HIDDEN = 16", "LATENT = 4", "INPUT_DROPOUT = 0.0"]
DETERMINISTIC_TRAIN = '''\
"""seqvae with every latent at its posterior mean (training without random draws) and an idle parameter."""
import functools
import sys

import torch

from seqvae_zoo.model import SeqVAE

SeqVAE.forward = functools.partialmethod(SeqVAE.forward, latent_mode="posterior_mean")
built = SeqVAE.__init__


def with_idle_parameter(self, *args, **kwargs):
    built(self, *args, **kwargs)
    self.idle = torch.nn.Parameter(torch.zeros(3))


SeqVAE.__init__ = with_idle_parameter

from seqvae_zoo.cli import main

sys.exit(main(sys.argv[1:]))
'''


# -- the sampler ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("world_size", [2, 3])
def test_the_shares_of_all_processes_are_the_single_process_batches(world_size):
    single = BucketBatchSampler(LENGTHS, 32, seed=4).batches(1)
    ranks = [DistributedBucketBatchSampler(LENGTHS, 32, world_size, rank, seed=4) for rank in range(world_size)]
    for sampler in ranks:
        sampler.set_epoch(1)
        assert len(sampler) == len(single) == 7
    for batch, shares in zip(single, zip(*ranks)):
        assert sorted(itertools.chain(*shares)) == sorted(batch)  # distinct sentences, the whole batch
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
        spread = max(LENGTHS[i] for i in batch) - min(LENGTHS[i] for i in batch)
        assert all(max(LENGTHS[i] for i in share) - min(LENGTHS[i] for i in share) <= spread for share in shares)
    assert ranks[0].padding_ratio(epoch=1) < 0.2


def test_loss_scales_make_the_mean_over_processes_the_mean_over_the_batch():
    """DDP averages the processes' gradients: with each share's mean loss times its scale, that average is the
    gradient of the batch's mean loss, for even shares, uneven ones and an empty one (a stand-in at weight 0)."""
    losses = torch.rand(40, dtype=torch.float64)
    for batch, world_size in (([*range(32)], 2), ([*range(13)], 2), ([*range(5)], 3), ([7], 2), ([3, 9], 3)):
        shares = [share_of(batch, rank, world_size) for rank in range(world_size)]
        assert sum(share.rows for share in shares) == len(batch)
        assert all(share.indices for share in shares)  # every process has something to score
        averaged = sum(share.loss_scale * losses[share.indices].mean() for share in shares) / world_size
        assert float(averaged) == pytest.approx(float(losses[batch].mean()), rel=1e-12)
    assert share_of([7], 1, 2).rows == 0 and share_of([7], 1, 2).loss_scale == 0.0


def test_the_position_is_that_of_the_batches_so_any_number_of_processes_resumes_it():
    two = DistributedBucketBatchSampler(LENGTHS, 32, world_size=2, rank=1, seed=9)
    two.set_epoch(3)
    list(itertools.islice(iter(two), 4))
    state = two.state_dict()
    assert state == {"epoch": 3, "position": 4, "seed": 9, "batches": 7}
    rest = BucketBatchSampler(LENGTHS, 32, seed=9).batches(3)[4:]
    one = BucketBatchSampler(LENGTHS, 32, seed=9)
    one.load_state_dict(state)
    one.set_epoch(3)
    assert list(one) == rest
    three = [DistributedBucketBatchSampler(LENGTHS, 32, world_size=3, rank=rank, seed=9) for rank in range(3)]
    for sampler in three:
        sampler.load_state_dict(state)
        sampler.set_epoch(3)
    assert [sorted(itertools.chain(*shares)) for shares in zip(*three)] == [sorted(batch) for batch in rest]


@pytest.mark.parametrize("arguments, message", [
    ((LENGTHS, 2, 4, 0), "batch_size 2 is smaller than the 4 processes"),
    ((LENGTHS, 32, 2, 2), "rank 2 of 2 processes"),
    ((LENGTHS, 32, 0, 0), "rank 0 of 0 processes"),
])
def test_bad_sharding_arguments(arguments, message):
    with pytest.raises(DataError, match=message):
        DistributedBucketBatchSampler(*arguments)


# -- the launch environment -------------------------------------------------------------------------------------------
TORCHRUN_ENV = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


def test_the_torchrun_environment_is_read():
    assert launch_from_environment({}) is None
    assert launch_from_environment({**TORCHRUN_ENV, "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}) is None
    launch = launch_from_environment(TORCHRUN_ENV)
    assert (launch.rank, launch.world_size, launch.local_rank) == (1, 2, 1)


@pytest.mark.parametrize("change, message", [
    ({"RANK": None}, "RANK is None, not an integer: start multi-process training with `torchrun"),
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE is 'two'"),
    ({"RANK": "2"}, "RANK 2 / LOCAL_RANK 1 of WORLD_SIZE 2 is not a valid rank"),
    ({"MASTER_PORT": None}, "MASTER_PORT not set: the processes cannot find each other"),
])
def test_a_broken_launch_environment_is_named(change, message):
    environ = {k: v for k, v in {**TORCHRUN_ENV, **change}.items() if v is not None}
    with pytest.raises(DistributedError, match=message):
        launch_from_environment(environ)


def test_the_backend_follows_the_device_unless_named():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert choose_backend(cpu, environ={}) == "gloo"
    assert choose_backend(cpu, environ={"SEQVAE_DIST_BACKEND": "GLOO"}) == "gloo"
    with pytest.raises(DistributedError, match="'nccl' is not available|nccl backend needs CUDA devices"):
        choose_backend(cpu, "nccl", environ={})
    with pytest.raises(DistributedError, match="backend 'tcp' is not available in this PyTorch build; available: "
                                               "gloo"):
        choose_backend(cuda, environ={"SEQVAE_DIST_BACKEND": "tcp"})


def test_seqvae_train_reports_a_bad_backend_in_one_line(tmp_path, monkeypatch, capsys):
    for name, value in TORCHRUN_ENV.items():
        monkeypatch.setenv(name, value)
    assert main(["train", "vrae", "--out", str(tmp_path / "run"), "--device", "cpu", "--backend", "tcp"]) == 2
    assert capsys.readouterr().err.startswith("error: backend 'tcp' is not available")
    assert not (tmp_path / "run").exists()


def test_each_process_gets_a_noise_stream_of_its_own():
    seeds = {rank_seed(seed, rank, step) for seed in range(3) for rank in range(4) for step in (0, 100)}
    assert len(seeds) == 24


# -- multi-process training -------------------------------------------------------------------------------------------
def _torchrun(script: Path | None, arguments: list[str]) -> list[str]:
    """torchrun with 2 processes of ``script``, or of ``seqvae`` itself, as docs/distributed.md runs it: standalone,
    torchrun picking a free port itself (a port probed here and released could be taken before torchrun binds it)."""
    program = [str(script)] if script is not None else ["-m", "seqvae_zoo.cli"]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *program,
            *arguments]


def _descendants(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children += [int(child) for child in (task / "children").read_text().split()]
    return children + [grandchild for child in children for grandchild in _descendants(child)]


def _kill_with_descendants(process: subprocess.Popen) -> None:
    """SIGKILL to torchrun and its workers at once, as a crash of the machine would stop them (the workers run in
    sessions of their own, out of reach of a signal to torchrun's process group)."""
    for pid in [process.pid, *_descendants(process.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()


def _train_arguments(out: Path, sizes: dict[str, int], *extra: str) -> list[str]:
    bindings = [*TINY, *(f"synthetic.{name} = {size}" for name, size in sizes.items())]
    return ["train", "vrae_sa_aux", "--data", "synthetic", "--quiet", "--device", "cpu", "--out", str(out),
            *(a for b in bindings for a in ("--gin", b)), *extra]


@pytest.fixture()
def deterministic(tmp_path, monkeypatch) -> Path:
    """Training without random draws and with an idle parameter, here and (through the returned script) in the
    processes started by torchrun."""
    monkeypatch.setattr(SeqVAE, "forward", functools.partialmethod(SeqVAE.forward, latent_mode="posterior_mean"))
    built = SeqVAE.__init__

    def with_idle_parameter(self, *args, **kwargs):
        built(self, *args, **kwargs)
        self.idle = torch.nn.Parameter(torch.zeros(3))

    monkeypatch.setattr(SeqVAE, "__init__", with_idle_parameter)
    script = tmp_path / "deterministic_train.py"
    script.write_text(DETERMINISTIC_TRAIN)
    return script


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def assert_same_training_state(left: Path, right: Path, atol: float, rtol: float = 1e-4) -> None:
    """Parameters and Adam's moments (the first is a tenth of the step's clipped gradient, so gradient magnitudes
    are compared too, which Adam's first update, about lr * sign(gradient), would hide)."""
    a, b = read_checkpoint(left), read_checkpoint(right)
    assert a["step"] == b["step"] and a["sampler"] == b["sampler"]
    for name in a["model"]:
        torch.testing.assert_close(a["model"][name], b["model"][name], atol=atol, rtol=rtol, msg=name)
    for index, moments in a["optimizer"]["state"].items():
        for moment in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(moments[moment], b["optimizer"]["state"][index][moment], atol=atol,
                                       rtol=rtol, msg=f"{moment} of parameter {index}")


def assert_same_epoch_rows(left: list[dict], right: list[dict]) -> None:
    """The same metrics.csv rows, but for the wall-clock columns and the number of processes that ran them."""
    assert len(left) == len(right)
    for row_left, row_right in zip(left, right):
        assert row_left.keys() == row_right.keys()
        for name, value in row_right.items():
            if name not in ("seconds", "tokens_per_s", "processes"):
                assert row_left[name] == pytest.approx(value, rel=1e-5), name


def test_two_processes_train_like_one_with_the_whole_batch(tmp_path, deterministic):
    """45 sentences, batch 32: the epoch is a batch of 32 (16 + 16 in two processes), then a batch of 13 (7 + 6,
    weighed by their sizes). After each step, the parameters and the optimizer state of two processes are those of
    one; so are the epoch's metrics, train (reduced over the processes) and valid (65 sentences: a batch of 64 and
    one of 1, whose second share is a stand-in that must not count)."""
    sizes = {"train_size": 45, "valid_size": 65, "test_size": 8}
    corpus = load_dataset("synthetic", **sizes)
    batches = BucketBatchSampler([len(s) + 1 for s in corpus.splits["train"]], 32, seed=0).batches(0)
    assert [len(batch) for batch in batches] == [32, 13]
    two, one = tmp_path / "two", tmp_path / "one"
    subprocess.run(_torchrun(deterministic, _train_arguments(two, sizes, "--epochs", "1", "--max-steps", "1")),
                   env=ENV, check=True)
    train_run(["vrae_sa_aux"], "synthetic", one, bindings=TINY, epochs=1, max_steps=1, device="cpu", progress=False,
              dataset_options=sizes)
    initial = train_run(["vrae_sa_aux"], "synthetic", tmp_path / "initial", bindings=TINY, max_steps=0,
                        device="cpu", progress=False, dataset_options=sizes).model
    assert_same_training_state(two / "checkpoint.pt", one / "checkpoint.pt", atol=1e-6)
    after_one_step = read_checkpoint(two / "checkpoint.pt")["model"]
    assert all(not torch.equal(after_one_step[name], value) for name, value in initial.named_parameters()
               if name != "idle")

    subprocess.run(_torchrun(deterministic, ["train", "--resume", "--quiet", "--device", "cpu", "--out", str(two)]),
                   env=ENV, check=True)
    train_run([], "synthetic", one, resume=True, device="cpu", progress=False)
    assert_same_training_state(two / "checkpoint.pt", one / "checkpoint.pt", atol=1e-6)
    saved = read_checkpoint(two / "checkpoint.pt")
    assert saved["step"] == 2 and len(saved["rank_rng"]) == 2
    assert not torch.equal(saved["rank_rng"][0]["torch"], saved["rank_rng"][1]["torch"])
    rows_of_two, rows_of_one = (read_checkpoint(run / "checkpoint.pt")["history"] for run in (two, one))
    assert_same_epoch_rows(rows_of_two, rows_of_one)
    assert [row["processes"] for row in rows_of_two] == [2] and [row["processes"] for row in rows_of_one] == [1]
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    # rank 0 alone writes events: as many event files as the one-process run's (one a launch that logged a value)
    assert len(list((two / "tensorboard").iterdir())) == len(list((one / "tensorboard").iterdir())) == 1


THREADS_AFTER_RUN = '''\
"""Train one step over the process group, then write the names of this process's threads that are still running."""
import json
import os
import sys

from seqvae_zoo.training.run import train_run

train_run(["vrae_sa_aux"], "synthetic", sys.argv[1], bindings=sys.argv[2:], max_steps=1, device="cpu", progress=False,
          dataset_options={"train_size": 45, "valid_size": 9, "test_size": 4})
names = [open(f"/proc/self/task/{task}/comm").read().strip() for task in os.listdir("/proc/self/task")]
with open(os.path.join(sys.argv[1], f"threads-{os.environ['RANK']}.json"), "w") as file:
    json.dump(names, file)
'''


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads a process's threads from /proc (Linux)")
def test_a_finished_run_leaves_no_thread_of_the_process_group_behind(tmp_path):
    """The group is torn down when the run ends, not at the interpreter's exit: a group left alive (torch's
    collectives pin the default group when imported after it exists) keeps gloo's threads running into the exit,
    where a process can abort ('terminate called without an active exception') after a run that finished."""
    script = tmp_path / "threads_after_run.py"
    script.write_text(THREADS_AFTER_RUN)
    subprocess.run(_torchrun(script, [str(tmp_path / "run"), *TINY]), env=ENV, check=True)
    for rank in (0, 1):
        names = json.loads((tmp_path / "run" / f"threads-{rank}.json").read_text())
        assert not [name for name in names if "gloo" in name], names


def test_a_killed_two_process_run_resumed_by_one_process_ends_like_a_one_process_run(tmp_path, deterministic):
    """Killed (SIGKILL to torchrun and both workers) between checkpoints, resumed by one process from the position
    in the epoch's batches, a run ends where an uninterrupted one-process run ends, with the same epoch rows (the
    interrupted epoch's metrics count the sentences of both parts). 333 sentences: 10 batches of 32 and one of 13
    (7 + 6), 11 steps an epoch."""
    sizes = {"train_size": 333, "valid_size": 16, "test_size": 8}
    killed = tmp_path / "killed"
    # --epochs 50 keeps it running until it is killed; the steps do not depend on the number of epochs
    process = subprocess.Popen(_torchrun(deterministic, _train_arguments(
        killed, sizes, "--epochs", "50", "--gin", "training.TrainingSettings.checkpoint_every = 1")),
        env=ENV)
    checkpoint = killed / "checkpoint.pt"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if checkpoint.is_file() and read_checkpoint(checkpoint)["step"] >= 3:
                break
            time.sleep(0.05)
        assert process.poll() is None, "the run ended before it could be killed"
    finally:
        _kill_with_descendants(process)
    stopped_at = read_checkpoint(checkpoint)["step"]
    assert 3 <= stopped_at < 22

    resumed = train_run([], "synthetic", killed, resume=True, epochs=2, device="cpu", progress=False)
    straight = train_run(["vrae_sa_aux"], "synthetic", tmp_path / "straight", bindings=TINY, epochs=2,
                         device="cpu", progress=False, dataset_options=sizes)
    assert [row["step"] for row in resumed.history] == [11, 22]
    assert_same_epoch_rows(resumed.history, straight.history)
    # each epoch row says which numbers of processes ran its steps: the record is not one process's arithmetic
    assert [processes_of(row) for row in resumed.history] == [[2, 1] if stopped_at < 11 else [2],
                                                              [2, 1] if stopped_at > 11 else [1]]
    assert [row["processes"] for row in straight.history] == [1, 1]
    assert_same_training_state(checkpoint, tmp_path / "straight" / "checkpoint.pt", atol=1e-5)


def test_a_two_process_run_stopped_and_resumed_on_two_processes_is_exact(tmp_path):
    """With random draws: each process resumes its own random stream, so the resumed run ends bit for bit where an
    uninterrupted one ends (96 sentences: 3 steps, stopped after 2)."""
    sizes = {"train_size": 96, "valid_size": 16, "test_size": 8}
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    subprocess.run(_torchrun(None, _train_arguments(straight, sizes, "--epochs", "1")), env=ENV, check=True)
    subprocess.run(_torchrun(None, _train_arguments(stopped, sizes, "--epochs", "1", "--max-steps", "2")), env=ENV,
                   check=True)
    assert read_checkpoint(stopped / "checkpoint.pt")["step"] == 2
    subprocess.run(_torchrun(None, ["train", "--resume", "--quiet", "--device", "cpu", "--out", str(stopped)]),
                   env=ENV, check=True)
    assert_same_training_state(straight / "checkpoint.pt", stopped / "checkpoint.pt", atol=0.0, rtol=0.0)


# -- the bench's workers ----------------------------------------------------------------------------------------------
TINY_SUITE = """
title = "tiny"
datasets = ["synthetic"]
seeds = [0, 1]
epochs = 1
bindings = ["EMBEDDING = 16", "HIDDEN = 16", "LATENT = 4", "training.TrainingSettings.checkpoint_every = 0"]

[dataset_options.synthetic]
train_size = 64
valid_size = 16
test_size = 16

[evaluation]
split = "test"
iw_samples = 4
batch_size = 16

[[models]]
name = "VRAE-SA w aux"
configs = ["vrae_sa_aux"]

[[columns]]
header = "IW-NLL"
metric = "iw.nll"
"""


def test_bench_with_two_workers_writes_the_records_of_one(tmp_path, capsys):
    """The same records, metric for metric: each run is seeded alike wherever it runs. (One torch thread here and
    in each worker: a different thread count may change the float sums of the evaluation in the last digits.)"""
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY_SUITE)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["bench", str(suite), "--out", str(tmp_path / "one"), "--quiet"]) == 0
        assert main(["bench", str(suite), "--out", str(tmp_path / "two"), "--quiet", "--workers", "2"]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "2 runs (2 trainings) over 2 worker processes, 1 torch thread(s) each" in out
    assert len(re.findall(r": training(, about [\d.]+ min left)?\n", out)) == 4  # each run's start, both benches

    def records(folder: Path) -> dict[str, dict]:
        return {p.name: json.loads(p.read_text()) for p in (folder / "tiny" / "records").glob("*.json")}

    def untimed(values: dict) -> dict:
        return {k: v for k, v in values.items() if k not in ("seconds", "tokens_per_s")}

    one, two = records(tmp_path / "one"), records(tmp_path / "two")
    assert len(one) == 2 and one.keys() == two.keys()
    for name, record in one.items():
        assert untimed(record["metrics"]) == untimed(two[name]["metrics"])
        assert [untimed(row) for row in record["training"]["history"]] == \
               [untimed(row) for row in two[name]["training"]["history"]]
    assert (tmp_path / "one" / "tiny" / "leaderboard.md").read_text() == \
           (tmp_path / "two" / "tiny" / "leaderboard.md").read_text()


def test_bench_refuses_a_worker_count_below_one(tmp_path, capsys):
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY_SUITE)
    assert main(["bench", str(suite), "--out", str(tmp_path / "out"), "--workers", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: --workers must be a positive number of processes; got 0")

"""``seqvae bench``: train and evaluate every run of a suite, cache finished runs, write one record per run.

Layout of ``--out`` (default ``bench-results``)::

    <suite>/suite.json          what the tables and ``--status`` need (title, columns, models, references, runs)
    <suite>/records/<run>.json  one run: metrics and full provenance (written atomically)
    <suite>/runs/<folder>/      a training's checkpoints and logs (an interrupted run resumes from here)
    <suite>/iw-progress/<run>.json  a run's IW pass so far (kept with the records: it outlives its training folder)
    <suite>/leaderboard.{md,tex,csv}
    <suite>/bench.lock          held (flock) by the one ``seqvae bench`` writing the folder

A run is identified by the hash of its operative config, its dataset's fingerprint, the metric protocol version, the
seed and the evaluation settings: a record with that key is a finished run and is not redone. Rows that differ only
in how they are scored (a summarization ranker, ``checkpoint = "best"``) share one training: its folder is named by
the hash of what training depends on (config, data, seed, budget), or is the folder such a row began in before
trainings were shared (named by its record key). The cheap columns come first: a language model's record is
written once its bound pass is done (``"complete": false``, shown in the tables as incomplete), then again with its
IW-NLL, whose pass saves its progress after every batch; and every run of the suite is trained and given its cheap
columns before the first IW pass begins, so that a suite run in slices shows all its rows long before its last IW
pass (hours per latent model on a large test split) is done. A record without its IW-NLL whose training is gone (its
folder lost with the machine that held it) is trained again, its columns computed again from the new training (the
record says whether they came out the same) and its IW pass run at once, so that rows land whole. A run whose
training loss diverges gets a record saying at which step and why, and the suite goes on.

A :class:`~seqvae_zoo.training.stopping.StopRequest` (``--time-limit``, SIGTERM, SIGUSR1) ends the bench at the next
checkpoint or evaluation batch with :class:`BenchStopped`; the same command continues from there.

With ``workers`` > 1 the runs that are not yet recorded are shared out to that many worker processes, each training
one run at a time in a single process with its part of the CPU threads (or, on a machine with several GPUs, a GPU of
its own); each worker writes its records itself, as the single-process harness does. Once no work is left to
start, an idle worker joins an IW pass another is running, taking its batches from the longest down while the first
worker goes on from the shortest up (``seqvae_zoo.evaluation.saved_pass``: each batch draws from its own seed, so
the values are those of the pass run alone).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import multiprocessing
import os
import platform
import signal
import socket
import subprocess
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from tqdm.auto import tqdm

from seqvae_zoo.atomic import write_json_atomically, write_text_atomically
from seqvae_zoo.bench.evaluations import (evaluate_baselines, evaluate_bounds_of, evaluate_importance_of,
                                          evaluate_trained, evaluation_kind, help_importance_of, protocol_version)
from seqvae_zoo.bench.leaderboard import render
from seqvae_zoo.bench.records import (IW_PROGRESS, STARTED_FILE, TAKEN_FILE, RecordError, check_results_folder,
                                      from_a_lost_training, is_complete, iw_progress_path, planned_steps, read_record)
from seqvae_zoo.bench.suite import CHECKPOINTS, ModelSpec, Suite, SuiteError
from seqvae_zoo.errors import UserError
from seqvae_zoo.evaluation.protocol import scored_as
from seqvae_zoo.evaluation.saved_pass import open_batches
from seqvae_zoo.presets import config_hash, parse_config
from seqvae_zoo.training.run import CHECKPOINT, default_device, train_run
from seqvae_zoo.training.stopping import STOP_SIGNALS, StopRequest, StopRequested
from seqvae_zoo.training.trainer import NonFiniteLossError, processes_of

RECORD_VERSION = 1
LOCK_FILE = "bench.lock"
#: How often, with a worker idle, the bench looks for an IW pass that worker could join (seconds).
HELP_POLL_S = 30.0


class BenchStopped(Exception):
    """The bench stopped before its suite was done (a time limit or a signal); running it again continues."""

    def __init__(self, reason: str, done: int, total: int, table: str):
        super().__init__(f"{done} of {total} runs done; run the same command again to continue")
        self.reason, self.done, self.total, self.table = reason, done, total, table


class BenchLockedError(UserError):
    """Another live ``seqvae bench`` is writing the same suite folder."""


#: What makes a record's numbers, relative to the checkout's root: the package, its presets and suites, its metadata.
SOURCES = ("seqvae_zoo", "configs", "benchmarks/suites", "pyproject.toml")


def git_commit() -> str | None:
    """The commit of the seqvae_zoo source in use, with "+dirty" when what makes the numbers (:data:`SOURCES`) has
    uncommitted changes (tables and records written into the checkout, as benchmarks/campaign.sh does, do not
    count); None outside git."""
    package = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=package, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                *(str(package.parent / path) for path in SOURCES)], cwd=package,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip("-").lower()


@dataclass(frozen=True)
class PendingRun:
    """A run of the suite without a record yet."""

    label: str
    model: ModelSpec
    dataset: str
    seed: int
    key: str
    text: str
    folder: str


class Bench:
    """Runs one suite into ``out_dir / suite.name``, in this process or over ``workers`` worker processes."""

    def __init__(self, suite: Suite, out_dir: str | Path, data_dir: str | None = None, device: str | None = None,
                 progress: bool = True, log: Callable[[str], None] = tqdm.write, workers: int = 1,
                 stop: StopRequest | None = None):
        if not isinstance(workers, int) or workers < 1:
            raise SuiteError(f"--workers must be a positive number of processes; got {workers!r}")
        self.suite = suite
        self.root = Path(out_dir) / suite.name
        self.out_dir = Path(out_dir)
        self.data_dir = data_dir or suite.data_dir
        self.device = device or default_device()
        self.progress = progress
        self.log = log
        self.workers = workers
        self.protocol_version = protocol_version(suite.evaluation)
        self.stop = stop
        self._corpora: dict[str, Any] = {}

    # -- identity -------------------------------------------------------------------------------------------------
    def corpus(self, dataset: str):
        from seqvae_zoo.data.loading import load_dataset

        if dataset not in self._corpora:
            self._corpora[dataset] = load_dataset(dataset, data_dir=self.data_dir,
                                                  **self.suite.dataset_options.get(dataset, {}))
        return self._corpora[dataset]

    def run_key(self, model: ModelSpec, dataset: str, seed: int) -> tuple[str, str]:
        """(key, config text) of a run."""
        text = parse_config(model.configs, self.suite.training_bindings(model))
        evaluation = {name: value for name, value in self.suite.evaluation_for(model).items()
                      if (name, value) != ("checkpoint", CHECKPOINTS[0])}  # the default: keys from before it hold
        identity = json.dumps({"config": text, "dataset": dataset, "fingerprint": self.corpus(dataset).fingerprint,
                               "protocol": self.protocol_version, "seed": seed, "max_steps": self.suite.max_steps,
                               "evaluation": evaluation}, sort_keys=True)
        return hashlib.sha256(identity.encode()).hexdigest()[:16], text

    def training_key(self, text: str, dataset: str, seed: int) -> str:
        """The hash of what a run's training depends on: its operative config, data, seed and budget."""
        identity = json.dumps({"config": text, "dataset": dataset, "fingerprint": self.corpus(dataset).fingerprint,
                               "seed": seed, "max_steps": self.suite.max_steps}, sort_keys=True)
        return hashlib.sha256(identity.encode()).hexdigest()[:16]

    def training_folders(self, keyed: list[tuple[ModelSpec, str, int, str, str]]) -> dict[str, str]:
        """Each run's training folder under ``runs/``, by record key: one per training, shared by the runs that
        train alike; where one of them began in a folder of its own record key (before trainings were shared),
        they all continue there."""
        trainings: dict[str, list[str]] = {}
        for model, dataset, seed, key, text in keyed:
            trainings.setdefault(self.training_key(text, dataset, seed), []).append(key)
        folders = {}
        for training, keys in trainings.items():
            begun = [key for key in keys if (self.root / "runs" / key).is_dir()]
            folders.update((key, begun[0] if begun else training) for key in keys)
        return folders

    def record_path(self, model: ModelSpec, dataset: str, seed: int, key: str) -> Path:
        return self.root / "records" / f"{_slug(model.name)}-{_slug(dataset)}-seed{seed}-{key}.json"

    # -- running --------------------------------------------------------------------------------------------------
    def run(self) -> str:
        """Run every run not already recorded; return the leaderboard in Markdown (also written as md/tex/csv).

        The folder is checked (another suite's records, a corrupt record), the corpora loaded and the folder locked
        before anything is written; a stop request ends the bench with :class:`BenchStopped` after the tables are
        written.
        """
        check_results_folder(self.out_dir, self.suite.name)
        for dataset in self.suite.datasets:  # data that do not load stop the bench before it writes anything
            self.corpus(dataset)
        with self.locked():
            runs = self.suite.runs()
            keyed = [(model, dataset, seed, *self.run_key(model, dataset, seed)) for model, dataset, seed in runs]
            folders = self.training_folders(keyed)
            try:
                self.write_description(self.record_baselines(), keyed, folders)
                pending = []
                for index, (model, dataset, seed, key, text) in enumerate(keyed, 1):
                    label = f"[{index}/{len(runs)}] {model.name} on {dataset}, seed {seed}"
                    if self.recorded(model, dataset, seed, key):
                        self.log(f"{label}: cached ({self.record_path(model, dataset, seed, key).name})")
                    elif (source := self.reuse_identical_run(model, dataset, seed, key)) is not None:
                        self.log(f"{label}: the same run is recorded in {source}; reused")
                    else:
                        pending.append(PendingRun(label, model, dataset, seed, key, text, folders[key]))
                if self.workers == 1 or len({run.folder for run in pending}) <= 1:
                    self._run_here(pending)
                else:
                    self._run_in_workers(pending)
            except StopRequested as stopped:
                table = self.write_tables()
                done = sum(self.recorded(*run[:4]) for run in keyed)
                raise BenchStopped(stopped.reason, done, len(runs), table) from None
            return self.write_tables()

    def recorded(self, model: ModelSpec, dataset: str, seed: int, key: str) -> bool:
        """Whether the run has a record with every column."""
        path = self.record_path(model, dataset, seed, key)
        return path.is_file() and is_complete(read_record(path))

    def reuse_identical_run(self, model: ModelSpec, dataset: str, seed: int, key: str) -> str | None:
        """Copy into this suite a complete record of the same run (same key: config, data, seed, budget and
        evaluation) that another suite in the same --out folder holds, so that a model two suites share (the
        paper's four in paper-ptb and zoo-ptb) trains once; return where it came from, or None. The copy keeps the
        original's provenance and names its source under ``reused_from``."""
        for path in sorted(self.out_dir.glob(f"*/records/*-{key}.json")):
            if path.parent.parent == self.root:
                continue
            try:
                record = read_record(path)
            except RecordError:  # that suite's own bench reports it; here it is only a run not to reuse
                continue
            if record.get("run_key") != key or not is_complete(record):
                continue
            source = f"{record['suite']}/records/{path.name}"
            write_json_atomically(self.record_path(model, dataset, seed, key),
                                  {**record, "suite": self.suite.name, "model": model.name, "reused_from": source})
            return source
        return None

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the suite folder's lock for the block: one writer at a time. The lock is an flock on
        ``bench.lock``, released by the system when its process ends, so a killed bench leaves no stuck lock."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / LOCK_FILE
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = "; ".join(handle.read().split("\n")).strip("; ") or "another process"
            handle.close()
            raise BenchLockedError(f"{str(self.root)!r} is being written by another `seqvae bench` ({holder}); "
                                   "wait for it to finish or stop it (kill -TERM its pid stops it at a checkpoint), "
                                   "then run this command again") from None
        try:
            handle.seek(0)
            handle.truncate()
            workers = f", {self.workers} workers" if self.workers > 1 else ""
            handle.write(f"pid {os.getpid()} on {socket.gethostname()}, since {_now()}{workers}\n")
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    def complete(self, run: PendingRun, importance: bool = True) -> None:
        """Train and evaluate ``run``, writing its record as its columns land (see the module's docstring); without
        ``importance``, stop before its IW pass."""
        if self.stop is not None:
            self.stop.check()
        self.train_and_evaluate(run.model, run.dataset, run.seed, run.key, run.text, run.folder,
                                importance=importance)

    def has_done(self, run: PendingRun, importance: bool) -> bool:
        """Whether ``run`` has its record with every column (``importance``) or at least its cheap columns."""
        if importance:
            return self.recorded(run.model, run.dataset, run.seed, run.key)
        return self.record_path(run.model, run.dataset, run.seed, run.key).is_file()

    def joinable_pass(self, run: PendingRun) -> Path | None:
        """Where the IW pass of ``run`` is saved, if another worker can join it now: the worker running it has
        begun it (a batch is saved) on its present training (not one whose record came from a lost training,
        which is being trained again) and at least two batches are open (one is what that worker takes next)."""
        record_path = self.record_path(run.model, run.dataset, run.seed, run.key)
        if not record_path.is_file():
            return None
        record = read_record(record_path)
        if is_complete(record) or from_a_lost_training(record, self.root / "runs" / run.folder):
            return None
        state_path = self.root / IW_PROGRESS / record_path.name
        return state_path if open_batches(state_path) >= 2 else None

    def help_with_pass(self, run: PendingRun) -> int:
        """Work on the IW pass of ``run`` beside the worker running it, from its longest batches down, until no
        batch is left open; return how many batches this did. The values are those of a pass run alone."""
        from seqvae_zoo.training.checkpoint import load_checkpoint

        state_path = self.joinable_pass(run)
        if state_path is None:
            return 0
        run_dir = self.root / "runs" / run.folder
        scored = CHECKPOINT if self.suite.scored_checkpoint(run.model) == "last" else "best.pt"
        loaded = load_checkpoint(run_dir / scored, map_location=self.device)
        with loaded.procedure.scoring(loaded.model):
            return help_importance_of(self.suite.evaluation_for(run.model), loaded.model, loaded.vocab,
                                      self.corpus(run.dataset), run.seed, state_path, stop=self.stop)

    def _run_here(self, pending: list[PendingRun]) -> None:
        """Every pending run's training and cheap columns, in the suite's order; then their IW passes."""
        for importance in (False, True):
            runs = [run for run in pending if not self.has_done(run, importance)]
            durations: list[float] = []
            for done, run in enumerate(runs):
                left = len(runs) - done
                eta = f", about {sum(durations) / len(durations) * left / 60:.1f} min left" if durations else ""
                self.log(f"{run.label}: {self.work_left(run)}{eta}")
                started = time.perf_counter()
                self.complete(run, importance)
                durations.append(time.perf_counter() - started)

    def work_left(self, run: PendingRun) -> str:
        """What ``run`` has left, for the line that starts it: its training (new or resumed), only its evaluation
        (its training, or a twin's it is scored from, is finished), or only its IW-NLL (the rest is recorded)."""
        record_path = self.record_path(run.model, run.dataset, run.seed, run.key)
        if record_path.is_file():
            if from_a_lost_training(read_record(record_path), self.root / "runs" / run.folder):
                return "training again, then every column (the training its record came from is gone)"
            return "IW-NLL (its other columns are recorded)"
        progress_path = self.root / "runs" / run.folder / "progress.json"
        if not progress_path.is_file():
            return "training"
        progress = json.loads(progress_path.read_text())
        total = planned_steps(progress, self.suite.max_steps)
        if progress["step"] >= total:
            return "evaluating (trained)"
        return f"resuming training at step {progress['step']:,} of {total:,}"

    def _run_in_workers(self, pending: list[PendingRun]) -> None:
        """Each pending training, with the runs scored from it one after another, in one of ``workers`` spawned
        processes: first as a task that trains it and gives its runs their cheap columns, then, queued when that
        task is done (so behind every training not yet begun), a task for their IW passes. Trainings are taken up
        in the suite's order, those of rows marked ``starts_first`` before the rest (a row that alone outlasts the
        others together, begun last, would leave every other worker idle for most of its time), and the IW passes
        of runs a stopped bench left trained come after them all, as if it had not stopped. A worker left with
        nothing to do joins an IW pass under way, batch by batch. The first failure cancels the tasks not yet
        started (those under way finish and keep their records) and is raised here."""
        trainings: dict[str, list[PendingRun]] = {}
        for run in pending:
            trainings.setdefault(run.folder, []).append(run)
        tasks = sorted(((runs, all(self.has_done(run, False) for run in runs)) for runs in trainings.values()),
                       key=lambda task: (task[1], not any(run.model.starts_first for run in task[0])))  # stable
        workers = min(self.workers, len(trainings))
        threads = max(1, torch.get_num_threads() // workers)
        context = multiprocessing.get_context("spawn")  # a clean interpreter: no inherited CUDA or thread state
        self.log(f"{len(pending)} runs ({len(trainings)} trainings) over {workers} worker processes, {threads} torch "
                 "thread(s) each")
        for runs, _ in tasks:  # in the order workers take them up
            for run in runs:
                self.log(f"{run.label}: {self.work_left(run)}")
        started = time.perf_counter()
        shared_flag = context.Event()
        if self.stop is not None:  # a signal to this process reaches the workers through the shared flag
            self.stop.shared_flag = shared_flag
        deadline = self.stop.deadline if self.stop is not None else None
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                 initargs=(context.Value("i", 0), threads, deadline, shared_flag)) as pool:
            def submit(runs: list[PendingRun], importance: bool):
                return pool.submit(_complete_in_worker, self.suite, self.out_dir, self.data_dir, self.device, runs,
                                   importance)

            futures = {submit(runs, importance): (runs, importance) for runs, importance in tasks}
            remaining, done = set(futures), 0
            helpers: dict[Any, PendingRun] = {}

            def offer_help() -> None:
                """Give each worker with nothing to do an IW pass another worker is running: near the end of a
                suite the last passes would otherwise run on one worker each while the others wait."""
                while len(remaining) < workers:
                    running = [futures[future][0] for future in remaining
                               if future in futures and futures[future][1] and future.running()]
                    run = next((run for runs in running for run in runs if self.joinable_pass(run)), None)
                    if run is None:
                        return
                    helper = pool.submit(_help_in_worker, self.suite, self.out_dir, self.data_dir, self.device, run)
                    helpers[helper] = run
                    remaining.add(helper)
                    self.log(f"{run.label}: another worker joins its IW pass")

            try:
                while remaining:
                    idle = len(remaining) < workers
                    finished, remaining = wait(remaining, timeout=HELP_POLL_S if idle else None,
                                               return_when=FIRST_COMPLETED)
                    for future in finished:
                        if future in helpers:
                            batches = future.result()
                            self.log(f"{helpers.pop(future).label}: the joining worker did {batches} batches of "
                                     "its IW pass")
                            continue
                        future.result()
                        runs, importance = futures[future]
                        labels = "; ".join(run.label for run in runs)
                        minutes = f"{(time.perf_counter() - started) / 60:.1f} min"
                        if importance:
                            done += 1
                            self.log(f"{labels}: done ({done}/{len(trainings)} trainings, {minutes})")
                            continue
                        self.log(f"{labels}: trained, cheap columns recorded ({minutes})")
                        following = submit(runs, True)
                        futures[following] = (runs, True)
                        remaining.add(following)
                    offer_help()
            except BaseException:
                for future in remaining:
                    future.cancel()
                raise

    def train_and_evaluate(self, model: ModelSpec, dataset: str, seed: int, key: str, text: str,
                           folder: str, importance: bool = True) -> dict[str, Any]:
        """Train (or resume, or load trained) one run in ``runs/<folder>`` and evaluate it, writing its record
        after each evaluation phase (the IW pass only with ``importance``); return it."""
        record_path = self.record_path(model, dataset, seed, key)
        run_dir = self.root / "runs" / folder
        resume = (run_dir / CHECKPOINT).is_file()
        record = read_record(record_path) if record_path.is_file() else None
        previous = None
        if record is not None and not is_complete(record) and from_a_lost_training(record, run_dir):
            previous, record = record, None  # its columns are another training's: computed again from the new one
        write_json_atomically(run_dir / TAKEN_FILE, {"taken_at": _now(), "pid": os.getpid()})
        if not resume:
            write_json_atomically(run_dir / STARTED_FILE, {"git_commit": git_commit(), "started_at": _now()})
        try:
            trained = train_run([] if resume else model.configs, dataset, run_dir, data_dir=self.data_dir,
                                bindings=[] if resume else self.suite.training_bindings(model),
                                max_steps=self.suite.max_steps, seed=seed, resume=resume, device=self.device,
                                progress=self.progress, dataset_options=self.suite.dataset_options.get(dataset),
                                stop=self.stop)
        except NonFiniteLossError as error:
            record = self._diverged_record(model, dataset, seed, key, text, run_dir, error)
            write_json_atomically(record_path, record)
            self.log(f"{model.name}: training diverged at step {error.step} (epoch {error.epoch}); recorded")
            return record
        settings = self.suite.evaluation_for(model)
        checkpoint = self.suite.scored_checkpoint(model)
        scored = _load_scored_checkpoint(trained, run_dir, checkpoint, model.name)
        saved_pass = iw_progress_path(self.root, record_path.name, run_dir, checkpoint)
        if record is None:
            started = time.perf_counter()
            with trained.procedure.scoring(trained.model) as refinement:
                if evaluation_kind(settings) == "summarization":
                    metrics = evaluate_trained(settings, trained.model, trained.vocab, trained.corpus, seed)
                else:
                    metrics = evaluate_bounds_of(settings, trained.model, trained.vocab, trained.corpus, seed)
            metrics.update(scored_as(refinement))
            record = {**self._record_header(model.name, dataset, trained.corpus, key, seed, metrics),
                      "complete": evaluation_kind(settings) == "summarization",
                      **self._run_details(model, text, trained, run_dir), "scored_checkpoint": scored,
                      "evaluation_seconds": time.perf_counter() - started}
            if previous is not None:
                record["retrained"] = _retrained(previous, metrics)
            # a saved IW pass goes on only beside the columns it began with: a lost training's, reproduced by the new
            # one to the last bit; a record deleted to redo its run takes its pass with it
            kept = saved_pass.is_file() and previous is not None and record["retrained"]["reproduced"]
            if not kept:
                saved_pass.unlink(missing_ok=True)
            if previous is not None:
                self.log(f"{model.name}: trained again (the training its record came from is gone); its columns, "
                         f"computed again, {record['retrained']['summary']}"
                         + ("; its saved IW pass goes on" if kept else ""))
            write_json_atomically(record_path, record)
        if importance and not is_complete(record):
            started = time.perf_counter()
            state_path = self.root / IW_PROGRESS / record_path.name
            if saved_pass != state_path and saved_pass.is_file():  # saved in the training folder by an older version
                state_path.parent.mkdir(exist_ok=True)
                saved_pass.replace(state_path)
            with trained.procedure.scoring(trained.model):
                metrics = evaluate_importance_of(settings, trained.model, trained.vocab, trained.corpus, seed,
                                                 record["metrics"], stop=self.stop, state_path=state_path)
            record = {**record, **self._record_header(model.name, dataset, trained.corpus, key, seed, metrics),
                      "complete": True, "started_commit": record.get("started_commit"),
                      "evaluation_seconds": record["evaluation_seconds"] + time.perf_counter() - started}
            write_json_atomically(record_path, record)
        return record

    def _run_details(self, model: ModelSpec, text: str, trained, run_dir: Path) -> dict[str, Any]:
        history = trained.history
        return {
            "configs": list(model.configs),
            "bindings": self.suite.training_bindings(model),
            "config_text": text,
            "config_hash": config_hash(text),
            "started_commit": _started_commit(run_dir),
            "training_folder": run_dir.name,
            "training": {
                "epochs": history[-1]["epoch"] if history else 0,
                "steps": history[-1]["step"] if history else 0,
                "wall_seconds": sum(row["seconds"] for row in history),
                "tokens_per_s": (sum(row["tokens_per_s"] * row["seconds"] for row in history)
                                 / max(sum(row["seconds"] for row in history), 1e-9)),
                "parameters": trained.model.num_parameters(),
                "precision": trained.precision,
                # the numbers of processes that trained it, in order: more than one, or another than one, and a
                # rerun by one bench worker matches the record only to rounding
                "processes": list(dict.fromkeys(count for row in history for count in processes_of(row))),
                "history": history,
            },
        }

    def _diverged_record(self, model: ModelSpec, dataset: str, seed: int, key: str, text: str, run_dir: Path,
                         error: NonFiniteLossError) -> dict[str, Any]:
        """The record of a run whose loss became NaN or infinite: where, and the epochs it finished before."""
        progress = json.loads((run_dir / "progress.json").read_text()) if (run_dir / "progress.json").is_file() else {}
        return {**self._record_header(model.name, dataset, self.corpus(dataset), key, seed, {}),
                "complete": True, "configs": list(model.configs), "bindings": self.suite.training_bindings(model),
                "config_text": text, "config_hash": config_hash(text), "started_commit": _started_commit(run_dir),
                "diverged": {"step": error.step, "epoch": error.epoch, "loss": repr(error.loss),
                             "reason": f"the training loss became {error.loss!r}",
                             "last_checkpoint_step": progress.get("step")}}

    def _record_header(self, model: str, dataset: str, corpus, key: str, seed: int | None,
                       metrics: dict[str, Any]) -> dict[str, Any]:
        """What every record holds: identity, data, protocol, metrics and provenance."""
        return {
            "record_version": RECORD_VERSION,
            "run_key": key,
            "suite": self.suite.name,
            "model": model,
            "dataset": {"name": dataset, "options": self.suite.dataset_options.get(dataset, {}),
                        "fingerprint": corpus.fingerprint, "checksums": corpus.checksums,
                        **{key: corpus.metadata[key] for key in ("departures_from_published",)
                           if key in corpus.metadata}},
            "protocol_version": self.protocol_version,
            "seed": seed,
            "metrics": metrics,
            "provenance": {
                "package_version": _package_version(),
                "git_commit": git_commit(),
                "torch_version": torch.__version__,
                "python": platform.python_version(),
                "platform": platform.platform(),
                "device": _device_name(self.device),
                # the vector instructions torch's CPU kernels ran with: trainings on machines that differ in it (or in
                # their processor, named in "device") can differ in the last bits, so a retraining elsewhere need not
                # reproduce a record
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "finished_at": _now(),
            },
        }

    def record_baselines(self) -> list[str]:
        """Score the suite's untrained baselines on each dataset once (cached like runs); return their labels."""
        if not self.suite.baselines:
            return []
        labels: list[str] = []
        for dataset in self.suite.datasets:
            corpus = self.corpus(dataset)
            identity = json.dumps({"baselines": self.suite.baselines, "fingerprint": corpus.fingerprint,
                                   "protocol": self.protocol_version, "evaluation": self.suite.evaluation},
                                  sort_keys=True)
            key = hashlib.sha256(identity.encode()).hexdigest()[:16]
            cached = sorted((self.root / "records").glob(f"baseline-{_slug(dataset)}-*-{key}.json"))
            if cached:
                labels += [json.loads(p.read_text())["model"] for p in cached]
                self.log(f"baselines on {dataset}: cached")
                continue
            self.log(f"baselines on {dataset}: {', '.join(self.suite.baselines)}")
            for label, metrics in evaluate_baselines(self.suite.evaluation, self.suite.baselines, corpus).items():
                record = {**self._record_header(label, dataset, corpus, key, None, metrics), "baseline": True}
                write_json_atomically(self.root / "records" / f"baseline-{_slug(dataset)}-{_slug(label)}-{key}.json",
                                      record)
                labels.append(label)
        return list(dict.fromkeys(labels))

    # -- tables ---------------------------------------------------------------------------------------------------
    def write_description(self, baseline_labels: list[str], keyed: list[tuple[ModelSpec, str, int, str, str]],
                          folders: dict[str, str]) -> None:
        suite = self.suite
        write_json_atomically(self.root / "suite.json", {
            "name": suite.name, "title": suite.title,
            "models": [*baseline_labels, *(m.name for m in suite.models)],
            "columns": [asdict(c) for c in suite.columns], "references": suite.references,
            "runs": [{"model": model.name, "dataset": dataset, "seed": seed, "key": key, "folder": folders[key],
                      "checkpoint": suite.scored_checkpoint(model),
                      "record": self.record_path(model, dataset, seed, key).name}
                     for model, dataset, seed, key, _ in keyed]})

    def write_tables(self) -> str:
        from seqvae_zoo.bench.leaderboard import load_results

        results = load_results(self.root)
        for fmt, suffix in (("md", "md"), ("latex", "tex"), ("csv", "csv")):
            write_text_atomically(self.root / f"leaderboard.{suffix}", render(results, fmt))
        return render(results, "md")


_worker_stop: StopRequest | None = None


def _start_worker(counter, threads: int, deadline: float | None, shared_flag) -> None:
    """Set up a bench worker: its share of the CPU threads, where there are several GPUs one of its own, and the
    bench's stop request (a scheduler may signal every process of the job: a signal here stops all workers)."""
    global _worker_stop
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    torch.set_num_threads(threads)
    if torch.cuda.is_available():
        torch.cuda.set_device(index % torch.cuda.device_count())
    _worker_stop = StopRequest(deadline, shared_flag=shared_flag)
    for number in STOP_SIGNALS:
        signal.signal(number, _worker_stop.on_signal)


def _worker_bench(suite: Suite, out_dir: Path, data_dir: str | None, device: str) -> Bench:
    return Bench(suite, out_dir, data_dir=data_dir, device=device, progress=False, log=_worker_log,
                 stop=_worker_stop)


def _worker_log(line: str) -> None:
    """A worker's line (a retrained run's verdict, a diverged training) on the bench's output, flushed at once: a
    worker's standard output is block-buffered when it goes to a file, and the line would come late or be lost."""
    print(line, flush=True)


def _complete_in_worker(suite: Suite, out_dir: Path, data_dir: str | None, device: str,
                        runs: list[PendingRun], importance: bool) -> None:
    bench = _worker_bench(suite, out_dir, data_dir, device)
    for run in runs:
        if not bench.has_done(run, importance):
            bench.complete(run, importance)


def _help_in_worker(suite: Suite, out_dir: Path, data_dir: str | None, device: str, run: PendingRun) -> int:
    return _worker_bench(suite, out_dir, data_dir, device).help_with_pass(run)


def _retrained(previous: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """What a record computed again from a new training keeps of the one it replaces: its metrics, when it was
    written, and whether the new training reproduced them (every number the same, clocks aside)."""
    differences = [f"{name} {old!r} -> {new!r}" for name, old, new in _numbers_compared(previous["metrics"], metrics)
                   if not (old == new or math.isnan(old) and math.isnan(new))]
    return {"previous_finished_at": previous.get("provenance", {}).get("finished_at"),
            "previous_metrics": previous["metrics"], "reproduced": not differences,
            "summary": ("are the recorded ones, every number the same" if not differences else
                        f"differ from the recorded ones: {'; '.join(differences[:4])}"
                        + (f" and {len(differences) - 4} more" if len(differences) > 4 else ""))}


def _numbers_compared(old: Any, new: Any, name: str = "") -> Iterator[tuple[str, float, float]]:
    """(dotted name, old, new) for every number both metric trees hold, clocks ("seconds") left out."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(old.keys() & new.keys()):
            if key != "seconds":
                yield from _numbers_compared(old[key], new[key], f"{name}.{key}" if name else key)
    elif isinstance(old, (int, float)) and isinstance(new, (int, float)) and not isinstance(old, bool):
        yield name, float(old), float(new)


def _load_scored_checkpoint(trained, run_dir: Path, checkpoint: str, model_name: str) -> dict[str, Any]:
    """Put the weights the run is scored with into ``trained.model``, and say which they are: what training left
    (the epochs it completed, the step it reached, and that epoch's validation -ELBO when it stopped at an epoch's
    end) or those of ``best.pt``, the epoch of the best validation -ELBO."""
    if checkpoint == "last":
        last = trained.history[-1] if trained.history else {}
        progress = run_dir / "progress.json"
        step = json.loads(progress.read_text())["step"] if progress.is_file() else last.get("step")
        return {"checkpoint": "last", "epoch": last.get("epoch"), "step": step,
                "valid_neg_elbo": last.get("valid_neg_elbo") if last.get("step") == step else None}
    from seqvae_zoo.training.checkpoint import read_checkpoint

    path = run_dir / "best.pt"
    if not path.is_file():
        raise SuiteError(f"{model_name}: evaluation checkpoint = \"best\" scores the best validation epoch, and "
                         f"{str(path)!r} does not exist: the run ended before its first epoch did (a max_steps "
                         "budget under one epoch). Give the suite at least one epoch, or score checkpoint = \"last\"")
    state = read_checkpoint(path, map_location=next(trained.model.parameters()).device)
    trained.model.load_state_dict(state["model"])
    return {"checkpoint": "best", "epoch": state["epoch"], "step": state["step"],
            "valid_neg_elbo": state["best_valid"]}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _started_commit(run_dir: Path) -> str | None:
    """The commit a run's training started on (a resumed run may finish on another)."""
    path = run_dir / STARTED_FILE
    return json.loads(path.read_text()).get("git_commit") if path.is_file() else None


def _package_version() -> str:
    from seqvae_zoo import __version__

    return __version__


def _device_name(device: str) -> str:
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({_cpu_model()}, {torch.get_num_threads()} threads)"


def _cpu_model() -> str:
    """The processor's model name where the system tells it (Linux's /proc/cpuinfo), else its architecture: two
    processors of one architecture and vector width (an AMD EPYC, an Intel Xeon) can round differently."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()}, {platform.machine()}"
    except OSError:
        pass
    return platform.processor() or platform.machine()

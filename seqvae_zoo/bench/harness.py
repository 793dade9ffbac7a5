"""``seqvae bench``: train and evaluate every run of a suite, cache finished runs, write one record per run.

Layout of ``--out`` (default ``bench-results``)::

    <suite>/suite.json          what the tables need (title, columns, models, references)
    <suite>/records/<run>.json  one finished run: metrics and full provenance (written atomically)
    <suite>/runs/<key>/         the run's checkpoints and logs (an interrupted run resumes from here)
    <suite>/leaderboard.{md,tex,csv}

A run is identified by the hash of its operative config, its dataset's fingerprint, the metric protocol version, the
seed and the evaluation settings: a record with that key is a finished run and is not redone.

With ``workers`` > 1 the runs that are not yet recorded are shared out to that many worker processes, each training
one run at a time in a single process with its part of the CPU threads (or, on a machine with several GPUs, a GPU of
its own); each worker writes its records itself, as the single-process harness does.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import platform
import subprocess
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from seqvae_zoo.bench.evaluations import evaluate_baselines, evaluate_trained, protocol_version
from seqvae_zoo.bench.leaderboard import render
from seqvae_zoo.bench.suite import ModelSpec, Suite, SuiteError
from seqvae_zoo.presets import config_hash, parse_config
from seqvae_zoo.training.run import CHECKPOINT, default_device, train_run

RECORD_VERSION = 1


def write_json_atomically(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w") as handle:
        json.dump(payload, handle, indent=1, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def git_commit() -> str | None:
    """The commit of the seqvae_zoo source in use, with "+dirty" for uncommitted changes; None outside git."""
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip("-").lower()


def _training_bindings(suite: Suite, model: ModelSpec) -> list[str]:
    bindings = [*suite.bindings, *model.bindings]
    if suite.epochs is not None:
        bindings.append(f"training.TrainingSettings.epochs = {suite.epochs}")
    return bindings


@dataclass(frozen=True)
class PendingRun:
    """A run of the suite without a record yet."""

    label: str
    model: ModelSpec
    dataset: str
    seed: int
    key: str
    text: str


class Bench:
    """Runs one suite into ``out_dir / suite.name``, in this process or over ``workers`` worker processes."""

    def __init__(self, suite: Suite, out_dir: str | Path, data_dir: str | None = None, device: str | None = None,
                 progress: bool = True, log: Callable[[str], None] = tqdm.write, workers: int = 1):
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
        text = parse_config(model.configs, _training_bindings(self.suite, model))
        identity = json.dumps({"config": text, "dataset": dataset, "fingerprint": self.corpus(dataset).fingerprint,
                               "protocol": self.protocol_version, "seed": seed, "max_steps": self.suite.max_steps,
                               "evaluation": self.suite.evaluation_for(model)}, sort_keys=True)
        return hashlib.sha256(identity.encode()).hexdigest()[:16], text

    def record_path(self, model: ModelSpec, dataset: str, seed: int, key: str) -> Path:
        return self.root / "records" / f"{_slug(model.name)}-{_slug(dataset)}-seed{seed}-{key}.json"

    # -- running --------------------------------------------------------------------------------------------------
    def run(self) -> str:
        """Run every run not already recorded; return the leaderboard in Markdown (also written as md/tex/csv)."""
        self.write_description(self.record_baselines())
        runs = self.suite.runs()
        pending = []
        for index, (model, dataset, seed) in enumerate(runs, 1):
            key, text = self.run_key(model, dataset, seed)
            record_path = self.record_path(model, dataset, seed, key)
            label = f"[{index}/{len(runs)}] {model.name} on {dataset}, seed {seed}"
            if record_path.is_file():
                self.log(f"{label}: cached ({record_path.name})")
            else:
                pending.append(PendingRun(label, model, dataset, seed, key, text))
        if self.workers == 1 or len(pending) <= 1:
            self._run_here(pending)
        else:
            self._run_in_workers(pending)
        return self.write_tables()

    def complete(self, run: PendingRun) -> None:
        """Train and evaluate ``run`` and write its record."""
        record = self.train_and_evaluate(run.model, run.dataset, run.seed, run.key, run.text)
        write_json_atomically(self.record_path(run.model, run.dataset, run.seed, run.key), record)

    def _run_here(self, pending: list[PendingRun]) -> None:
        durations: list[float] = []
        for done, run in enumerate(pending):
            left = len(pending) - done
            eta = f", about {sum(durations) / len(durations) * left / 60:.1f} min left" if durations else ""
            self.log(f"{run.label}: training{eta}")
            started = time.perf_counter()
            self.complete(run)
            durations.append(time.perf_counter() - started)

    def _run_in_workers(self, pending: list[PendingRun]) -> None:
        """Each pending run in one of ``workers`` spawned processes; the first failure cancels the runs not yet
        started (those under way finish and keep their records) and is raised here."""
        workers = min(self.workers, len(pending))
        threads = max(1, torch.get_num_threads() // workers)
        context = multiprocessing.get_context("spawn")  # a clean interpreter: no inherited CUDA or thread state
        self.log(f"{len(pending)} runs over {workers} worker processes, {threads} torch thread(s) each")
        started = time.perf_counter()
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                 initargs=(context.Value("i", 0), threads)) as pool:
            futures = {pool.submit(_complete_in_worker, self.suite, self.out_dir, self.data_dir, self.device, run):
                       run for run in pending}
            remaining = set(futures)
            try:
                while remaining:
                    finished, remaining = wait(remaining, return_when=FIRST_EXCEPTION)
                    for future in finished:
                        future.result()
                        self.log(f"{futures[future].label}: done ({len(futures) - len(remaining)}/{len(futures)}, "
                                 f"{(time.perf_counter() - started) / 60:.1f} min)")
            except BaseException:
                for future in remaining:
                    future.cancel()
                raise

    def train_and_evaluate(self, model: ModelSpec, dataset: str, seed: int, key: str, text: str) -> dict[str, Any]:
        run_dir = self.root / "runs" / key
        resume = (run_dir / CHECKPOINT).is_file()
        trained = train_run([] if resume else model.configs, dataset, run_dir, data_dir=self.data_dir,
                            bindings=[] if resume else _training_bindings(self.suite, model),
                            max_steps=self.suite.max_steps, seed=seed, resume=resume, device=self.device,
                            progress=self.progress, dataset_options=self.suite.dataset_options.get(dataset))
        started = time.perf_counter()
        metrics = evaluate_trained(self.suite.evaluation_for(model), trained.model, trained.vocab, trained.corpus, seed)
        history = trained.history
        return {
            **self._record_header(model.name, dataset, trained.corpus, key, seed, metrics),
            "configs": list(model.configs),
            "bindings": _training_bindings(self.suite, model),
            "config_text": text,
            "config_hash": config_hash(text),
            "training": {
                "epochs": history[-1]["epoch"] if history else 0,
                "steps": history[-1]["step"] if history else 0,
                "wall_seconds": sum(row["seconds"] for row in history),
                "tokens_per_s": (sum(row["tokens_per_s"] * row["seconds"] for row in history)
                                 / max(sum(row["seconds"] for row in history), 1e-9)),
                "parameters": trained.model.num_parameters(),
                "history": history,
            },
            "evaluation_seconds": time.perf_counter() - started,
        }

    def _record_header(self, model: str, dataset: str, corpus, key: str, seed: int | None,
                       metrics: dict[str, Any]) -> dict[str, Any]:
        """What every record holds: identity, data, protocol, metrics and provenance."""
        return {
            "record_version": RECORD_VERSION,
            "run_key": key,
            "suite": self.suite.name,
            "model": model,
            "dataset": {"name": dataset, "options": self.suite.dataset_options.get(dataset, {}),
                        "fingerprint": corpus.fingerprint, "checksums": corpus.checksums},
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
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
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
    def write_description(self, baseline_labels: list[str]) -> None:
        suite = self.suite
        write_json_atomically(self.root / "suite.json", {
            "name": suite.name, "title": suite.title,
            "models": [*baseline_labels, *(m.name for m in suite.models)],
            "columns": [asdict(c) for c in suite.columns], "references": suite.references})

    def write_tables(self) -> str:
        from seqvae_zoo.bench.leaderboard import load_results

        results = load_results(self.root)
        for fmt, suffix in (("md", "md"), ("latex", "tex"), ("csv", "csv")):
            path = self.root / f"leaderboard.{suffix}"
            temporary = path.with_name(f".{path.name}.tmp")
            temporary.write_text(render(results, fmt))
            os.replace(temporary, path)
        return render(results, "md")


def _start_worker(counter, threads: int) -> None:
    """Set up a bench worker: its share of the CPU threads and, where there are several GPUs, one of its own."""
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    torch.set_num_threads(threads)
    if torch.cuda.is_available():
        torch.cuda.set_device(index % torch.cuda.device_count())


def _complete_in_worker(suite: Suite, out_dir: Path, data_dir: str | None, device: str, run: PendingRun) -> None:
    Bench(suite, out_dir, data_dir=data_dir, device=device, progress=False, log=lambda _: None).complete(run)


def _package_version() -> str:
    from seqvae_zoo import __version__

    return __version__


def _device_name(device: str) -> str:
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"

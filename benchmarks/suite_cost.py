"""How long each training run of a suite would take, from a few timed updates of each on its real data.

For every (model, dataset) of the suite, a fresh run with the suite's bindings and first seed trains ``--warmup``
untimed optimizer updates, then ``--updates`` timed ones (an update is one optimizer step of the run: aggressive
training's encoder-only steps each count, SA-VAE's refinement happens inside its step). Printed per run: the
median seconds per update, updates per batch of the epoch in the timed window (above 1 while aggressive training's
inner loops last, which the window samples only at the start of training), batches per epoch, the suite's epochs
extrapolated to hours, and the time per update relative to the suite's first run. The ratio moves less with the
machine's load than the seconds do. Evaluation is not counted (a record's ``evaluation_seconds`` gives it).

    SEQVAE_DATA=../shared/data python benchmarks/suite_cost.py zoo-ptb [--updates 5] [--warmup 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from tabulate import tabulate

from seqvae_zoo.bench.suite import load_suite
from seqvae_zoo.errors import UserError
from seqvae_zoo.training.run import train_run
from seqvae_zoo.training.trainer import Trainer


class UpdateClock:
    """Seconds of each optimizer update and the epoch's batches drawn, while installed on the trainer class."""

    def __init__(self):
        self.seconds: list[float] = []
        self.batches = 0
        self.batches_per_epoch = 0

    def __enter__(self) -> "UpdateClock":
        self._update, self._next_batch = Trainer.update, Trainer.next_batch
        clock = self

        def update(trainer, *args, **kwargs):
            started = time.perf_counter()
            result = clock._update(trainer, *args, **kwargs)
            clock.seconds.append(time.perf_counter() - started)
            clock.batches_per_epoch = len(trainer.sampler)
            return result

        def next_batch(trainer):
            clock.batches += 1
            return clock._next_batch(trainer)

        Trainer.update, Trainer.next_batch = update, next_batch
        return self

    def __exit__(self, *exc) -> None:
        Trainer.update, Trainer.next_batch = self._update, self._next_batch


def time_run(model, dataset: str, suite, warmup: int, updates: int, data_dir: str | None) -> dict[str, float]:
    """One run's timed updates: seconds per update (median after ``warmup``), updates per epoch batch, batches."""
    with tempfile.TemporaryDirectory() as out, UpdateClock() as clock:
        train_run(list(model.configs), dataset, Path(out) / "run", data_dir=data_dir,
                  bindings=suite.training_bindings(model), max_steps=warmup + updates, seed=suite.seeds[0],
                  progress=False, device="cpu", dataset_options=suite.dataset_options.get(dataset))
    timed = clock.seconds[warmup:]
    return {"per_update": statistics.median(timed), "updates_per_batch": len(clock.seconds) / max(clock.batches, 1),
            "batches_per_epoch": clock.batches_per_epoch}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suite", help="a shipped suite's name or a suite file")
    parser.add_argument("--updates", type=int, default=5, help="timed updates per run")
    parser.add_argument("--warmup", type=int, default=2, help="untimed updates first")
    parser.add_argument("--models", nargs="+", default=None, help="only these rows (their names in the suite)")
    parser.add_argument("--data-dir", default=None, help="folder holding the corpora (default: $SEQVAE_DATA)")
    args = parser.parse_args(argv)
    try:
        suite = load_suite(args.suite)
        models = [m for m in suite.models if args.models is None or m.name in args.models]
        if not models:
            raise UserError(f"no model of suite {args.suite!r} is named {', '.join(args.models)}; its models: "
                            f"{', '.join(m.name for m in suite.models)}")
        rows, first = [], None
        for model in models:
            for dataset in suite.datasets:
                cost = time_run(model, dataset, suite, args.warmup, args.updates, args.data_dir)
                first = first or cost["per_update"]
                epochs = suite.epochs or 0
                hours = cost["per_update"] * cost["updates_per_batch"] * cost["batches_per_epoch"] * epochs / 3600
                rows.append((model.name, dataset, f"{cost['per_update']:.3f}", f"{cost['updates_per_batch']:.1f}",
                             cost["batches_per_epoch"], f"{hours:.1f}", f"{cost['per_update'] / first:.1f}"))
                print(f"{model.name} on {dataset}: {cost['per_update']:.3f} s per update", file=sys.stderr,
                      flush=True)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{suite.title}: {args.updates} timed updates per run after {args.warmup}, {torch.get_num_threads()} "
          f"thread(s), {suite.epochs} epochs")
    print(tabulate(rows, headers=("model", "dataset", "s / update", "updates / batch", "batches / epoch",
                                  "training hours", "x first row"), tablefmt="github", disable_numparse=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

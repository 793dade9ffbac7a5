"""Where a training step's time goes: the parts of the steps that ``throughput.py`` times, each timed in place.

For each preset, on the same length-bucketed PTB batches as ``throughput.py`` (paper sizes, batch 32), whole training
steps run as the trainer runs them, with a clock around each part:

- the encoder's forward pass; its backward pass is part of "rest of backward";
- the packed recurrence of the stochastic decoders (``PackedLSTM``, the attentive head included), forward and backward;
- the fused output layer and cross-entropy (``linear_cross_entropy``), forward and backward;
- everything else of the forward and backward passes (embeddings, dropout, input projection, the per-step prior and
  KL terms, ``nn.LSTM`` for the deterministic decoder, autograd's own work), gradient clipping and Adam.

Each part is the median over repetitions of its total over the batches, per step. The clocks cost a few
microseconds per call, so the parts add up to slightly more than ``throughput.py``'s step.

    python benchmarks/step_breakdown.py --presets vrae_sa_aux vrae
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from tabulate import tabulate

from throughput import BATCH_SIZE, CLIP_NORM, PRESETS, ptb_batches
from seqvae_zoo import build_model, parse_config
from seqvae_zoo.decoders.lstm import PackedLSTM
from seqvae_zoo.model import _LinearCrossEntropy
from seqvae_zoo.training.memory import keep_freed_memory
from seqvae_zoo.training.trainer import make_optimizer

#: (autograd function, its pass, the part it is timed as)
TIMED_FUNCTIONS = ((PackedLSTM, "forward", "recurrence forward"), (PackedLSTM, "backward", "recurrence backward"),
                   (_LinearCrossEntropy, "forward", "output layer forward"),
                   (_LinearCrossEntropy, "backward", "output layer backward"))
PARTS = ("encoder forward", "recurrence forward", "output layer forward", "rest of forward", "recurrence backward",
         "output layer backward", "rest of backward", "clipping", "Adam")


class Clocks:
    """Seconds spent in each named part since the last :meth:`reset`."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    def reset(self) -> None:
        self.seconds.clear()

    @contextmanager
    def timing(self, part: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[part] += time.perf_counter() - start

    def wrap(self, function, part: str):
        def timed(*args, **kwargs):
            with self.timing(part):
                return function(*args, **kwargs)
        return timed


@contextmanager
def clocked_functions(clocks: Clocks) -> Iterator[None]:
    """The autograd functions of :data:`TIMED_FUNCTIONS` with a clock around each pass, restored afterwards."""
    originals = [(cls, name, cls.__dict__[name]) for cls, name, _ in TIMED_FUNCTIONS]
    try:
        for cls, name, part in TIMED_FUNCTIONS:
            setattr(cls, name, staticmethod(clocks.wrap(getattr(cls, name), part)))
        yield
    finally:
        for cls, name, original in originals:
            setattr(cls, name, original)


def breakdown(preset: str, data_dir: str | None, batches: int, repeats: int) -> dict[str, float]:
    """Milliseconds per step of each part of :data:`PARTS`, and of the whole step."""
    torch.manual_seed(0)
    vocab, train, _, _ = ptb_batches(data_dir, batches, 0, 0)
    parse_config([preset])
    model = build_model(vocab.size, vocab.pad_id, vocab.bos_id, vocab.unk_id)
    optimizer = make_optimizer(model.parameters(), 1e-3)
    clocks = Clocks()
    if model.encoder is not None:
        model.encoder.forward = clocks.wrap(model.encoder.forward, "encoder forward")
    model.train()
    per_repeat: dict[str, list[float]] = defaultdict(list)
    with clocked_functions(clocks):
        for repeat in range(repeats + 1):  # the first pass warms up
            clocks.reset()
            start = time.perf_counter()
            for batch in train:
                optimizer.zero_grad(set_to_none=True)
                with clocks.timing("forward"):
                    loss = model.objective(model(batch.tokens, batch.lengths), {})
                with clocks.timing("backward"):
                    loss.backward()
                with clocks.timing("clipping"):
                    torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
                with clocks.timing("Adam"):
                    optimizer.step()
            step = (time.perf_counter() - start) / len(train)
            if not repeat:
                continue
            ms = {part: seconds / len(train) * 1e3 for part, seconds in clocks.seconds.items()}
            ms["rest of forward"] = ms["forward"] - sum(ms.get(part, 0.0) for part in (
                "encoder forward", "recurrence forward", "output layer forward"))
            ms["rest of backward"] = ms["backward"] - sum(ms.get(part, 0.0) for part in (
                "recurrence backward", "output layer backward"))
            ms["step"] = step * 1e3
            for part, value in ms.items():
                per_repeat[part].append(value)
    return {part: statistics.median(values) for part, values in per_repeat.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--data-dir", help="folder holding ptb/ (default: $SEQVAE_DATA, then the user cache)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--batches", type=int, default=20, help=f"training batches of {BATCH_SIZE} per repetition")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.batches < 1 or args.repeats < 1:
        parser.error("--batches and --repeats must be at least 1")
    keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {preset: breakdown(preset, args.data_dir, args.batches, args.repeats) for preset in args.presets}
    rows = [[part] + [f"{results[p].get(part, 0.0):.1f}" for p in args.presets] for part in PARTS + ("step",)]
    print(tabulate(rows, headers=["ms per step"] + list(args.presets), tablefmt="github", disable_numparse=True))
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, medians of {args.repeats} passes over "
          f"{args.batches} batches")
    return 0


if __name__ == "__main__":
    sys.exit(main())

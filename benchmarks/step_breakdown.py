"""Where a training step's time goes: the parts of the steps that ``throughput.py`` times, each timed in place.

For each preset, on the same length-bucketed PTB batches as ``throughput.py`` (paper sizes, batch 32), whole training
steps run as the trainer runs them, with a clock around each part:

- the encoder's forward pass; its backward pass is part of "rest of backward";
- the packed recurrence of the stochastic decoders (``PackedLSTM``, the attentive head included), forward and backward,
  and within it the attentive head's per-step attention (scores, softmax and the context's projection forward;
  their gradients backward): what a fused attention kernel could at most save;
- the fused output layer and cross-entropy (``linear_cross_entropy``), forward and backward;
- everything else of the forward and backward passes (embeddings, dropout, input projection, the per-step prior and
  KL terms, ``nn.LSTM`` for the deterministic decoder, autograd's own work), gradient clipping and Adam.

Each part is the median over repetitions of its total over the batches, per step. The clocks cost a few
microseconds per call, so the parts add up to slightly more than ``throughput.py``'s step. ``--precisions fp32 bf16``
gives a column per training precision (bfloat16 products under autocast, :mod:`seqvae_zoo.kernels.precision`), each
training its own copy of the model, the precisions alternating pass by pass, and a column of ratios (each part's
fp32 time over its bf16 time, the median over the paired passes): which parts bfloat16 speeds up, and which it leaves
as they were, measured under the same load.

``--by-operation`` adds a second table: the same passes' time by kind of operation (torch.profiler's self CPU time
of each operator: products, the encoder's fused LSTM, casts and copies, softmax, Adam, clipping, everything else),
with casts and softmax split into those over the output layer's (tokens, vocabulary) block and the others: where a
precision's time goes across the parts, what bfloat16 adds (its casts) and what it cannot cut. The profiler's own
cost is then in every figure, the parts' clocks included.

    python benchmarks/step_breakdown.py --presets vrae_sa_aux vrae
    python benchmarks/step_breakdown.py --presets vrae_sa_aux --precisions fp32 bf16 --by-operation
    python benchmarks/step_breakdown.py --gin 'EMBEDDING = 8' --gin 'HIDDEN = 8' --gin 'LATENT = 1'

The last gives each part's cost at sizes where the arithmetic is negligible: what the Python loop and the
per-operation dispatch cost on their own.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext
from typing import Iterator, Sequence

import torch
from tabulate import tabulate
from torch.profiler import ProfilerActivity, profile

from throughput import BATCH_SIZE, CLIP_NORM, PRESETS, corpus_batches
from seqvae_zoo import build_model, parse_config
from seqvae_zoo.errors import UserError
from seqvae_zoo.kernels.latent_heads import AttentiveHead
from seqvae_zoo.kernels.output import _LinearCrossEntropy
from seqvae_zoo.kernels.precision import PRECISIONS, autocast, check_precision
from seqvae_zoo.kernels.recurrence import PackedLSTM
from seqvae_zoo.training.memory import keep_freed_memory
from seqvae_zoo.training.trainer import make_optimizer

#: (autograd function, its pass, the part it is timed as)
TIMED_FUNCTIONS = ((PackedLSTM, "forward", "recurrence forward"), (PackedLSTM, "backward", "recurrence backward"),
                   (_LinearCrossEntropy, "forward", "output layer forward"),
                   (_LinearCrossEntropy, "backward", "output layer backward"))
#: (class, method called at every step of the recurrence, the part of the recurrence it is timed as)
TIMED_STEP_METHODS = ((AttentiveHead, "_params", "attention forward"),
                      (AttentiveHead, "_context_backward", "attention backward"))
#: the table's rows: (label, the part it shows); the attention rows are parts of the recurrence rows above them
ROWS = (("encoder forward", "encoder forward"), ("recurrence forward", "recurrence forward"),
        ("of which attention", "attention forward"), ("output layer forward", "output layer forward"),
        ("rest of forward", "rest of forward"), ("recurrence backward", "recurrence backward"),
        ("of which attention", "attention backward"), ("output layer backward", "output layer backward"),
        ("rest of backward", "rest of backward"), ("clipping", "clipping"), ("Adam", "Adam"), ("step", "step"))

#: (kind of operation, the operators counted as it) for --by-operation; every other operator is "everything else"
OPERATION_KINDS = (
    ("products", {"aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm", "aten::addmv",
                  "mkldnn::_linear_pointwise"}),
    ("encoder's fused LSTM (oneDNN)", {"aten::mkldnn_rnn_layer", "aten::mkldnn_rnn_layer_backward"}),
    ("casts and copies", {"aten::copy_", "aten::_to_copy"}),
    ("softmax", {"aten::_softmax", "aten::_softmax_backward_data"}),
    ("Adam's kernel", {"aten::_fused_adam_"}),
    ("clipping's norms and scaling", {"aten::_foreach_norm", "aten::linalg_vector_norm", "aten::_foreach_mul_"}),
)
#: kinds split into the operations over the output layer's (tokens, vocabulary) block and the others
SPLIT_BY_BLOCK = ("casts and copies", "softmax")
OTHER_OPERATIONS = "everything else (elementwise, indexing, fills, dispatch)"
OPERATION_ROWS = tuple(f"{kind} {where}" if kind in SPLIT_BY_BLOCK else kind
                       for kind, _ in OPERATION_KINDS
                       for where in (("of the vocabulary block", "elsewhere") if kind in SPLIT_BY_BLOCK else ("",))
                       ) + (OTHER_OPERATIONS, "profiled total", "outside the operators (Python, the profiler)")


def operation_kind(name: str, shapes: list, vocabulary: int) -> str:
    """The row of :data:`OPERATION_ROWS` an operator's time goes to; ``shapes`` are its inputs' shapes."""
    kind = next((kind for kind, names in OPERATION_KINDS if name in names), OTHER_OPERATIONS)
    if kind in SPLIT_BY_BLOCK:
        first = shapes[0] if shapes else []
        kind += " of the vocabulary block" if len(first) == 2 and first[-1] == vocabulary else " elsewhere"
    return kind


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
    """The autograd functions of :data:`TIMED_FUNCTIONS` with a clock around each pass, and the methods of
    :data:`TIMED_STEP_METHODS` around each call, restored afterwards."""
    timed = TIMED_FUNCTIONS + TIMED_STEP_METHODS
    originals = [(cls, name, cls.__dict__[name]) for cls, name, _ in timed]
    try:
        for cls, name, part in TIMED_FUNCTIONS:
            setattr(cls, name, staticmethod(clocks.wrap(getattr(cls, name), part)))
        for cls, name, part in TIMED_STEP_METHODS:
            setattr(cls, name, clocks.wrap(cls.__dict__[name], part))
        yield
    finally:
        for cls, name, original in originals:
            setattr(cls, name, original)


def breakdown(preset: str, data_dir: str | None, batches: int, repeats: int, bindings: Sequence[str] = (),
              precisions: Sequence[str] = ("fp32",), by_operation: bool = False) -> dict[str, dict[str, float]]:
    """Per training precision, milliseconds per step of each part of :data:`ROWS` and of the whole step (with
    ``by_operation``, of each row of :data:`OPERATION_ROWS` too, the timed passes profiled); with more than one
    precision, also ``"<part> ratio"``: the median over the repetitions of the part's time in the first precision
    over its time in each other one. Each precision trains its own copy of the model (the same initialization), and
    the precisions alternate within every repetition, so that a ratio compares passes that met the same load."""
    vocab, train, *_ = corpus_batches(data_dir, batches, 0, 0)
    parse_config([preset], bindings)
    clocks = Clocks()
    runs = {}
    for precision in precisions:
        torch.manual_seed(0)
        model = build_model(vocab.size, vocab.pad_id, vocab.bos_id, vocab.unk_id, vocab.eos_id)
        if model.encoder is not None:
            model.encoder.forward = clocks.wrap(model.encoder.forward, "encoder forward")
        model.train()
        runs[precision] = model, make_optimizer(model.parameters(), 1e-3)
    per_repeat: dict[str, dict[str, list[float]]] = {precision: defaultdict(list) for precision in precisions}
    with clocked_functions(clocks):
        for repeat in range(repeats + 1):  # the first pass warms up
            for precision, (model, optimizer) in runs.items():
                clocks.reset()
                profiler = profile(activities=[ProfilerActivity.CPU], record_shapes=True) \
                    if by_operation and repeat else nullcontext()
                start = time.perf_counter()
                with profiler:
                    for batch in train:
                        optimizer.zero_grad(set_to_none=True)
                        with clocks.timing("forward"), autocast(precision, "cpu"):
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
                if by_operation:
                    ms.update(dict.fromkeys(OPERATION_ROWS, 0.0))
                    for event in profiler.key_averages(group_by_input_shape=True):
                        spent = event.self_cpu_time_total / 1e3 / len(train)
                        ms[operation_kind(event.key, event.input_shapes, vocab.size)] += spent
                        ms["profiled total"] += spent
                    ms["outside the operators (Python, the profiler)"] = step * 1e3 - ms["profiled total"]
                ms["rest of forward"] = ms["forward"] - sum(ms.get(part, 0.0) for part in (
                    "encoder forward", "recurrence forward", "output layer forward"))
                ms["rest of backward"] = ms["backward"] - sum(ms.get(part, 0.0) for part in (
                    "recurrence backward", "output layer backward"))
                ms["step"] = step * 1e3
                for part, value in ms.items():
                    per_repeat[precision][part].append(value)
    first = per_repeat[precisions[0]]
    results = {}
    for precision, parts in per_repeat.items():
        results[precision] = {part: statistics.median(values) for part, values in parts.items()}
        if precision != precisions[0]:
            results[precision].update({f"{part} ratio": statistics.median(a / b for a, b in zip(first[part], values))
                                       for part, values in parts.items() if all(values)})
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--data-dir", help="folder holding ptb/ (default: $SEQVAE_DATA, then the user cache)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--batches", type=int, default=20, help=f"training batches of {BATCH_SIZE} per repetition")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=["fp32"],
                        help="training precisions, a column each (default: fp32)")
    parser.add_argument("--by-operation", action="store_true",
                        help="a second table: the time by kind of operation (profiled, so every figure is slower)")
    parser.add_argument("--gin", action="append", default=[], metavar="BINDING",
                        help="gin binding applied after each preset, e.g. 'HIDDEN = 8' (repeatable)")
    args = parser.parse_args(argv)
    if args.batches < 1 or args.repeats < 1:
        parser.error("--batches and --repeats must be at least 1")
    keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        for preset in args.presets:  # every configuration parses before minutes of timing begin
            parse_config([preset], args.gin)
        for precision in args.precisions:
            check_precision(precision, "cpu")
        precisions = list(dict.fromkeys(args.precisions))
        results = {preset: breakdown(preset, args.data_dir, args.batches, args.repeats, args.gin, precisions,
                                     args.by_operation)
                   for preset in args.presets}
    except UserError as error:
        parser.exit(2, f"error: {error}\n")
    columns, headers = [], []
    for preset in args.presets:
        for precision in precisions:
            columns.append((preset, precision, ""))
            headers.append(preset if len(precisions) == 1 else f"{preset} {precision}")
            if precision != precisions[0]:
                columns.append((preset, precision, " ratio"))
                headers.append(f"{precisions[0]} / {precision}")
    tables = [("ms per step", ROWS)]
    if args.by_operation:
        tables.append(("self CPU ms per step", tuple((row, row) for row in OPERATION_ROWS)))
    for title, table_rows in tables:
        rows = [[row] + [(f"{value:.2f}x" if suffix else f"{value:.1f}") if (value := results[preset][precision].get(
            part + suffix)) is not None else ("-" if suffix else "0.0") for preset, precision, suffix in columns]
            for row, part in table_rows]
        print(tabulate(rows, headers=[title] + headers, tablefmt="github", disable_numparse=True), end="\n\n")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, medians of {args.repeats} passes over "
          f"{args.batches} batches" + ("; the precisions alternate pass by pass, and a ratio column is the median "
                                       "of the paired passes' ratios" if len(precisions) > 1 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The fused output layer and its cross-entropy alone (``seqvae_zoo.kernels.output``), forward and backward, at a
training step's shapes: in float32, and in bfloat16 with each of several row blocks for the float32 softmax between
the bfloat16 logits and the bfloat16 P - Y (``CONVERTED_BLOCK_ELEMENTS``).

The configurations alternate within every repetition, so that the machine's load falls on all alike; printed, each
one's median milliseconds and the median over the repetitions of the default block's time over its own (above 1:
faster than the default). Every bfloat16 block gives the same bits (tests/test_precision.py), so only the time
differs. The default shapes are a PTB batch of the paper's model: 730 tokens, 256 hidden units, 10,002 words.

    python benchmarks/output_layer.py [--rows 730] [--hidden 256] [--vocabulary 10002] [--blocks 64 128 256 512]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Sequence

import torch
from tabulate import tabulate

from seqvae_zoo.errors import UserError
from seqvae_zoo.kernels import output
from seqvae_zoo.kernels.precision import autocast, bf16_supported
from seqvae_zoo.training.memory import keep_freed_memory


def time_configurations(rows: int, hidden: int, vocabulary: int, blocks: Sequence[int], repeats: int,
                        seed: int = 0) -> dict[str, list[float]]:
    """Seconds of each configuration's forward and backward pass per repetition (after one untimed pass): "fp32",
    and "bf16, B rows" for each B of ``blocks``."""
    generator = torch.Generator().manual_seed(seed)
    hidden_states = torch.randn(rows, hidden, generator=generator)
    weight = torch.randn(vocabulary, hidden, generator=generator) / hidden ** 0.5
    bias = torch.zeros(vocabulary)
    targets = torch.randint(0, vocabulary, (rows,), generator=generator)
    configurations = [("fp32", None)] + [(f"bf16, {block} rows", block) for block in blocks]
    default = output.CONVERTED_BLOCK_ELEMENTS

    def run(block: int | None) -> float:
        inputs = [t.clone().requires_grad_() for t in (hidden_states, weight, bias)]
        output.CONVERTED_BLOCK_ELEMENTS = block * vocabulary if block is not None else default
        started = time.perf_counter()
        with autocast("fp32" if block is None else "bf16", "cpu"):
            nll = output.linear_cross_entropy(*inputs, targets)
        nll.sum().backward()
        return time.perf_counter() - started

    seconds: dict[str, list[float]] = {name: [] for name, _ in configurations}
    try:
        for repeat in range(repeats + 1):
            for name, block in configurations:
                spent = run(block)
                if repeat:
                    seconds[name].append(spent)
    finally:
        output.CONVERTED_BLOCK_ELEMENTS = default
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=730, help="tokens of the batch")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocabulary", type=int, default=10002)
    parser.add_argument("--blocks", type=int, nargs="+", default=[64, 128, 256, 512],
                        help="rows per bfloat16 softmax block to time")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    try:
        if min(args.rows, args.hidden, args.vocabulary, args.repeats, *args.blocks) < 1:
            raise UserError("--rows, --hidden, --vocabulary, --repeats and every --blocks value must be at least 1")
        if not bf16_supported(torch.device("cpu")):
            raise UserError("this CPU has no native bfloat16 products: the bfloat16 blocks cannot be timed here")
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()
    default = output.converted_block_rows(args.vocabulary)
    seconds = time_configurations(args.rows, args.hidden, args.vocabulary, args.blocks, args.repeats)
    reference = seconds.get(f"bf16, {default} rows")
    table = []
    for name, values in seconds.items():
        ratio = (statistics.median(a / b for a, b in zip(reference, values)) if reference is not None
                 else None)
        table.append([name, f"{statistics.median(values) * 1e3:.1f}", "-" if ratio is None else f"{ratio:.2f}"])
    print(tabulate(table, headers=["configuration", "ms (median)", f"bf16, {default} rows / this"]))
    print(f"\n{args.rows} x {args.hidden} x {args.vocabulary}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, medians of {args.repeats} repetitions; the default block at this "
          f"vocabulary: {default} rows" + ("" if reference is not None else " (not among --blocks: no ratio)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

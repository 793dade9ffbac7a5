"""The LSTM recurrence alone, implemented five ways, forward + backward, beside the ideal at the measured matmul rate.

The recurrence of the stochastic decoders with its input projection precomputed: gate inputs (steps x batch, 4H),
random and requiring a gradient, a recurrent weight (4H, H) and bias, zero initial states, every sentence as long as
the batch (so the packed rows are time-major: step t is rows t * batch to (t + 1) * batch). One call runs the
forward pass over all steps, then the backward pass of the same fixed upstream gradient on every hidden state, down
to the gate inputs, the weight and the bias; all float32 on the CPU. The implementations:

- ``PackedLSTM``: the package's recurrence (``run_packed_lstm``), one autograd node with a hand-written backward;
- autograd, eager cell: a Python cell function in a Python loop over the steps, autograd doing the backward;
- the same cell through ``torch.jit.script`` (deprecated in recent torch) and through ``torch.compile`` (inductor,
  C++ kernels); where either fails in this torch, its row says why instead;
- ``nn.LSTM`` (oneDNN's fused LSTM on a CPU): it always applies its own input projection, so it is given the gate
  inputs as its input, with ``weight_ih`` the permutation matrix from the package's gate order (output, input,
  forget, cell) to torch's (input, forget, cell, output), ``bias_ih`` zero (neither requiring a gradient), and the
  weight and bias, permuted alike, as ``weight_hh`` and ``bias_hh``. It computes the same function, and its time
  includes a (steps x batch, 4H) x (4H, 4H) input projection, forward and gradients (asking for no gradient of
  ``weight_ih`` made no measurable difference), that the other rows do not have. For the recurrence's own cost inside
  ``nn.LSTM``, the same call on a one-column input (a different function, so not checked) is printed beside the
  table.

Before any timing, every implementation's hidden states and gradients (gate inputs, weight, bias) are checked
against ``PackedLSTM``'s to float32 rounding, so the rows compare equal computations. Each row is the median of
``--repeats`` calls after ``--warmup`` untimed ones, the implementations taking turns within each repetition so that
a busy machine slows them alike; "first call" is the wall time of an implementation's very first call, at the first
thread count (compilation included, for the scripted and the compiled cell; the process's own one-time set-up
excluded, by a tiny problem run first; the compiler's caches start empty, in a temporary folder, unless
``TORCHINDUCTOR_CACHE_DIR`` names one). The ideal is the recurrence's matmul FLOPs (forward, the gradient on h and
the weight gradient) at the float32 matmul rate measured in the same process, the faster of torch.mm and the
package's own product (``throughput.py``'s ``matmul_rates``).

    python benchmarks/recurrence_alternatives.py
    python benchmarks/recurrence_alternatives.py --threads 2 --repeats 5 --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import torch
from tabulate import tabulate

from throughput import MATMULS, matmul_rates
from seqvae_zoo.kernels.recurrence import PackedLayout, run_packed_lstm
from seqvae_zoo.training.memory import keep_freed_memory

#: Each gate's block in the package's layout (output, input, forget, cell), in torch's order (input, forget, cell,
#: output).
TORCH_GATE_ORDER = (1, 2, 3, 0)
DEVICE = torch.device("cpu")


def lstm_cell(gate_inputs: torch.Tensor, h: torch.Tensor, c: torch.Tensor, weight: torch.Tensor,
              bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One step, gates laid out as ``PackedLSTM`` lays them out (output, input, forget, cell)."""
    size = h.size(1)
    gates = gate_inputs + torch.mm(h, weight.t()) + bias
    output_gate, input_gate, forget_gate = torch.sigmoid(gates[:, :3 * size]).chunk(3, dim=1)
    candidate = torch.tanh(gates[:, 3 * size:])
    c = forget_gate * c + input_gate * candidate
    return output_gate * torch.tanh(c), c


class Problem:
    """The tensors every implementation runs on, and the upstream gradient of the hidden states."""

    def __init__(self, steps: int, batch: int, hidden: int, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        bound = hidden ** -0.5  # nn.LSTM's initialization

        def uniform(*shape: int) -> torch.Tensor:
            return (torch.rand(shape, generator=generator) * 2 - 1) * bound

        self.steps, self.batch, self.hidden = steps, batch, hidden
        self.gate_inputs = torch.randn(steps * batch, 4 * hidden, generator=generator).requires_grad_()
        self.weight = uniform(4 * hidden, hidden).requires_grad_()
        self.bias = uniform(4 * hidden).requires_grad_()
        self.initial_h = torch.zeros(batch, hidden)
        self.initial_c = torch.zeros(batch, hidden)
        self.d_hidden = torch.randn(steps * batch, hidden, generator=generator)
        self.layout = PackedLayout.from_lengths(torch.full((batch,), steps), width=steps)

    @property
    def leaves(self) -> tuple[torch.Tensor, ...]:
        return self.gate_inputs, self.weight, self.bias

    def flops(self) -> float:
        """Matmul FLOPs of one call: per step, the forward product on h_{t-1}, and in the backward pass the
        gradient on h_{t-1} and the weight gradient, each as large."""
        product = 2 * self.batch * self.hidden * 4 * self.hidden
        return self.steps * 3 * product


class Implementation:
    """One way of running the recurrence: :meth:`forward` gives the hidden states (steps x batch, H) in time-major
    order with an autograd graph back to the problem's gate inputs (and to the weight and bias, or to parameters
    that :meth:`grads` maps back to them)."""

    name: str

    def __init__(self, problem: Problem):
        self.problem = problem

    def forward(self) -> torch.Tensor:
        raise NotImplementedError

    def parameters(self) -> tuple[torch.Tensor, ...]:
        return self.problem.leaves

    def grads(self) -> tuple[torch.Tensor, ...]:
        """The gradients of the gate inputs, the weight and the bias, in the package's gate layout."""
        return tuple(t.grad for t in self.problem.leaves)

    def __call__(self) -> torch.Tensor:
        """Forward and backward, the gradients accumulated from zero."""
        for tensor in self.parameters():
            tensor.grad = None
        hidden = self.forward()
        hidden.backward(self.problem.d_hidden)
        return hidden


class Packed(Implementation):
    name = "`PackedLSTM` (hand-written backward)"

    def forward(self) -> torch.Tensor:
        p = self.problem
        return run_packed_lstm(p.layout, None, p.gate_inputs, p.weight, p.bias, p.initial_h, p.initial_c)[0]


class CellLoop(Implementation):
    """A cell function looped over the steps in Python, autograd doing the backward."""

    name = "autograd, eager cell"

    def __init__(self, problem: Problem):
        super().__init__(problem)
        self.cell = self.make_cell()

    def make_cell(self) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
        return lstm_cell

    def forward(self) -> torch.Tensor:
        p = self.problem
        h, c = p.initial_h, p.initial_c
        states = []
        for step_inputs in p.gate_inputs.split(p.batch):
            h, c = self.cell(step_inputs, h, c, p.weight, p.bias)
            states.append(h)
        return torch.cat(states)


class ScriptedCellLoop(CellLoop):
    name = "autograd, `torch.jit.script` cell (deprecated)"

    def make_cell(self):
        with warnings.catch_warnings():  # TorchScript's deprecation
            warnings.simplefilter("ignore")
            return torch.jit.script(lstm_cell)


class CompiledCellLoop(CellLoop):
    name = "autograd, `torch.compile` cell (inductor, C++)"

    def make_cell(self):
        return torch.compile(lstm_cell)


class TorchLSTM(Implementation):
    """``nn.LSTM`` given the gate inputs as its input, through a permutation matrix as its input weight."""

    name = "`nn.LSTM` (oneDNN, fused; with a 4H x 4H input projection)"

    def __init__(self, problem: Problem):
        super().__init__(problem)
        size = problem.hidden
        self.rows = torch.cat([torch.arange(gate * size, (gate + 1) * size) for gate in TORCH_GATE_ORDER])
        self.lstm = torch.nn.LSTM(4 * size, size)
        with torch.no_grad():
            self.lstm.weight_ih_l0.copy_(torch.eye(4 * size)[self.rows])
            self.lstm.bias_ih_l0.zero_()
            self.lstm.weight_hh_l0.copy_(problem.weight[self.rows])
            self.lstm.bias_hh_l0.copy_(problem.bias[self.rows])
        self.lstm.weight_ih_l0.requires_grad_(False)
        self.lstm.bias_ih_l0.requires_grad_(False)

    def parameters(self) -> tuple[torch.Tensor, ...]:
        return self.problem.gate_inputs, self.lstm.weight_hh_l0, self.lstm.bias_hh_l0

    def grads(self) -> tuple[torch.Tensor, ...]:
        d_weight = torch.empty_like(self.lstm.weight_hh_l0)
        d_weight[self.rows] = self.lstm.weight_hh_l0.grad
        d_bias = torch.empty_like(self.lstm.bias_hh_l0)
        d_bias[self.rows] = self.lstm.bias_hh_l0.grad
        return self.problem.gate_inputs.grad, d_weight, d_bias

    def forward(self) -> torch.Tensor:
        p = self.problem
        inputs = p.gate_inputs.view(p.steps, p.batch, 4 * p.hidden)
        hidden, _ = self.lstm(inputs, (p.initial_h[None], p.initial_c[None]))
        return hidden.reshape(p.steps * p.batch, p.hidden)


IMPLEMENTATIONS = (Packed, CellLoop, ScriptedCellLoop, CompiledCellLoop, TorchLSTM)


def reason(error: Exception) -> str:
    """An exception's type and the start of its message on one line, short enough for a table cell (compiler errors
    often put the cause on the second line)."""
    words = " ".join(line.strip() for line in str(error).strip().splitlines()[:2] if line.strip())
    text = f"{type(error).__name__}: {words}"
    return text if len(text) <= 120 else text[:117] + "..."


def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def first_calls(problem: Problem) -> tuple[dict[str, Implementation], dict[str, dict[str, Any]]]:
    """Build every implementation and time its very first call; those that cannot be built or run are left out,
    with the reason. Each one's results are checked against ``PackedLSTM``'s (an AssertionError if they differ)."""
    CellLoop(Problem(2, 2, 8))()  # the process's one-time set-up (the first backward from a given gradient: 0.3 s)
    implementations, results = {}, {}
    reference = None
    for cls in IMPLEMENTATIONS:
        try:
            implementation = cls(problem)
            seconds, hidden = timed(implementation)
        except Exception as error:  # a scripting or compiler failure, reported in the table
            if cls is Packed:
                raise
            results[cls.name] = {"available": False, "reason": reason(error)}
            continue
        outputs = (hidden.detach(), *(grad.detach().clone() for grad in implementation.grads()))
        if reference is None:
            reference = outputs
        else:
            for what, got, expected in zip(("hidden states", "gate inputs' gradient", "weight's gradient",
                                            "bias's gradient"), outputs, reference):
                torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5,
                                           msg=lambda message: f"{cls.name}, {what}: {message}")
        implementations[cls.name] = implementation
        results[cls.name] = {"available": True, "first_call_seconds": seconds, "ms": {}}
    return implementations, results


def narrow_lstm(problem: Problem) -> Callable[[], None]:
    """``nn.LSTM`` of the problem's sizes on a one-column input: the recurrence inside ``nn.LSTM`` without the
    4H x 4H input projection (a different function, for the cost only)."""
    lstm = torch.nn.LSTM(1, problem.hidden)
    inputs = torch.randn(problem.steps, problem.batch, 1, requires_grad=True)
    d_hidden = problem.d_hidden.view(problem.steps, problem.batch, problem.hidden)

    def run() -> None:
        for tensor in (inputs, *lstm.parameters()):
            tensor.grad = None
        lstm(inputs)[0].backward(d_hidden)
    return run


def measure(problem: Problem, threads: Sequence[int], repeats: int, warmup: int) -> dict[str, Any]:
    """Every row's median milliseconds at each thread count, the first calls, and the ideal at each."""
    default_threads = torch.get_num_threads()
    torch.set_num_threads(threads[0] or default_threads)
    implementations, results = first_calls(problem)
    runs = {**implementations, "narrow nn.LSTM": narrow_lstm(problem)}
    timings: dict[str, Any] = {}
    for count in threads:
        torch.set_num_threads(count or default_threads)
        for run in runs.values():
            for _ in range(warmup):
                run()
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(repeats):
            for name, run in runs.items():
                seconds[name].append(timed(run)[0])
        rates = matmul_rates(DEVICE)
        key = str(torch.get_num_threads())
        for name in implementations:
            results[name]["ms"][key] = statistics.median(seconds[name]) * 1e3
        timings[key] = {"matmul_gflops": {name: rate / 1e9 for name, rate in rates.items()},
                        "ideal_ms": problem.flops() / rates["best"] * 1e3,
                        "nn_lstm_one_column_input_ms": statistics.median(seconds["narrow nn.LSTM"]) * 1e3}
    return {"implementations": results, "threads": timings}


@contextmanager
def cold_compile_cache() -> Iterator[None]:
    """``torch.compile``'s caches in an empty temporary folder (unless ``TORCHINDUCTOR_CACHE_DIR`` names one), so
    that its first call is a compilation, not a load of an earlier run's kernels."""
    if "TORCHINDUCTOR_CACHE_DIR" in os.environ:
        yield
        return
    with tempfile.TemporaryDirectory() as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        try:
            yield
        finally:
            del os.environ["TORCHINDUCTOR_CACHE_DIR"]


def threads_label(count: str) -> str:
    return f"{count} thread{'' if count == '1' else 's'}"


def table(results: dict[str, Any]) -> str:
    counts = list(results["threads"])
    rows = []
    for name, result in results["implementations"].items():
        if result["available"]:
            rows.append([name] + [f"{result['ms'][count]:.1f} ms" for count in counts]
                        + [f"{result['first_call_seconds']:.2f} s"])
        else:
            rows.append([name, f"unavailable: {result['reason']}"] + ["-"] * len(counts))
    headers = ["implementation"] + [threads_label(count) for count in counts] + ["first call"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True,
                    colalign=["left"] + ["right"] * (len(counts) + 1))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=22)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1],
                        help="torch thread counts, a column each (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls at each thread count first")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    args = parser.parse_args(argv)
    for name in ("steps", "batch", "hidden", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 0 or min(args.threads) < 0:
        parser.error("--warmup and --threads must be 0 or more")
    keep_freed_memory()
    problem = Problem(args.steps, args.batch, args.hidden)
    with cold_compile_cache():
        results = measure(problem, args.threads, args.repeats, args.warmup)
    environment = {"torch": torch.__version__, "machine": platform.processor() or platform.machine(),
                   "steps": args.steps, "batch": args.batch, "hidden": args.hidden, "repeats": args.repeats,
                   "warmup": args.warmup, "gflop_per_call": problem.flops() / 1e9}
    if args.json:
        print(json.dumps({"environment": environment, **results}, indent=2))
        return 0
    print(table(results))
    print(f"\ntorch {torch.__version__}; {args.steps} steps, batch {args.batch}, hidden {args.hidden}, input "
          f"projection precomputed; forward + backward, median of {args.repeats} after {args.warmup} warm-up calls; "
          f"first call at {threads_label(next(iter(results['threads'])))}. Hidden states and gradients of every "
          f"measured row checked against PackedLSTM's.")
    for count, timing in results["threads"].items():
        rates = ", ".join(f"{name} {timing['matmul_gflops'][name]:.0f}" for name in MATMULS)
        print(f"{threads_label(count)}: the ideal is {timing['ideal_ms']:.1f} ms "
              f"({problem.flops() / 1e9:.2f} GFLOP at {timing['matmul_gflops']['best']:.0f} GFLOP/s; {rates} GFLOP/s); "
              f"nn.LSTM on a one-column input instead (not the same function) takes "
              f"{timing['nn_lstm_one_column_input_ms']:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training throughput under OpenMP's default busy wait and the short one the ``seqvae`` command sets, on idle cores
and on cores that other processes keep busy (seqvae_zoo/training/openmp.py).

Each cell is one run of ``throughput.py --json`` (training tokens/s of one preset at the paper's sizes on PTB,
float32) in a fresh process whose environment carries the setting: "torch default" (libgomp's 300,000-iteration
spin), "spin N" for each N of ``--spins`` (``GOMP_SPINCOUNT=N``; the command sets 100) and "one thread". "busy"
starts, for the cell's run, one training per core on one thread (throughput.py's own, of VRAE), as a second job on
the same machine would. Rounds repeat
every cell, alternating, so that the machine's drift falls on all of them; the table gives each cell's runs and
their median over torch's default under the same load.

    SEQVAE_DATA=../shared/data python benchmarks/openmp_waits.py [--preset vrae_sa_aux] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tabulate import tabulate

THROUGHPUT = Path(__file__).with_name("throughput.py")
LOADS = ("idle", "busy")
#: what each busy process runs: another training (throughput.py's, of VRAE on one thread, for as long as the cell)
BUSY = ["--presets", "vrae", "--precisions", "fp32", "--threads", "1", "--batches", "50", "--repeats", "100000",
        "--iw-batches", "0", "--unseen-batches", "0"]
#: seconds for the busy trainings to load PTB and build their models before a cell is timed
BUSY_START_S = 30


def training_rate(preset: str, setting: str, threads: int, batches: int, repeats: int, timeout: float) -> float:
    """Training tokens/s of one throughput.py run under ``setting``."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if setting.startswith("spin "):
        env["GOMP_SPINCOUNT"] = setting.removeprefix("spin ")
    command = [sys.executable, str(THROUGHPUT), "--presets", preset, "--precisions", "fp32", "--json",
               "--threads", str(1 if setting == "one thread" else threads), "--batches", str(batches),
               "--repeats", str(repeats), "--iw-batches", "0", "--unseen-batches", "0"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=True)
    return json.loads(done.stdout)["results"][0]["training"]["tokens_per_second"]


def busy_processes(count: int) -> list[subprocess.Popen]:
    processes = [subprocess.Popen([sys.executable, str(THROUGHPUT), *BUSY], stdout=subprocess.DEVNULL,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)
                 for _ in range(count)]
    time.sleep(BUSY_START_S)
    return processes


def main() -> None:
    cores = len(os.sched_getaffinity(0))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="vrae_sa_aux")
    parser.add_argument("--threads", type=int, default=cores, help="torch threads of the multi-thread settings")
    parser.add_argument("--busy", type=int, default=cores, help="busy processes under the 'busy' load")
    parser.add_argument("--spins", nargs="+", type=int, default=[100], help="GOMP_SPINCOUNT values to time")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batches", type=int, default=6, help="training batches per repetition")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600, help="seconds a run may take (torch's default wait "
                        "on busy cores can be 20x slower)")
    args = parser.parse_args()
    settings = ["torch default", *(f"spin {n}" for n in args.spins), "one thread"]

    rates: dict[tuple[str, str], list[float]] = {(load, setting): [] for load in LOADS for setting in settings}
    for round_number in range(1, args.rounds + 1):
        for load in LOADS:
            busy = busy_processes(args.busy) if load == "busy" else []
            try:
                for setting in settings:
                    rate = training_rate(args.preset, setting, args.threads, args.batches, args.repeats,
                                         args.timeout)
                    rates[load, setting].append(rate)
                    print(f"round {round_number}, {load}, {setting}: {rate:,.0f} tokens/s", file=sys.stderr)
            finally:
                for process in busy:  # with the process throughput.py trains in
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
    rows = []
    for load in LOADS:
        default = statistics.median(rates[load, "torch default"])
        rows += [[load, setting, ", ".join(f"{r:,.0f}" for r in runs), f"{statistics.median(runs) / default:.2f}"]
                 for setting, runs in ((s, rates[load, s]) for s in settings)]
    print(tabulate(rows, headers=["cores", "OpenMP wait", "training tokens/s (runs)", "median / torch default"],
                   tablefmt="github"))
    print(f"\n{args.preset}, {args.threads} torch threads but 'one thread'; 'busy': {args.busy} busy processes on "
          f"{cores} cores")


if __name__ == "__main__":
    main()

"""Training throughput of two checkouts of the package, side by side: is a change slower than what it replaces?

Runs ``benchmarks/throughput.py --json`` of each checkout in turn (before, after, before, after, ...), each in a fresh
process that imports that checkout's package, so both meet the same machine load as nearly as a shared machine
allows; prints per preset the median tokens/s of each, the ratio after / before, and the ratio of their fractions of
the matmul ceiling (each run measures its own), which corrects for a load that changed between two runs:

    git worktree add /tmp/before <commit>
    python benchmarks/compare_checkouts.py /tmp/before . --rounds 3 -- --batches 4 --repeats 2 --iw-batches 0

Arguments after ``--`` go to throughput.py unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path


def run_throughput(checkout: Path, arguments: list[str]) -> dict:
    """One run of the checkout's throughput.py, with the checkout's package first on the path."""
    environment = {**os.environ, "PYTHONPATH": str(checkout)}
    result = subprocess.run([sys.executable, str(checkout / "benchmarks" / "throughput.py"), "--json", *arguments],
                            capture_output=True, text=True, env=environment, cwd=checkout)
    if result.returncode != 0:
        raise SystemExit(f"error: throughput.py of {checkout} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout)


def training_by_preset(report: dict) -> dict[str, dict]:
    return {result["preset"]: result["training"] for result in report["results"]}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="checkout of the code before the change")
    parser.add_argument("after", type=Path, help="checkout of the code after it")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each checkout, alternated")
    args = parser.parse_args(argv[:split])
    passed = argv[split + 1:]
    for checkout in (args.before, args.after):
        if not (checkout / "benchmarks" / "throughput.py").is_file():
            parser.error(f"{checkout} is not a checkout of this repository (no benchmarks/throughput.py)")
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    for _ in range(args.rounds):
        for side, checkout in (("before", args.before), ("after", args.after)):
            runs[side].append(training_by_preset(run_throughput(checkout.resolve(), passed)))
    print(f"{'preset':<14}{'before tok/s':>14}{'after tok/s':>14}{'ratio':>8}{'ratio of ceiling fractions':>28}")
    for preset in runs["before"][0]:
        medians = {side: statistics.median(run[preset]["tokens_per_second"] for run in runs[side]) for side in runs}
        fractions = {side: statistics.median(run[preset]["fraction_of_ceiling"] for run in runs[side])
                     for side in runs}
        print(f"{preset:<14}{medians['before']:>14.0f}{medians['after']:>14.0f}"
              f"{medians['after'] / medians['before']:>8.2f}{fractions['after'] / fractions['before']:>28.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``seqvae bench [SUITE] [--out DIR]`` and ``seqvae leaderboard RESULTS_DIR``."""

from __future__ import annotations

import argparse
from pathlib import Path

from seqvae_zoo.bench.leaderboard import load_results, render
from seqvae_zoo.bench.suite import load_suite, suite_names


def register(subparsers) -> None:
    bench = subparsers.add_parser("bench", help="train and evaluate a suite, print its leaderboard")
    bench.add_argument("suite", nargs="?", default="quick",
                       help=f"suite name ({', '.join(suite_names())}) or a .toml file (default: quick)")
    bench.add_argument("--out", default="bench-results", help="results folder (default: bench-results)")
    bench.add_argument("--data-dir", default=None, help="folder holding the corpora")
    bench.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    bench.add_argument("--workers", type=int, default=1, metavar="N",
                       help="train N runs at a time, each in a worker process of its own with 1/N of the CPU "
                       "threads (or a GPU each, where there are several); default 1: one run after another here")
    bench.add_argument("--quiet", action="store_true", help="no progress bars")
    bench.set_defaults(run=run_bench)
    board = subparsers.add_parser("leaderboard", help="rebuild the tables from the JSON records of a results folder")
    board.add_argument("results", help="folder written by `seqvae bench --out`")
    board.add_argument("--format", choices=("md", "latex", "csv"), default="md")
    board.set_defaults(run=run_leaderboard)


def run_bench(args: argparse.Namespace) -> int:
    from seqvae_zoo.bench.harness import Bench

    suite = load_suite(args.suite)
    table = Bench(suite, args.out, data_dir=args.data_dir, device=args.device, progress=not args.quiet,
                  workers=args.workers).run()
    print(table)
    print(f"records and tables in {Path(args.out) / suite.name}")
    return 0


def run_leaderboard(args: argparse.Namespace) -> int:
    print(render(load_results(args.results), args.format))
    return 0

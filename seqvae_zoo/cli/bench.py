"""``seqvae bench [SUITE] [--out DIR] [--time-limit 2h40m]``, ``seqvae bench --status DIR`` and
``seqvae leaderboard RESULTS_DIR``.

A bench stopped before its suite is done (by ``--time-limit``, SIGTERM or SIGUSR1) exits with
:data:`EXIT_STOPPED_EARLY` (75, sysexits' EX_TEMPFAIL: "try again later"), so a job script can requeue itself.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import sys

from seqvae_zoo.bench.leaderboard import load_results, render
from seqvae_zoo.bench.records import check_results_folder
from seqvae_zoo.bench.suite import load_suite, suite_names
from seqvae_zoo.training.stopping import EXIT_STOPPED_EARLY, parse_duration


def register(subparsers) -> None:
    bench = subparsers.add_parser("bench", help="train and evaluate a suite, print its leaderboard")
    bench.add_argument("suite", nargs="*", default=["quick"],
                       help=f"suite names ({', '.join(suite_names())}) or .toml files, run one after another "
                       "(default: quick)")
    bench.add_argument("--out", default="bench-results", help="results folder (default: bench-results)")
    bench.add_argument("--data-dir", default=None, help="folder holding the corpora")
    bench.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    bench.add_argument("--workers", type=int, default=1, metavar="N",
                       help="train N runs at a time, each in a worker process of its own with 1/N of the CPU "
                       "threads (or a GPU each, where there are several); default 1: one run after another here")
    bench.add_argument("--time-limit", default=None, metavar="DURATION",
                       help="stop at a checkpoint before this much wall time has passed (1h, 90m, 2h40m, 2:40:00), "
                       f"print how many runs are done and exit with status {EXIT_STOPPED_EARLY}; the same command "
                       "continues. SIGTERM and SIGUSR1 stop it the same way")
    bench.add_argument("--status", default=None, metavar="DIR",
                       help="print where the suites in results folder DIR stand (done, in progress, pending, time "
                       "left) and exit; changes nothing")
    bench.add_argument("--quiet", action="store_true", help="no progress bars")
    bench.set_defaults(run=run_bench)
    board = subparsers.add_parser("leaderboard", help="rebuild the tables from the JSON records of a results folder")
    board.add_argument("results", help="folder written by `seqvae bench --out`")
    board.add_argument("--format", choices=("md", "latex", "csv"), default="md")
    board.set_defaults(run=run_leaderboard)


def run_bench(args: argparse.Namespace) -> int:
    from seqvae_zoo.bench.harness import Bench, BenchStopped
    from seqvae_zoo.training.stopping import StopRequest

    if args.status is not None:
        from seqvae_zoo.bench.status import campaign_status

        print(campaign_status(args.status))
        return 0
    limit = parse_duration(args.time_limit) if args.time_limit is not None else None
    suites = [load_suite(name) for name in args.suite]
    for suite in suites:  # every suite's folder is checked before any is written
        check_results_folder(args.out, suite.name)
    stop = StopRequest.after(limit)
    with stop.handling_signals():
        for index, suite in enumerate(suites):
            try:
                table = Bench(suite, args.out, data_dir=args.data_dir, device=args.device, progress=not args.quiet,
                              workers=args.workers, stop=stop).run()
            except BenchStopped as stopped:
                if stopped.table.strip():
                    print(stopped.table)
                print(f"records and tables in {Path(args.out) / suite.name}")
                print(f"stopped early: {stopped.reason}", file=sys.stderr)
                done = f"{stopped.done} of {stopped.total} runs done"
                if len(suites) > 1:
                    later = [s.name for s in suites[index + 1:]]
                    done = f"{suite.name}: {done}" + (f"; {', '.join(later)} not started" if later else "")
                print(f"{done}; run the same command again to continue")
                return EXIT_STOPPED_EARLY
            print(table)
            print(f"records and tables in {Path(args.out) / suite.name}")
    return 0


def run_leaderboard(args: argparse.Namespace) -> int:
    print(render(load_results(args.results), args.format))
    return 0

"""``seqvae train PRESET_OR_GIN_FILE... --data NAME --out DIR``: train or resume one run (on several processes and
machines when started by torchrun: see docs/distributed.md). With ``--time-limit``, or on SIGTERM or SIGUSR1, it
stops at a checkpoint and exits with status 75; ``--resume`` continues exactly."""

from __future__ import annotations

import argparse

from seqvae_zoo.errors import UserError
from seqvae_zoo.kernels.precision import PRECISIONS
from seqvae_zoo.training.distributed import BACKEND_VARIABLE
from seqvae_zoo.training.run import train_run
from seqvae_zoo.training.stopping import EXIT_STOPPED_EARLY, StopRequest, StopRequested, parse_duration


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train a preset on a dataset (or resume a run)")
    parser.add_argument("config", nargs="*", metavar="PRESET_OR_GIN_FILE",
                        help="presets or gin files, parsed in order (none with --resume)")
    parser.add_argument("--data", default="synthetic", help="registered dataset name (default: synthetic)")
    parser.add_argument("--data-dir", default=None, help="folder holding the corpora (default: $SEQVAE_DATA, "
                        "then, with --resume, the folder the run was trained from, then the user cache)")
    parser.add_argument("--out", required=True, help="run folder: checkpoints, logs, config")
    parser.add_argument("--epochs", type=int, default=None, help="override training.TrainingSettings.epochs")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps in all")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="the training steps' products: fp32, or bf16 with float32 master weights (sets "
                             "training.TrainingSettings.precision; docs/precision.md)")
    parser.add_argument("--gin", action="append", default=[], metavar="BINDING", help="gin binding, applied last")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available; under torchrun "
                        "each process takes the GPU of its LOCAL_RANK)")
    parser.add_argument("--backend", default=None, help="torch.distributed backend under torchrun (default: "
                        f"${BACKEND_VARIABLE}, else nccl on cuda and gloo on cpu)")
    parser.add_argument("--time-limit", default=None, metavar="DURATION",
                        help="stop at a checkpoint before this much wall time has passed (1h, 90m, 2h40m, 2:40:00) "
                        f"and exit with status {EXIT_STOPPED_EARLY}; --resume continues. SIGTERM and SIGUSR1 stop "
                        "it the same way")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.resume and args.precision:
        raise UserError("--resume continues a run in the precision it was trained in (its saved config): leave out "
                        "--precision")
    stop = StopRequest.after(parse_duration(args.time_limit) if args.time_limit is not None else None)
    bindings = [*args.gin, *([f'training.TrainingSettings.precision = "{args.precision}"'] if args.precision else [])]
    try:
        with stop.handling_signals():
            result = train_run(args.config, args.data, args.out, data_dir=args.data_dir, bindings=bindings,
                               epochs=args.epochs, max_steps=args.max_steps, seed=args.seed, resume=args.resume,
                               device=args.device, progress=not args.quiet, backend=args.backend, stop=stop)
    except StopRequested as stopped:
        print(f"{stopped.reason}; run `seqvae train --resume --out {args.out}` to continue")
        return EXIT_STOPPED_EARLY
    if result.history and result.rank == 0:
        last = result.history[-1]
        print(f"epoch {last['epoch']}: valid -ELBO {last['valid_neg_elbo']:.3f} per sentence, "
              f"PPL {last['valid_ppl']:.2f}; run in {result.out_dir}")
    return 0

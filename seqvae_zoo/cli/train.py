"""``seqvae train PRESET_OR_GIN_FILE... --data NAME --out DIR``: train or resume one run (on several processes and
machines when started by torchrun: see docs/distributed.md)."""

from __future__ import annotations

import argparse

from seqvae_zoo.training.distributed import BACKEND_VARIABLE
from seqvae_zoo.training.run import train_run


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train a preset on a dataset (or resume a run)")
    parser.add_argument("config", nargs="*", metavar="PRESET_OR_GIN_FILE",
                        help="presets or gin files, parsed in order (none with --resume)")
    parser.add_argument("--data", default="synthetic", help="registered dataset name (default: synthetic)")
    parser.add_argument("--data-dir", default=None, help="folder holding the corpora (default: $SEQVAE_DATA, "
                        "then the user cache)")
    parser.add_argument("--out", required=True, help="run folder: checkpoints, logs, config")
    parser.add_argument("--epochs", type=int, default=None, help="override training.TrainingSettings.epochs")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps in all")
    parser.add_argument("--gin", action="append", default=[], metavar="BINDING", help="gin binding, applied last")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available; under torchrun "
                        "each process takes the GPU of its LOCAL_RANK)")
    parser.add_argument("--backend", default=None, help="torch.distributed backend under torchrun (default: "
                        f"${BACKEND_VARIABLE}, else nccl on cuda and gloo on cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    result = train_run(args.config, args.data, args.out, data_dir=args.data_dir, bindings=args.gin,
                       epochs=args.epochs, max_steps=args.max_steps, seed=args.seed, resume=args.resume,
                       device=args.device, progress=not args.quiet, backend=args.backend)
    if result.history and result.rank == 0:
        last = result.history[-1]
        print(f"epoch {last['epoch']}: valid -ELBO {last['valid_neg_elbo']:.3f} per sentence, "
              f"PPL {last['valid_ppl']:.2f}; run in {result.out_dir}")
    return 0

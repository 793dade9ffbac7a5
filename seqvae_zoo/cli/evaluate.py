"""``seqvae eval CHECKPOINT``: every metric of the evaluation protocol on one split, as a table and as JSON."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from seqvae_zoo.evaluation.protocol import (DEFAULT_IW_SAMPLES, DEFAULT_MEMORY_BUDGET_MB, check_iw_samples,
                                            evaluate_corpus, scored_as)
from seqvae_zoo.evaluation.report import format_result


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a trained model: paper protocol, ELBO, IW-NLL, MI, AU")
    parser.add_argument("checkpoint", help="checkpoint file or run folder written by `seqvae train`")
    parser.add_argument("--data", default=None, help="registered dataset (default: the one the model was trained on)")
    parser.add_argument("--data-dir", default=None, help="folder holding the corpora (default: $SEQVAE_DATA, "
                        "then the folder the run was trained from, then the user cache)")
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--iw-samples", type=int, default=DEFAULT_IW_SAMPLES, metavar="K",
                        help=f"importance samples per sentence (default: {DEFAULT_IW_SAMPLES})")
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per batch (default: 64)")
    parser.add_argument("--memory-mb", type=int, default=DEFAULT_MEMORY_BUDGET_MB,
                        help=f"memory one importance-sampling pass may use (default: {DEFAULT_MEMORY_BUDGET_MB})")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw (default: 0)")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the result as JSON to OUT")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from seqvae_zoo.atomic import write_json_atomically
    from seqvae_zoo.data.files import DATA_ENV
    from seqvae_zoo.data.loading import load_dataset
    from seqvae_zoo.training.checkpoint import load_checkpoint
    from seqvae_zoo.training.run import data_dir_of_run, default_device, trained_on_other_files

    check_iw_samples(args.iw_samples)
    loaded = load_checkpoint(args.checkpoint, map_location=args.device or default_device())
    dataset = args.data or loaded.dataset
    options = loaded.state.get("dataset_options", {}) if dataset == loaded.dataset else {}
    data_dir = data_dir_of_run(loaded.state, args.data_dir) if dataset == loaded.dataset else args.data_dir
    corpus = load_dataset(dataset, data_dir=data_dir, **options)
    other_files = trained_on_other_files(loaded.state, corpus) if dataset == loaded.dataset else None
    if other_files:
        warnings.warn(f"{other_files}: these are the model's scores on the files read now; --data-dir (or "
                      f"${DATA_ENV}) names the folder it was trained on", stacklevel=1)
    with loaded.procedure.scoring(loaded.model) as refinement:
        result = evaluate_corpus(loaded.model, loaded.vocab, corpus, args.split, iw_samples=args.iw_samples,
                                 batch_size=args.batch_size, seed=args.seed, memory_budget_mb=args.memory_mb,
                                 progress=not args.quiet)
    result = {"checkpoint": str(args.checkpoint), **result, **scored_as(refinement)}
    if other_files:
        result["trained_on_other_files"] = other_files
    print(format_result(result))
    if args.json:
        write_json_atomically(Path(args.json), result)
        print(f"wrote {args.json}")
    return 0


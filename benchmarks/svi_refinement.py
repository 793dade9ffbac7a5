"""SA-VAE's refinement on a trained model's training batches: Kim et al.'s step against a step of lr on each
sentence's own -ELBO.

For each batch (the training split in order, batches of 32, the model in training mode as inside a training step),
from the encoder's posterior and the same noise: ``procedures.svi``'s refinement (SGD with momentum on the batch's
mean objective, each step's gradient clipped to norm 5: Kim et al.'s settings) and the same steps of lr on each
sentence's summed -ELBO, unclipped (the same update with lr times the batch size and no clipping). Printed per batch:
the refined log-variance's range, the largest KL(q_encoder || q_refined) (the encoder's loss), and the batch's mean
-ELBO before and after (over common noise draws, dropout off), with the sentences it made worse.

With ``--timing``, what a training step of ``procedures.svi`` costs on the same batches instead: the loss and its
backward pass with the gradient stopped at the refined posterior, and end to end (back through the steps) with each
finite difference of its Hessian-vector products, one-sided and central, the three alternating batch by batch so
that the machine's load falls on all alike; printed per batch, then the medians and their ratios to the stopped
step and to each other.

With ``--accuracy``, how far each finite difference's gradient through the refinement is from the derivative, on
the same batches (Kim et al.'s 20 steps, KL weight 1, dropout off): in float64, each difference at the default
``hvp_step`` against the central difference at a step of 1e-6 (whose error is far below either's), and in float32,
the one-sided gradient against the central one; printed per batch as the norm of the difference over the
reference's norm:

    python benchmarks/svi_refinement.py RUN_FOLDER [--batches 8] [--timing | --accuracy] [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time

import torch

from seqvae_zoo.data.batching import make_loader
from seqvae_zoo.data.loading import load_dataset
from seqvae_zoo.errors import UserError
from seqvae_zoo.schedules.base import EVERY_KL_TERM
from seqvae_zoo.training.checkpoint import load_checkpoint
from seqvae_zoo.training.procedures.svi import SVIRefinement, refine_posterior


def mean_neg_elbo(model, tokens, lengths, posterior, draws: int) -> torch.Tensor:
    """Each sentence's -ELBO averaged over ``draws`` noise draws (the same draws for every posterior)."""
    torch.manual_seed(1)
    repeated = type(posterior)(*(value.repeat(draws, 1) for value in posterior))
    with torch.no_grad():
        model.eval()
        terms = model(tokens.repeat(draws, 1), lengths.repeat(draws), posterior=repeated)
    return terms.neg_elbo.view(draws, -1).mean(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="run folder or checkpoint written by `seqvae train` or `seqvae bench`")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--draws", type=int, default=20, help="noise draws of the -ELBO before and after")
    parser.add_argument("--data-dir", default=None, help="folder holding the corpora (default: $SEQVAE_DATA)")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--timing", action="store_true",
                       help="time a training step stopped at the refined posterior and end to end instead")
    modes.add_argument("--accuracy", action="store_true",
                       help="each finite difference's gradient through the refinement against the derivative instead")
    args = parser.parse_args(argv)
    try:
        loaded = load_checkpoint(args.run)
        corpus = load_dataset(loaded.dataset, data_dir=args.data_dir, **loaded.state.get("dataset_options", {}))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    model, svi = loaded.model, SVIRefinement()
    sentences = [loaded.vocab.encode(s) for s in corpus.splits["train"][:32 * args.batches]]
    weights = {EVERY_KL_TERM: 1.0}
    batches = make_loader(sentences, 32, loaded.vocab.pad_id, shuffle=False)
    if args.timing:
        return print_step_costs(model, batches, weights)
    if args.accuracy:
        return print_gradient_errors(model, batches, weights)
    print(f"{svi.steps} steps, lr {svi.lr}, momentum {svi.momentum}; -ELBO over {args.draws} draws")
    print("batch | encoder logvar | per sentence, lr 1: logvar, max KL(enc||ref), -ELBO, worse | "
          "Kim et al.: logvar, max KL(enc||ref), -ELBO, worse")
    for index, (tokens, lengths) in enumerate(batches):
        model.train()
        with torch.no_grad():
            initial = model.encoder(tokens, lengths).posterior
        before = mean_neg_elbo(model, tokens, lengths, initial, args.draws)
        row = [f"{index:5d} | [{initial.logvar.min():.2f}, {initial.logvar.max():.2f}]"]
        for lr, max_grad_norm in ((svi.lr * len(lengths), math.inf), (svi.lr, svi.max_grad_norm)):
            torch.manual_seed(index)
            model.train()
            refined = refine_posterior(model, tokens, lengths, initial, weights, svi.steps, lr, svi.momentum,
                                       max_grad_norm)
            after = mean_neg_elbo(model, tokens, lengths, refined, args.draws)
            row.append(f"[{refined.logvar.min():.1f}, {refined.logvar.max():.1f}], "
                       f"{initial.kl(refined).max():.3g}, {before.mean():.2f} -> {after.mean():.2f}, "
                       f"{int((after > before).sum())}/{len(lengths)}")
        print(" | ".join(row), flush=True)
    return 0


def print_step_costs(model, batches, weights) -> int:
    """Seconds of the preset's training step (loss and backward pass) per batch, stopped at the refined posterior
    and end to end by each finite difference, alternating; then the medians and their ratios."""
    modes = {"stopped": SVIRefinement(end_to_end=False),
             **{f"end to end, {difference}": SVIRefinement(end_to_end=True, hvp_difference=difference)
                for difference in ("one-sided", "central")}}
    seconds: dict[str, list[float]] = {mode: [] for mode in modes}
    model.train()
    print("batch | " + " | ".join(f"{mode} (s)" for mode in modes))
    for index, (tokens, lengths) in enumerate(batches):
        for mode, svi in modes.items():
            model.zero_grad(set_to_none=True)
            start = time.perf_counter()
            svi.loss(model, tokens, lengths, weights)[0].backward()
            seconds[mode].append(time.perf_counter() - start)
        print(f"{index:5d} | " + " | ".join(f"{seconds[mode][-1]:.2f}" for mode in modes), flush=True)
    stopped, one_sided, central = (statistics.median(values) for values in seconds.values())
    print(f"median | {stopped:.2f} | {one_sided:.2f} | {central:.2f}; "
          f"over stopped: one-sided {one_sided / stopped:.2f}, central {central / stopped:.2f}; "
          f"central / one-sided: {central / one_sided:.2f}")
    return 0


def gradient_through_refinement(model, tokens, lengths, weights, difference: str, hvp_step: float) -> torch.Tensor:
    """Every parameter's gradient of the objective at the refined posterior, end to end, dropout off, one seed."""
    model.eval().zero_grad(set_to_none=True)
    torch.manual_seed(1)
    SVIRefinement(hvp_step=hvp_step, hvp_difference=difference).loss(model, tokens, lengths, weights)[0].backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def print_gradient_errors(model, batches, weights) -> int:
    """Per batch, the relative error of each difference's gradient in float64 and their gap in float32."""
    default_step = SVIRefinement().hvp_step
    double = copy.deepcopy(model).double()
    print(f"batch | float64, one-sided at {default_step:g} | float64, central at {default_step:g} | "
          "float32, one-sided against central")
    for index, (tokens, lengths) in enumerate(batches):
        reference = gradient_through_refinement(double, tokens, lengths, weights, "central", 1e-6)
        errors = [relative_gap(gradient_through_refinement(double, tokens, lengths, weights, difference, default_step),
                               reference) for difference in ("one-sided", "central")]
        single = [gradient_through_refinement(model, tokens, lengths, weights, difference, default_step)
                  for difference in ("one-sided", "central")]
        print(f"{index:5d} | {errors[0]:.2e} | {errors[1]:.2e} | {relative_gap(*single):.2e}", flush=True)
    return 0


def relative_gap(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value - reference).norm() / reference.norm())


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main())

"""Where the importance-weighted NLL's time goes, and how long a whole test split takes at K samples.

A preset at the paper's sizes (untrained: the work does not depend on the weights; or, with ``--checkpoint``, a
trained model, whose mean IW-NLL over the batches then says how much the estimate moves with K) scores a few of the
protocol's length-sorted test batches of 64 (PTB's, or ``--dataset``'s with the vocabulary of its train split, as
training builds it; evenly spread over lengths, as ``throughput.py`` picks them) with ``importance_log_likelihood``.
A clock around each part gives its exclusive time (a part called inside another is counted in its own row only):

- encoder: the encoder's forward pass;
- sampling: drawing the per-step noise (z_t, c~_t) and z_enc from q(z_enc | x);
- recurrence: the decoder's recurrence over the steps (for the attentive decoder, its attention and the per-step
  latents drawn inside the loop);
- output layer: the output layer, its log-softmax and the target's log-probability;
- densities: log p(z_enc) and log q(z_enc | x), and the per-step prior and posterior densities (and KL terms);
- log-sum-exp: log (1/K) sum_k of the weights;
- other: the rest (repeating the sentences, masks, Python).

The whole test split's time is extrapolated from the batches by tokens (end-of-sentence counted), beside its
ceiling: the model's matmul FLOPs for K samples (``throughput.py``'s count: the output layer alone is 5.1 MFLOP per
token and sample at the paper's sizes and PTB's vocabulary) at the float32 matmul rate of a 2048 x 2048 product
timed before each pass, and the fraction of that ceiling reached, which moves less with the machine's load than the
time does. With ``--baseline CHECKOUT`` (a checkout of the code before a change, e.g. ``git worktree add /tmp/before
main``) the baseline's ``seqvae_zoo/evaluation/importance.py`` runs alternately with this checkout's on the same
batches, each round both ways, and the ratio of their times is printed: the machine's load moves between runs, the
ratio measured within one run much less.

    SEQVAE_DATA=../shared/data python benchmarks/iw_nll.py --baseline /tmp/before --batches 3 --rounds 2
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterator

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import corpus_batches, forward_flops, matmul_rates  # noqa: E402  (a script beside this one)

from seqvae_zoo import build_model, parse_config  # noqa: E402
from seqvae_zoo.errors import UserError  # noqa: E402
from seqvae_zoo.evaluation import importance  # noqa: E402
from seqvae_zoo.evaluation.protocol import DEFAULT_IW_SAMPLES, DEFAULT_MEMORY_BUDGET_MB  # noqa: E402
from seqvae_zoo.training.checkpoint import load_checkpoint  # noqa: E402

PARTS = ("encoder", "sampling", "recurrence", "output layer", "densities", "log-sum-exp", "other")


class PartClock:
    """Exclusive seconds per part: a clocked call inside another is taken out of the outer one's time."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self._inner: list[float] = []

    def wrap(self, part: str, function: Callable) -> Callable:
        def clocked(*args, **kwargs):
            self._inner.append(0.0)
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                inner = self._inner.pop()
                self.seconds[part] += elapsed - inner
                if self._inner:
                    self._inner[-1] += elapsed
        return clocked


@contextlib.contextmanager
def clocked_parts(model, clock: PartClock, tokens: torch.Tensor, lengths: torch.Tensor) -> Iterator[None]:
    """Within the block, the model's parts (and ``torch.logsumexp``) run under ``clock``."""
    decoder = model.decoder
    posterior_type = None  # a model with per-step latents only has no encoder to run
    if model.encoder is not None:
        with torch.inference_mode():
            posterior_type = type(model.encoder(tokens[:1], lengths[:1]).posterior)
    # the stochastic decoders' packed recurrence, or a deterministic decoder's library LSTM; parts a decoder lacks
    # (per-step densities and noise) are left out
    patches = [(model.encoder, "forward", "encoder"), (decoder, "_recurrence", "recurrence"),
               (getattr(decoder, "rnn", None), "forward", "recurrence"), (decoder, "_output", "densities"),
               (model, "_token_nll", "output layer"), (model.latent_prior, "log_prob", "densities"),
               (posterior_type, "log_prob", "densities"), (posterior_type, "rsample", "sampling"),
               (torch, "logsumexp", "log-sum-exp"), (decoder, "_draw_noise", "sampling")]
    patches = [(owner, name, part) for owner, name, part in patches if owner is not None and hasattr(owner, name)]
    saved = [(owner, name, name in vars(owner), vars(owner).get(name)) for owner, name, _ in patches]
    for owner, name, part in patches:
        setattr(owner, name, clock.wrap(part, getattr(owner, name)))
    try:
        yield
    finally:
        for owner, name, had_own, original in reversed(saved):
            if had_own:
                setattr(owner, name, original)
            else:
                delattr(owner, name)


def load_baseline(checkout: Path):
    """The baseline checkout's importance module, run against this checkout's package."""
    path = checkout / "seqvae_zoo" / "evaluation" / "importance.py"
    if not path.is_file():
        raise SystemExit(f"error: {checkout} is not a checkout of this repository (no {path.relative_to(checkout)})")
    spec = importlib.util.spec_from_file_location("baseline_importance", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(implementation, model, batches, samples: int, budget: int, seed: int) -> dict:
    """One pass of ``implementation.importance_log_likelihood`` over ``batches``, clocked part by part."""
    clock = PartClock()
    rate = matmul_rates(torch.device("cpu"))["best"]
    torch.manual_seed(seed)
    estimates = []
    start = time.perf_counter()
    for batch in batches:
        with clocked_parts(model, clock, batch.tokens, batch.lengths):
            estimates.append(implementation.importance_log_likelihood(model, batch.tokens, batch.lengths, samples,
                                                                      budget))
    seconds = time.perf_counter() - start
    parts = {part: clock.seconds.get(part, 0.0) for part in PARTS[:-1]}
    parts["other"] = seconds - sum(parts.values())
    lengths = [length for batch in batches for length in batch.lengths.tolist()]
    ceiling = forward_flops(model, lengths, samples) / rate
    return {"seconds": seconds, "parts": parts, "iw_nll": -torch.cat(estimates).mean().item(),
            "matmul_gflops": rate / 1e9, "ceiling_seconds": ceiling, "fraction_of_ceiling": ceiling / seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="vrae_sa_aux")
    parser.add_argument("--checkpoint", default=None,
                        help="a trained model's checkpoint or run folder, in place of an untrained --preset")
    parser.add_argument("--dataset", default="ptb", help="whose test split (default: ptb; e.g. yelp13_reduced)")
    parser.add_argument("--data-dir", default=None, help="the corpora's folder (default: $SEQVAE_DATA)")
    parser.add_argument("--batches", type=int, default=3, help="test batches of 64, evenly spread over lengths")
    parser.add_argument("--samples", type=int, default=DEFAULT_IW_SAMPLES)
    parser.add_argument("--memory-budget-mb", type=int, default=DEFAULT_MEMORY_BUDGET_MB)
    parser.add_argument("--baseline", type=Path, default=None, help="checkout of the code before a change")
    parser.add_argument("--rounds", type=int, default=1, help="passes of each implementation, alternated")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    try:
        if args.checkpoint is not None:
            loaded = load_checkpoint(args.checkpoint)
            model, vocab, args.preset = loaded.model, loaded.vocab, args.checkpoint
        else:
            parse_config([args.preset])
            vocab = None
        vocab, _, batches, _, test_tokens = corpus_batches(args.data_dir, 0, args.batches, args.seed, args.dataset,
                                                           vocab)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.checkpoint is None:
        model = build_model(vocab.size, vocab.pad_id, vocab.bos_id, vocab.unk_id, vocab.eos_id).eval()
    if not importance.has_latents(model):
        print(f"error: {args.preset} has no latent to sample: its IW-NLL is its exact NLL, one pass (time `seqvae "
              "eval` instead)", file=sys.stderr)
        return 2
    tokens = sum(int(batch.lengths.sum()) for batch in batches)
    implementations = {"this checkout": importance}
    if args.baseline is not None:
        implementations = {"baseline": load_baseline(args.baseline), **implementations}
    budget = args.memory_budget_mb * 2 ** 20
    runs: dict[str, list[dict]] = {name: [] for name in implementations}
    for _ in range(args.rounds):
        for name, implementation in implementations.items():
            runs[name].append(run(implementation, model, batches, args.samples, budget, args.seed))
    report = {"preset": args.preset, "dataset": args.dataset, "samples": args.samples, "batches": len(batches),
              "tokens": tokens, "test_tokens": test_tokens, "threads": args.threads, "runs": runs}
    if args.baseline is not None:
        report["speedup"] = [before["seconds"] / after["seconds"]
                             for before, after in zip(runs["baseline"], runs["this checkout"])]
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{args.preset} on {args.dataset}, K={args.samples}, {len(batches)} test batches ({tokens} tokens), "
          f"{args.threads} thread(s)")
    scale = test_tokens / tokens / 60
    print(f"{'':<16}" + "".join(f"{part:>13}" for part in (*PARTS, "total s", "test min", "ceiling min",
                                                          "fraction", "GFLOP/s")))
    for name, passes in runs.items():
        for r in passes:
            print(f"{name:<16}" + "".join(f"{r['parts'][part]:>13.2f}" for part in PARTS)
                  + f"{r['seconds']:>13.2f}{r['seconds'] * scale:>13.1f}{r['ceiling_seconds'] * scale:>13.1f}"
                  f"{r['fraction_of_ceiling']:>13.2f}{r['matmul_gflops']:>13.0f}")
    for name, passes in runs.items():
        print(f"{name}: mean IW-NLL {statistics.mean(r['iw_nll'] for r in passes):.3f} nats per sentence")
    if "speedup" in report:
        print("baseline seconds / this checkout's, each round: "
              + ", ".join(f"{ratio:.2f}" for ratio in report["speedup"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

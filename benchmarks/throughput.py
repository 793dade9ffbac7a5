"""Training and scoring throughput of the presets on PTB, beside the matmul ceiling measured in the same process.

For each preset, at the paper's sizes, on length-bucketed PTB batches of 32:

- training: tokens/s of whole steps (forward, backward, gradient-norm clipping at 5, Adam), warm-up steps first, then
  the median over repetitions of a fixed set of batches, and the seconds a PTB training epoch takes at that rate
  (929,589 tokens); and one pass over batches that no pass has met ("unseen"), as training meets them; in each
  precision of ``--precisions`` (float32, and bfloat16 products with float32 master weights where the device has
  them, :mod:`seqvae_zoo.kernels.precision`), the precisions alternating within each repetition, with the median
  bf16/fp32 ratio of the repetitions;
- scoring: tokens/s of one ELBO pass (``latent_mode="posterior"``) in inference mode, measured the same way;
- the ceiling: the model's own matmul FLOPs per token (forward; training counts 3 x forward) at the float32 matmul
  rate of a large matmul timed just before each repetition, the faster of torch.mm (MKL on a CPU) and the package's
  own product (oneDNN on a CPU, :mod:`seqvae_zoo.kernels.matmul`), and the fraction of it reached; also the fraction at
  torch.mm's rate alone; bfloat16 training against its own ceiling, the rate of the same large product in bfloat16;
- IW-NLL with K samples (500, the protocol's default): :func:`importance_log_likelihood` of the evaluation module on a
  few of the protocol's length-sorted test batches, extrapolated to the whole test split by tokens;
- peak memory: the process's peak resident set on CPU, peak allocated CUDA memory on a GPU.

Each preset runs in a fresh process, so that its peak memory and allocator state are its own. The process keeps the
memory it frees (``--malloc tuned``, the default), as every ``seqvae`` command does
(:mod:`seqvae_zoo.training.memory`); ``--malloc default`` measures glibc's defaults. Training steps use the trainer's
optimizer (``--adam trainer``: fused Adam) unless ``--adam default`` asks for torch's default implementation.

    python benchmarks/throughput.py                     # all four presets, a table
    python benchmarks/throughput.py --presets vrae_sa_aux --iw-batches 0 --json
    python benchmarks/throughput.py --presets vrae_sa_aux --precisions fp32 bf16 --iw-batches 0 --unseen-batches 0
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Sequence

import torch
from tabulate import tabulate

from seqvae_zoo import build_model, parse_config
from seqvae_zoo.data import load_dataset
from seqvae_zoo.data.batching import make_loader
from seqvae_zoo.data.vocab import Vocabulary
from seqvae_zoo.decoders.attentive import AttentiveDecoder
from seqvae_zoo.decoders.lstm import LSTMDecoder
from seqvae_zoo.decoders.stochastic import StochasticDecoder
from seqvae_zoo.encoders.lstm import LSTMEncoder
from seqvae_zoo.evaluation.importance import importance_log_likelihood
from seqvae_zoo.evaluation.protocol import DEFAULT_IW_SAMPLES, DEFAULT_MEMORY_BUDGET_MB
from seqvae_zoo.errors import UserError
from seqvae_zoo.kernels.matmul import linear
from seqvae_zoo.kernels.precision import PRECISIONS, autocast, bf16_supported, check_precision
from seqvae_zoo.model import SeqVAE
from seqvae_zoo.training.memory import keep_freed_memory
from seqvae_zoo.training.trainer import make_optimizer

PRESETS = ("lstm", "vrae", "vrae_sa", "vrae_sa_aux")
BATCH_SIZE = 32  # the paper's
EVALUATION_BATCH_SIZE = 64  # evaluate_corpus's default
CLIP_NORM = 5.0
#: Adam's implementations (the same update): the trainer's (one fused kernel over all parameters, where the device has
#: one), or torch's default for the device (on a CPU, separate elementwise operations parameter by parameter).
ADAM_IMPLEMENTATIONS = {"trainer": make_optimizer, "default": lambda parameters, lr: torch.optim.Adam(parameters, lr)}


# -- the ceiling -------------------------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: The float32 products whose rates are measured: torch's own (MKL on a CPU) and the package's (oneDNN on a CPU
#: where torch has it, see seqvae_zoo.kernels.matmul); the ceiling takes the faster, the machine's float32 matmul rate.
MATMULS = {"torch.mm": lambda a, b_t: torch.mm(a, b_t.t()), "seqvae_zoo.kernels.matmul.linear": linear}
#: The rate each training precision's ceiling is taken at: float32's best, and bfloat16's, the same product in
#: bfloat16 (torch's own, which is oneDNN's on a CPU: what the kernels call under bfloat16 autocast).
CEILINGS = {"fp32": "best", "bf16": "bf16"}


def training_key(precision: str) -> str:
    """Where a result holds the training summary of ``precision``: float32's under "training", as before
    bfloat16 was measured (benchmarks/compare_checkouts.py reads it), the others beside it."""
    return "training" if precision == "fp32" else f"training_{precision}"


def matmul_rates(device: torch.device, repeats: int = 3, bf16: bool = False) -> dict[str, float]:
    """float32 FLOP/s of a large square matmul by each of :data:`MATMULS` (the best of ``repeats`` after one untimed
    run), and ``best``, the faster; with ``bf16``, ``bf16``: the same product's rate in bfloat16."""
    size = 8192 if device.type == "cuda" else 2048
    a, b_t = (torch.randn(size, size, device=device) for _ in range(2))
    products = [(name, product, a, b_t) for name, product in MATMULS.items()]
    if bf16:
        products.append(("bf16", MATMULS["torch.mm"], a.bfloat16(), b_t.bfloat16()))
    rates = {}
    for name, product, left, right in products:
        best = float("inf")
        for attempt in range(repeats + 1):
            synchronize(device)
            start = time.perf_counter()
            product(left, right)
            synchronize(device)
            if attempt:
                best = min(best, time.perf_counter() - start)
        rates[name] = 2 * size ** 3 / best
    rates["best"] = max(rates[name] for name in MATMULS)
    return rates


def _linear(inputs: int, outputs: int) -> int:
    return 2 * inputs * outputs


def encoder_flops(encoder: LSTMEncoder | None, lengths: Sequence[int]) -> float:
    """Forward matmul FLOPs of the encoder over sentences of these lengths (the LSTM, then q(z_enc | x))."""
    if encoder is None:
        return 0.0
    if not isinstance(encoder, LSTMEncoder):
        raise TypeError(f"no FLOP count for encoder {type(encoder).__name__}")
    rnn = encoder.rnn
    directions = 2 if rnn.bidirectional else 1
    per_token = directions * _linear(rnn.input_size + rnn.hidden_size, 4 * rnn.hidden_size)
    per_sentence = _linear(encoder.state_size, encoder.posterior.out_features)
    return sum(lengths) * per_token + len(lengths) * per_sentence


def decoder_flops(decoder: LSTMDecoder | StochasticDecoder, lengths: Sequence[int], memory_size: int) -> float:
    """Forward matmul FLOPs of the decoder and the output layer in a posterior-mode pass over sentences of these
    lengths: what the model's mathematics needs, each product computed once (z_enc's projection once per sentence,
    the attention keys once per encoder state)."""
    if isinstance(decoder, LSTMDecoder):
        z_enc_dim, embedding_dim = decoder.z_enc_dim, decoder.rnn.input_size - decoder.z_enc_dim
    elif isinstance(decoder, StochasticDecoder):
        z_enc_dim = decoder.z_enc_projection.in_features if decoder.z_enc_projection is not None else 0
        embedding_dim = decoder.input_projection.in_features
    else:
        raise TypeError(f"no FLOP count for decoder {type(decoder).__name__}")
    hidden, gates = decoder.hidden_size, 4 * decoder.hidden_size
    per_token = _linear(embedding_dim, gates) + _linear(hidden, gates) + _linear(hidden, decoder.vocab_size)
    per_sentence = _linear(z_enc_dim, gates)
    per_token_squared = 0  # attention reads every encoder state at every step
    if isinstance(decoder, StochasticDecoder):
        latent, extra = decoder.latent_dim, decoder.extra_latent_size
        per_token += (2 * _linear(hidden, 2 * latent)  # posterior (h_{t-1} half), prior
                      + _linear(latent + extra, gates))  # [z_t, c~_t] into the gates
        if isinstance(decoder, AttentiveDecoder):
            attention = decoder.query_size
            per_token += (_linear(hidden, attention)  # query W h_{t-1}
                          + _linear(memory_size, attention)  # keys V s_i
                          + _linear(memory_size, 2 * latent)  # posterior, c_t half
                          + _linear(latent, 2 * extra)  # p(c~_t | z_t)
                          + _linear(memory_size, extra))  # c_t's projection, the auxiliary target
            per_token_squared = _linear(attention, 1) + _linear(1, memory_size)  # scores, weighted sum
        else:
            per_sentence += _linear(memory_size, 2 * latent)  # posterior, the sentence summary's half
    return (sum(lengths) * per_token + len(lengths) * per_sentence
            + sum(length * length for length in lengths) * per_token_squared)


def forward_flops(model: SeqVAE, lengths: Sequence[int], samples: int = 1) -> float:
    """Forward matmul FLOPs of scoring sentences of these lengths with ``samples`` draws of the latents each (the
    encoder runs once per sentence)."""
    memory_size = model.encoder.state_size if model.encoder is not None else 0
    return encoder_flops(model.encoder, lengths) + samples * decoder_flops(model.decoder, lengths, memory_size)


# -- data --------------------------------------------------------------------------------------------------------
def corpus_batches(data_dir: str | None, train_batches: int, iw_batches: int, seed: int, dataset: str = "ptb",
                   vocab: Vocabulary | None = None):
    """The first ``train_batches`` length-bucketed training batches of an epoch (shuffled as in training), and
    ``iw_batches`` of the protocol's length-sorted test batches, evenly spread over lengths; with the training and
    test splits' token counts (end-of-sentence counted). The vocabulary is the train split's unless given (a trained
    model's)."""
    corpus = load_dataset(dataset, data_dir=data_dir)
    vocab = vocab or Vocabulary.build(corpus.splits["train"])
    loader = make_loader(vocab.encode_all(corpus.splits["train"]), BATCH_SIZE, vocab.pad_id, seed=seed)
    train = [batch for batch, _ in zip(loader, range(train_batches))]
    test = list(make_loader(vocab.encode_all(corpus.splits["test"]), EVALUATION_BATCH_SIZE, vocab.pad_id,
                            shuffle=False))
    picked = [test[int((i + 0.5) * len(test) / iw_batches)] for i in range(iw_batches)]
    test_tokens = sum(int(batch.lengths.sum()) for batch in test)
    train_tokens = sum(len(sentence) + 1 for sentence in corpus.splits["train"])
    return vocab, train, picked, train_tokens, test_tokens


# -- measurements ------------------------------------------------------------------------------------------------
def repeated(runs: dict[str, Callable[[], None]], repeats: int, warmup: int, device: torch.device,
             bf16: bool = False) -> dict[str, list[dict[str, float]]]:
    """Run each of ``runs`` ``warmup`` times untimed, then ``repeats`` times, each repetition a fresh matmul-rate
    measurement (bfloat16's too with ``bf16``) then every run once, timed, in turn: runs compared with each other
    meet the same load on a shared machine."""
    for _ in range(warmup):
        for run in runs.values():
            run()
    results: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
    for _ in range(repeats):
        rates = matmul_rates(device, bf16=bf16)
        for name, run in runs.items():
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            results[name].append({"seconds": time.perf_counter() - start, "matmul_rates": rates})
    return results


def summarize(results: list[dict[str, Any]], tokens: int, flops: float, ceiling: str = "best") -> dict[str, Any]:
    """Median tokens/s, ceiling tokens/s and fraction of the ceiling, each repetition against its own ``ceiling``
    rate (:data:`CEILINGS`); also the fraction of the ceiling at torch.mm's float32 rate, and the median rates."""
    throughput = [tokens / r["seconds"] for r in results]

    def fraction(rate: str) -> float:
        return statistics.median(t * flops / (r["matmul_rates"][rate] * tokens) for t, r in zip(throughput, results))
    return {"tokens_per_second": statistics.median(throughput),
            "ceiling_tokens_per_second": statistics.median(r["matmul_rates"][ceiling] * tokens / flops
                                                           for r in results),
            "fraction_of_ceiling": fraction(ceiling), "fraction_of_torch_mm_ceiling": fraction("torch.mm"),
            "matmul_gflops": {name: statistics.median(r["matmul_rates"][name] for r in results) / 1e9
                              for name in results[0]["matmul_rates"]},
            "seconds": statistics.median(r["seconds"] for r in results)}


def measure_preset(preset: str, options: dict[str, Any]) -> dict[str, Any]:
    """Every measurement of one preset (run in its own process)."""
    malloc = "tuned" if options["malloc"] == "tuned" and keep_freed_memory() else "default"
    if options["threads"]:
        torch.set_num_threads(options["threads"])
    device = torch.device(options["device"])
    torch.manual_seed(options["seed"])
    vocab, train, iw_batches, epoch_tokens, test_tokens = corpus_batches(options["data_dir"],
                                                                         options["batches"] + options["unseen_batches"],
                                                                         options["iw_batches"], options["seed"])
    train, unseen = train[:options["batches"]], train[options["batches"]:]
    parse_config([preset])
    model = build_model(vocab.size, vocab.pad_id, vocab.bos_id, vocab.unk_id, vocab.eos_id).to(device)
    optimizer = ADAM_IMPLEMENTATIONS[options["adam"]](model.parameters(), 1e-3)
    batches = [(b.tokens.to(device), b.lengths.to(device)) for b in train]
    lengths = [length for _, batch_lengths in batches for length in batch_lengths.tolist()]
    tokens = sum(lengths)

    def train_steps(on=batches, precision: str = "fp32") -> None:
        model.train()
        for batch_tokens, batch_lengths in on:
            optimizer.zero_grad(set_to_none=True)
            with autocast(precision, device):  # as the trainer does: the forward pass
                loss = model.objective(model(batch_tokens, batch_lengths), {})
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
            optimizer.step()

    def score() -> None:
        model.eval()
        with torch.inference_mode():
            for batch_tokens, batch_lengths in batches:
                model(batch_tokens, batch_lengths, latent_mode="posterior")

    repeats, warmup, precisions = options["repeats"], options["warmup"], options["precisions"]
    bf16 = "bf16" in precisions
    training = repeated({precision: lambda precision=precision: train_steps(precision=precision)
                         for precision in precisions}, repeats, warmup, device, bf16)
    train_flops = 3 * forward_flops(model, lengths)
    result: dict[str, Any] = {
        "preset": preset, "parameters": model.num_parameters(), "tokens": tokens, "batches": len(batches),
        "malloc": malloc, "precisions": precisions,
        "forward_gflop_per_token": forward_flops(model, lengths) / tokens / 1e9,
        **{training_key(precision): summarize(runs, tokens, train_flops, CEILINGS[precision])
           for precision, runs in training.items()},
        "scoring": summarize(repeated({"fp32": score}, repeats, warmup, device)["fp32"], tokens,
                             forward_flops(model, lengths)),
    }
    for precision in precisions:
        summary = result[training_key(precision)]
        summary["ptb_epoch_seconds"] = epoch_tokens / summary["tokens_per_second"]
    if bf16 and "fp32" in training:  # each repetition's bf16 rate over the fp32 rate timed beside it
        result[training_key("bf16")]["speedup_over_fp32"] = statistics.median(
            fp32["seconds"] / low["seconds"] for fp32, low in zip(training["fp32"], training["bf16"]))
    if unseen:  # one pass over batches no pass has met: shapes the kernels were not compiled for, data not cached
        unseen_batches = [(b.tokens.to(device), b.lengths.to(device)) for b in unseen]
        unseen_lengths = [length for _, batch_lengths in unseen_batches for length in batch_lengths.tolist()]
        first = precisions[0]
        result["training_unseen"] = summarize(
            repeated({first: lambda: train_steps(unseen_batches, first)}, 1, 0, device, bf16)[first],
            sum(unseen_lengths), 3 * forward_flops(model, unseen_lengths), CEILINGS[first])
    if iw_batches and model.kl_terms:
        result["iw"] = measure_iw(model, iw_batches, test_tokens, options["iw_samples"], device)
    result["peak_memory_mb"] = peak_memory_mb(device)
    return result


def measure_iw(model: SeqVAE, batches, test_tokens: int, samples: int, device: torch.device) -> dict[str, float]:
    """IW-NLL with ``samples`` draws per sentence on ``batches``, as the evaluation protocol computes it, timed once
    and extrapolated to the test split by tokens."""
    model.eval()
    rate = matmul_rates(device)["best"]
    lengths = [length for batch in batches for length in batch.lengths.tolist()]
    synchronize(device)
    start = time.perf_counter()
    for batch in batches:
        importance_log_likelihood(model, batch.tokens.to(device), batch.lengths.to(device), samples,
                                  DEFAULT_MEMORY_BUDGET_MB * 2 ** 20)
    synchronize(device)
    seconds = time.perf_counter() - start
    ceiling_seconds = forward_flops(model, lengths, samples) / rate
    scale = test_tokens / sum(lengths)
    return {"samples": samples, "sentences": len(lengths), "tokens": sum(lengths), "seconds": seconds,
            "test_split_seconds": seconds * scale, "ceiling_test_split_seconds": ceiling_seconds * scale,
            "fraction_of_ceiling": ceiling_seconds / seconds, "matmul_gflops": rate / 1e9}


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 10  # kilobytes on Linux


# -- the report --------------------------------------------------------------------------------------------------
def table(results: list[dict[str, Any]]) -> str:
    """One row per preset and training precision; scoring, IW-NLL and the unseen batches (float32, or the first
    precision asked for) on the preset's first row."""
    rows = []
    for r in results:
        scoring, iw = r["scoring"], r.get("iw")
        for index, precision in enumerate(r["precisions"]):
            train, first = r[training_key(precision)], index == 0
            rows.append([r["preset"], precision, f"{r['forward_gflop_per_token'] * 1e3:.2f}",
                         f"{train['tokens_per_second']:,.0f}", f"{train['ptb_epoch_seconds']:,.0f}",
                         f"{train['ceiling_tokens_per_second']:,.0f}", f"{train['fraction_of_ceiling']:.2f}",
                         f"{train['fraction_of_torch_mm_ceiling']:.2f}" if precision == "fp32" else "-",
                         f"{train['speedup_over_fp32']:.2f}" if "speedup_over_fp32" in train else "-",
                         f"{r['training_unseen']['tokens_per_second']:,.0f}" if first and "training_unseen" in r
                         else "-",
                         f"{scoring['tokens_per_second']:,.0f}" if first else "-",
                         f"{scoring['fraction_of_ceiling']:.2f}" if first else "-",
                         f"{iw['test_split_seconds'] / 60:.1f}" if first and iw else "-",
                         f"{iw['fraction_of_ceiling']:.2f}" if first and iw else "-", f"{r['peak_memory_mb']:,.0f}"])
    return tabulate(rows, headers=["preset", "precision", "MFLOP/token", "train tok/s", "epoch s", "ceiling tok/s",
                                   "fraction", "at torch.mm", "bf16/fp32", "unseen tok/s", "score tok/s", "fraction",
                                   "IW test min", "fraction", "peak MB"],
                    tablefmt="github", disable_numparse=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--data-dir", help="folder holding ptb/ (default: $SEQVAE_DATA, then the user cache)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--batches", type=int, default=20, help="training batches per repetition")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1, help="untimed passes over the batches first")
    parser.add_argument("--unseen-batches", type=int, default=40,
                        help="training batches timed once, after the others, never seen before (0: skip)")
    parser.add_argument("--iw-batches", type=int, default=1, help="test batches of 64 timed for IW-NLL (0: skip)")
    parser.add_argument("--iw-samples", type=int, default=DEFAULT_IW_SAMPLES)
    parser.add_argument("--adam", choices=sorted(ADAM_IMPLEMENTATIONS), default="trainer",
                        help="Adam implementation (the same update either way)")
    parser.add_argument("--malloc", choices=["tuned", "default"], default="tuned",
                        help="glibc keeps freed memory (tuned) or returns it to the kernel (default)")
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=None,
                        help="training precisions, timed alternately (default: fp32, and bf16 where the device has "
                             "native bfloat16 products)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    args = parser.parse_args(argv)
    for name in ("batches", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    for name in ("unseen_batches", "iw_batches", "warmup"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be 0 or more")
    device = torch.device(args.device)
    if args.precisions is None:
        args.precisions = ["fp32", "bf16"] if bf16_supported(device) else ["fp32"]
    try:
        for precision in args.precisions:
            check_precision(precision, device)
    except UserError as error:
        parser.exit(2, f"error: {error}\n")
    args.precisions = list(dict.fromkeys(args.precisions))
    options = {key: getattr(args, key) for key in ("data_dir", "device", "threads", "batches", "repeats", "warmup",
                                                   "unseen_batches", "iw_batches", "iw_samples", "adam", "malloc",
                                                   "precisions", "seed")}
    context = multiprocessing.get_context("spawn")
    results = []
    for preset in args.presets:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            results.append(pool.submit(measure_preset, preset, options).result())
        if not args.json:
            print(f"{preset}: done", file=sys.stderr)
    environment = {"device": args.device, "torch": torch.__version__,
                   "threads": args.threads or torch.get_num_threads(),
                   "machine": platform.processor() or platform.machine(), "options": options}
    if torch.device(args.device).type == "cuda":
        environment["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    if args.json:
        print(json.dumps({"environment": environment, "results": results}, indent=2))
    else:
        print(table(results))
        names = [*MATMULS, *(["bf16"] if "bf16" in args.precisions else [])]
        first = args.precisions[0]
        rates = {name: statistics.median(r[training_key(first)]["matmul_gflops"][name] for r in results)
                 for name in names}
        print(f"\ntorch {torch.__version__} on {environment.get('gpu', args.device)}, {environment['threads']} "
              f"threads; 'epoch s': a PTB training epoch at that rate; training counts 3 x forward FLOPs; ceilings "
              f"at the faster float32 matmul rate measured beside each repetition, for bf16 at the bfloat16 rate of "
              f"the same product (medians: {', '.join(f'{name} {rate:.0f} GFLOP/s' for name, rate in rates.items())}"
              f"); 'at torch.mm': the training fraction at torch.mm's rate; 'bf16/fp32': the median over "
              f"repetitions of bf16's rate over fp32's, timed alternately; scoring and IW-NLL are float32")
    return 0


if __name__ == "__main__":
    sys.exit(main())

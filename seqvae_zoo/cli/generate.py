"""``seqvae generate CHECKPOINT``: new sentences, reconstructions, interpolations, attention maps."""

from __future__ import annotations

import argparse
from pathlib import Path

from seqvae_zoo.data.files import read_lines
from seqvae_zoo.generation.decoding import GENERATION_LATENT_MODES, STRATEGIES, DecodingOptions, GenerationError
from seqvae_zoo.generation.sentences import INTERPOLATIONS

DESCRIPTION = """\
With no sentence: new sentences from the prior (the paper's Algorithm 2 by default).
With sentences (-s "w1 w2 w3", repeated; or --input FILE, one per line; words separated by spaces):
  each is reconstructed from its posterior;
  --interpolate decodes the path between two;
  --attention-map OUT.png draws the self-attention weights of each (attentive decoders)."""


def register(subparsers) -> None:
    parser = subparsers.add_parser("generate", help="generate, reconstruct or interpolate sentences; draw attention",
                                   description=DESCRIPTION, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("checkpoint", help="checkpoint file or run folder written by `seqvae train`")
    parser.add_argument("-s", "--sentence", action="append", default=[], dest="sentences", metavar="SENTENCE",
                        help="a sentence to reconstruct, interpolate or draw (quoted; repeat for more)")
    parser.add_argument("--input", default=None, metavar="FILE", help="read the sentences from FILE, one per line")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--interpolate", action="store_true", help="decode the path between two sentences")
    mode.add_argument("--attention-map", default=None, metavar="OUT.png",
                      help="draw each sentence's self-attention weights as a heat map")
    parser.add_argument("--steps", type=int, default=5, help="interpolation points, ends included (default: 5)")
    parser.add_argument("--path", choices=INTERPOLATIONS, default=None,
                        help="interpolation path (default: spherical for a latent on the unit sphere, else linear)")
    parser.add_argument("--num", type=int, default=10, help="new sentences to generate (default: 10)")
    parser.add_argument("--strategy", choices=STRATEGIES, default="greedy", help="next-token choice (default: greedy)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default: 1)")
    parser.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest tokens (0: all)")
    parser.add_argument("--top-p", type=float, default=1.0, help="sample within probability mass p (1: all)")
    parser.add_argument("--beam-size", type=int, default=5, help="beams of beam search (default: 5)")
    parser.add_argument("--length-penalty", type=float, default=1.0,
                        help="beams ranked by log-probability / length ** this (default: 1)")
    parser.add_argument("--max-length", type=int, default=50, help="tokens per sentence at most (default: 50)")
    parser.add_argument("--latent-mode", choices=GENERATION_LATENT_MODES, default="prior_sample",
                        help="per-step latents: drawn from their prior (Algorithm 2) or at its mean")
    parser.add_argument("--sample-posterior", action="store_true",
                        help="reconstruct from a draw of q(z_enc|x) instead of its mean")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.set_defaults(run=run)


def read_sentences(args: argparse.Namespace) -> list[list[str]]:
    lines = list(args.sentences)
    if args.input:
        path = Path(args.input)
        if not path.is_file():
            raise GenerationError(f"--input {args.input!r} does not exist: give a file with one sentence per line")
        lines += [line for line in read_lines(path, "--input") if line.strip()]  # a blank line is no sentence
    return [line.split() for line in lines]


def run(args: argparse.Namespace) -> int:
    from seqvae_zoo.generation import (attention_weights, draw_attention_map, generate, interpolate,
                                       reconstruct)
    from seqvae_zoo.training.checkpoint import load_checkpoint
    from seqvae_zoo.training.run import default_device

    options = DecodingOptions(strategy=args.strategy, temperature=args.temperature, top_k=args.top_k,
                              top_p=args.top_p, beam_size=args.beam_size, length_penalty=args.length_penalty,
                              max_length=args.max_length, latent_mode=args.latent_mode)
    sentences = read_sentences(args)
    if (args.interpolate or args.attention_map) and not sentences:
        raise GenerationError(f"{'--interpolate' if args.interpolate else '--attention-map'} needs sentences: give "
                              "them with --sentence (quoted, repeated) or --input FILE")
    if args.interpolate and len(sentences) != 2:
        raise GenerationError(f"--interpolate needs exactly two sentences, got {len(sentences)}")
    loaded = load_checkpoint(args.checkpoint, map_location=args.device or default_device())
    model, vocab = loaded.model, loaded.vocab
    with loaded.procedure.scoring(model):  # an SVI-trained model reconstructs from its refined posterior
        if args.attention_map:
            path = draw_attention_map(args.attention_map, vocab, sentences, attention_weights(model, vocab, sentences))
            print(f"wrote {path}")
        elif args.interpolate:
            path = interpolate(model, vocab, sentences[0], sentences[1], args.steps, args.path, options, args.seed)
            for step, words in enumerate(path):
                print(f"{step / (len(path) - 1):.2f}  {_text(words)}")
        elif sentences:
            for given, words in zip(sentences, reconstruct(model, vocab, sentences, options, args.seed,
                                                           args.sample_posterior)):
                print(f"> {_text(given)}\n  {_text(words)}")
        else:
            for words in generate(model, vocab, args.num, options, args.seed):
                print(_text(words))
    return 0


def _text(words: list[str]) -> str:
    return " ".join(words) if words else "(empty sentence)"

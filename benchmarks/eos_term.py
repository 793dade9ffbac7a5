"""How much of a model's paper-protocol NLL is the end-of-sentence term, measured on a trained run.

The paper's NLL per sentence and its PPL satisfy NLL / ln(PPL) = words per sentence without end-of-sentence, so its
PPL divides by words only. Whether its NLL also leaves out the end-of-sentence token's -log p is not stated. This
script splits our paper-protocol NLL (per-step latents at their prior mean, z_enc drawn from q, as in
``seqvae eval``) into the words' terms and the end-of-sentence term, and prints the NLL and PPL both ways.

``--latent-mode posterior`` scores the same reconstruction term with VRAE-SA's per-step latents drawn from their
posterior q(z_t | h_{t-1}, c_t) instead, c_t being the attention over the encoded sentence itself (future words
included), as in training; the paper does not say which of the two its Tables 1-2 used. ``posterior_mean`` takes
the means of q(z_enc | x) and of q(z_t | .). A model without per-step latents scores the same in every mode but
``posterior_mean`` (z_enc at its mean).

    python benchmarks/eos_term.py ~/campaign/paper-ptb/runs/<run_key> [--split test] [--latent-mode posterior]
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

from seqvae_zoo.data.loading import load_dataset
from seqvae_zoo.errors import UserError
from seqvae_zoo.evaluation.protocol import SplitBatches, evaluating, seeded
from seqvae_zoo.training.checkpoint import load_checkpoint


def split_nll(model, batches, eos_id: int, seed: int = 0, latent_mode: str = "prior_mean") -> dict[str, float]:
    """Sums over ``batches`` of the reconstruction NLL's word terms and end-of-sentence terms, and the counts; the
    paper's protocol with the default ``latent_mode``."""
    captured: list[torch.Tensor] = []
    score_tokens = model._token_nll

    def recording(hidden, targets):
        nll = score_tokens(hidden, targets)
        captured.append(nll)
        return nll

    model._token_nll = recording
    sums = {"words_nll": 0.0, "eos_nll": 0.0, "words": 0, "sentences": 0}
    try:
        with evaluating(model), seeded(seed, torch.device("cpu")):
            for tokens, lengths in batches:
                captured.clear()
                total = model(tokens, lengths, latent_mode=latent_mode).nll
                mask = torch.arange(tokens.size(1))[None, :] < lengths[:, None]
                token_nll, is_eos = captured[0], tokens[mask] == eos_id
                assert torch.allclose(token_nll.sum(), total.sum(), rtol=1e-5), "captured terms must add up"
                sums["eos_nll"] += float(token_nll[is_eos].sum())
                sums["words_nll"] += float(token_nll[~is_eos].sum())
                sums["words"] += int((~is_eos).sum())
                sums["sentences"] += tokens.size(0)
    finally:
        del model._token_nll
    return sums


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="run folder or checkpoint written by `seqvae train` or `seqvae bench`")
    parser.add_argument("--split", default="test")
    parser.add_argument("--data-dir", default=None, help="folder holding the corpora (default: $SEQVAE_DATA)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latent-mode", default="prior_mean", choices=["prior_mean", "posterior", "posterior_mean"],
                        help="how the per-step latents are drawn (prior_mean: the paper's protocol, as seqvae eval)")
    args = parser.parse_args(argv)
    try:
        loaded = load_checkpoint(args.run)
        corpus = load_dataset(loaded.dataset, data_dir=args.data_dir, **loaded.state.get("dataset_options", {}))
        batches = SplitBatches(loaded.vocab, corpus, args.split, seed=args.seed).batches
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    sums = split_nll(loaded.model, batches, loaded.vocab.eos_id, args.seed, args.latent_mode)
    sentences, words = sums["sentences"], sums["words"]
    with_eos = sums["words_nll"] + sums["eos_nll"]
    print(f"{loaded.dataset} {args.split}: {sentences} sentences, {words} words ({words / sentences:.2f} a sentence); "
          f"latents: {args.latent_mode}")
    print(f"end-of-sentence term per sentence: {sums['eos_nll'] / sentences:.2f} nats")
    print(f"NLL per sentence with it: {with_eos / sentences:.2f}, PPL over words {math.exp(with_eos / words):.2f}")
    print(f"NLL per sentence without it: {sums['words_nll'] / sentences:.2f}, "
          f"PPL over words {math.exp(sums['words_nll'] / words):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

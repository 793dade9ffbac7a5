"""The Transformer decoder beyond the checks every decoder gets in tests/test_models.py (no look-ahead in teacher
forcing and in generation, step-by-step generation equal to the teacher-forced pass, in both z_enc modes and as a
language model): a generation step computes one position, and the models of examples/transformer_vae/ learn the
synthetic corpus, with IW-NLL below the ELBO."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seqvae_zoo import build_model, parse_config
from seqvae_zoo.errors import UserError
from seqvae_zoo.evaluation import evaluate_corpus
from seqvae_zoo.generation.decoding import DecodingOptions, decode
from seqvae_zoo.model import SeqVAE
from seqvae_zoo.training.run import train_run

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "transformer_vae"
VOCAB, PAD, BOS, EOS, UNK = 23, 0, 1, 2, 3
TINY = ["EMBEDDING = 16", "HIDDEN = 16", "LATENT = 4", "decoders.transformer.feedforward_size = 32",
        "decoders.transformer.layers = 2", "decoders.transformer.heads = 4"]
#: Each model of the example: its gin file and bindings.
SETUPS = {
    "vae-z_enc-prefix": ("transformer_vae.gin", []),
    "vae-z_enc-memory": ("transformer_vae.gin", ["decoders.transformer.z_enc_as = 'memory'"]),
    "language-model": ("transformer_lm.gin", []),
}


def tiny_model(setup: str) -> SeqVAE:
    gin_file, bindings = SETUPS[setup]
    parse_config([str(EXAMPLE / gin_file)], TINY + bindings)
    torch.manual_seed(0)
    return build_model(vocab_size=VOCAB, pad_id=PAD, bos_id=BOS, unk_id=UNK, eos_id=EOS).double().eval()


@pytest.mark.parametrize("setup", list(SETUPS))
def test_a_generation_step_computes_one_position_and_matches_the_full_forward(setup):
    """Every layer sees only the new position at each step (its keys and values before are cached), the cache grows
    by one position a step, and the logits are those of the teacher-forced pass over the whole prefix."""
    model = tiny_model(setup)
    decoder, steps = model.decoder, 6
    inputs = torch.randint(UNK + 1, VOCAB, (3, steps), generator=torch.Generator().manual_seed(1))
    inputs[:, 0] = BOS
    z_enc = torch.randn(3, 4, dtype=torch.float64) if model.encoder is not None else None
    full = decoder.logits(decoder(inputs, torch.full((3,), steps), z_enc, None).hidden)
    seen = []
    for layer in decoder.layers:
        layer.norm1.register_forward_hook(lambda module, args, output: seen.append(args[0].size(1)))
    state = decoder.start(z_enc, 3)
    prefix = decoder.prefix_length
    assert all(tensor.shape == (3, prefix, 16) for tensor in state)
    for t in range(steps):
        seen.clear()
        logits, state = decoder.step(inputs[:, t], state, z_enc)
        assert seen == [1] * len(decoder.layers)
        assert all(tensor.size(1) == prefix + t + 1 for tensor in state)
        torch.testing.assert_close(logits, full[:, t])


@pytest.mark.parametrize("setup", ["vae-z_enc-prefix", "vae-z_enc-memory"])
def test_beam_search_with_one_beam_is_greedy_search(setup):
    """Beam search selects the cache rows of each beam's parent at every step; with one beam it must give the greedy
    sentences token for token."""
    model = tiny_model(setup)
    z_enc = model.latent_prior.sample(4).double()
    greedy = decode(model, z_enc, 4, EOS, DecodingOptions(strategy="greedy", max_length=8))
    assert decode(model, z_enc, 4, EOS, DecodingOptions(strategy="beam", beam_size=1, max_length=8)) == greedy


def test_a_prefix_longer_than_the_position_embeddings_is_refused_with_what_to_do():
    model = tiny_model("language-model")
    width = model.decoder.max_length + 1
    tokens = torch.full((1, width), UNK + 1)
    tokens[0, -1] = EOS
    with pytest.raises(ValueError, match=r"position embeddings for 256 tokens and was given 257: raise "
                                         r"decoders.transformer.max_length"):
        model(tokens, torch.tensor([width]))


def test_a_bad_z_enc_mode_is_refused():
    with pytest.raises(UserError, match="z_enc_as must be one of 'prefix', 'memory', got 'side'"):
        parse_config([str(EXAMPLE / "transformer_vae.gin")], TINY + ["decoders.transformer.z_enc_as = 'side'"])
        build_model(vocab_size=VOCAB, pad_id=PAD, bos_id=BOS, unk_id=UNK, eos_id=EOS)


def test_without_per_step_latents_the_log_weight_is_the_sentence_latents_alone():
    """The decoder gives no log ratio (None): it counts as 0, so log w = log p(z) - log q(z | x) - NLL, and for the
    language model log w = -NLL."""
    tokens = torch.tensor([[5, 6, 7, EOS], [8, EOS, PAD, PAD]])
    lengths = torch.tensor([4, 2])
    language_model = tiny_model("language-model")
    with torch.no_grad():
        terms = language_model(tokens, lengths)
    torch.testing.assert_close(terms.log_weight, -terms.nll)
    vae = tiny_model("vae-z_enc-prefix")
    with torch.no_grad():
        terms = vae(tokens, lengths)
        posterior = vae.encoder(tokens, lengths).posterior
    torch.testing.assert_close(terms.log_weight, vae.latent_prior.log_prob(terms.z_enc)
                               - posterior.log_prob(terms.z_enc) - terms.nll)


@pytest.mark.parametrize("setup", ["vae-z_enc-prefix", "language-model"])
def test_the_example_learns_the_synthetic_corpus_and_iw_nll_is_below_the_elbo(tmp_path, setup):
    """Two short epochs on a small synthetic instance close at least half of the gap between the untrained model's
    -ELBO on the test split and the corpus's true NLL; the importance-weighted NLL is at most the ELBO's (equal for
    the language model, whose NLL is exact). Free bits keep z_enc in use, so the VAE's bound has a gap."""
    gin_file, bindings = SETUPS[setup]
    live_latent = ["models.SeqVAE.regularizers = [@regularizers.free_bits()]", "regularizers.free_bits.nats = 2.0"]
    run = train_run([str(EXAMPLE / gin_file)], "synthetic", tmp_path, bindings=[
        *TINY, *bindings, *(live_latent if setup.startswith("vae") else []), "decoders.transformer.dropout = 0.0",
        "training.TrainingSettings.checkpoint_every = 0", "training.TrainingSettings.batch_size = 16",
        "training.TrainingSettings.lr = 1e-2", "kl_schedules.linear.warmup_epochs = 1.0"], epochs=2,
        progress=False, dataset_options={"components": 2, "states": 4, "words": 60, "train_size": 320,
                                         "valid_size": 64, "test_size": 64})
    vocab = run.vocab
    torch.manual_seed(0)  # the run's seed: the weights it started from
    untrained = build_model(vocab_size=vocab.size, pad_id=vocab.pad_id, bos_id=vocab.bos_id, unk_id=vocab.unk_id,
                            eos_id=vocab.eos_id)
    start = evaluate_corpus(untrained, vocab, run.corpus, "test", iw_samples=1)["elbo"]["nll"]
    result = evaluate_corpus(run.model, vocab, run.corpus, "test", iw_samples=20)
    true_nll = result["synthetic"]["true_nll"]
    assert result["elbo"]["nll"] < start - 0.5 * (start - true_nll), (start, result["elbo"], true_nll)
    assert result["iw"]["nll"] <= result["elbo"]["nll"] + 1e-9, (result["iw"], result["elbo"])
    if setup.startswith("vae"):
        assert result["iw"]["nll"] < result["elbo"]["nll"]

"""The zoo's presets trained: on the synthetic corpus far enough to show each method's defining behaviour (the
default run), and on PTB for one epoch through `seqvae bench`, evaluated end to end (slow)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from seqvae_zoo.cli import main
from seqvae_zoo.data.batching import collate
from seqvae_zoo.presets import parse_config
from seqvae_zoo.schedules.base import EVERY_KL_TERM
from seqvae_zoo.training.procedures.svi import refine_posterior
from seqvae_zoo.training.run import train_run
from seqvae_zoo.training.trainer import TrainingSettings
from test_presets_cli import ZOO_PRESETS

TINY = ["EMBEDDING = 16", "HIDDEN = 16", "LATENT = 4", "training.TrainingSettings.batch_size = 16",
        "training.TrainingSettings.checkpoint_every = 0", "kl_schedules.linear.warmup_epochs = 1.0"]
SMALL_DATA = {"train_size": 96, "valid_size": 16, "test_size": 48}


def trained_on_synthetic(out: Path, preset: str, bindings=(), epochs: int = 2):
    """The run, and its test split as one batch."""
    run = train_run([preset], "synthetic", out, bindings=[*TINY, *bindings], progress=False,
                    dataset_options=SMALL_DATA, epochs=epochs)
    batch = collate(run.vocab.encode_all(run.corpus.splits["test"]), run.vocab.pad_id)
    return run, batch.tokens, batch.lengths


@pytest.mark.parametrize("preset, gamma", [("bn_vae_06", 0.6), ("bn_vae_07", 0.7)])
def test_trained_bn_vae_keeps_its_batch_kl_at_or_above_n_gamma_squared_over_two(tmp_path, preset, gamma):
    run, tokens, lengths = trained_on_synthetic(tmp_path, preset)
    with torch.no_grad():
        kl = run.model.train()(tokens, lengths).kl["z_enc"]
    assert kl.mean().item() >= 4 * gamma ** 2 / 2 * (1 - 1e-3)


def test_trained_delta_vae_commits_every_sentence_to_its_rate(tmp_path):
    run, tokens, lengths = trained_on_synthetic(tmp_path, "delta_vae")
    with torch.no_grad():
        kl = run.model.eval()(tokens, lengths, latent_mode="posterior_mean").kl["z_enc"]
    assert (kl >= 4 * 0.1 * (1 - 1e-4)).all()


def per_dimension_kl(run, tokens, lengths) -> torch.Tensor:
    """Each dimension's KL(q(z_i | x) || N(0, 1)), averaged over the sentences (torch.distributions' closed form)."""
    with torch.no_grad():
        q = run.model.eval().encoder(tokens, lengths).posterior
        posterior = torch.distributions.Normal(q.mean, (0.5 * q.logvar).exp())
        return torch.distributions.kl_divergence(posterior, torch.distributions.Normal(0.0, 1.0)).mean(dim=0)


def test_trained_free_bits_reset_raises_each_dimensions_kl_to_the_threshold_and_no_further(tmp_path):
    """Per-dimension free bits after pretraining and the reset: every dimension's KL rises toward the threshold and
    none runs far beyond it; with a threshold of 0 every dimension collapses."""
    floor, settings = 0.25, ["procedures.pretrain_reset.pretrain_epochs = 2", "training.TrainingSettings.lr = 0.01",
                             "INPUT_DROPOUT = 0.0"]
    kept = per_dimension_kl(*trained_on_synthetic(tmp_path / "kept", "free_bits_reset", [
        *settings, f"regularizers.free_bits.nats = {floor}"], epochs=8))
    collapsed = per_dimension_kl(*trained_on_synthetic(tmp_path / "collapsed", "free_bits_reset", [
        *settings, "regularizers.free_bits.nats = 0.0"], epochs=8))
    assert collapsed.max() < 0.05 * floor
    assert (kept > collapsed.max()).all() and kept.mean() >= 0.4 * floor and kept.max() <= 1.5 * floor


def test_sa_vae_refinement_stays_finite_and_lowers_the_elbo_where_the_decoder_is_steep_in_z(tmp_path):
    """The preset's refinement (its steps, lr, momentum and clipping) where the decoder reads z through weights 20
    times its initial ones, as steep in z as a decoder that has learnt to use its latent: the refined parameters and
    KL(q_encoder || q_refined), the encoder's loss, stay finite, and the batch's -ELBO goes down. (A step of lr 1 on
    each sentence's own -ELBO overshoots there and raises the -ELBO; with some noise draws its log-variance lands
    hundreds of nats below the start and the KL overflows.)"""
    run, tokens, lengths = trained_on_synthetic(tmp_path, "sa_vae", epochs=0)
    model = run.model.eval()
    with torch.no_grad():
        model.decoder.rnn.weight_ih_l0[:, model.decoder.embedding.embedding_dim:] *= 20.0
    parse_config(["sa_vae"])
    procedure = TrainingSettings().procedure  # the preset's settings
    initial = model.encoder(tokens, lengths).posterior
    torch.manual_seed(0)
    refined = refine_posterior(model, tokens, lengths, initial, {EVERY_KL_TERM: 1.0}, procedure.steps, procedure.lr,
                               procedure.momentum, procedure.max_grad_norm)

    def mean_neg_elbo(posterior, draws: int = 100) -> float:  # over noise draws, the same for both
        torch.manual_seed(1)
        repeated = type(posterior)(*(value.repeat(draws, 1) for value in posterior))
        with torch.no_grad():
            return model(tokens.repeat(draws, 1), lengths.repeat(draws), posterior=repeated).neg_elbo.mean().item()

    assert all(torch.isfinite(value).all() for value in refined)
    assert torch.isfinite(initial.kl(refined)).all()
    assert mean_neg_elbo(refined) < mean_neg_elbo(initial)


# -- every zoo preset on PTB, one epoch, through the bench ---------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("preset", ZOO_PRESETS)
def test_every_zoo_preset_trains_an_epoch_of_ptb_and_evaluates_end_to_end(tmp_path, preset):
    """Reduced sizes, one epoch (two for free_bits_reset: one of pretraining, one after the reset), the zoo-ptb
    suite's evaluation with fewer importance samples. Aggressive training's inner loops are capped at 2 steps (one
    random batch each) and SA-VAE's refinement at 5 steps (each step 2 gradient evaluations end to end): with
    the presets' 100 and 20, an epoch of PTB's 1,315 batches would take hours."""
    epochs, bindings = 1, ["EMBEDDING = 64", "HIDDEN = 64", "LATENT = 8"]
    if preset == "free_bits_reset":
        epochs, bindings = 2, [*bindings, "procedures.pretrain_reset.pretrain_epochs = 1"]
    if preset == "aggressive":
        bindings = [*bindings, "procedures.aggressive.max_inner_steps = 2", "procedures.aggressive.window = 1"]
    if preset == "sa_vae":
        bindings = [*bindings, "procedures.svi.steps = 5"]
    suite = tmp_path / "zoo.toml"
    suite.write_text(f"""
title = "zoo"
datasets = ["ptb"]
epochs = {epochs}
bindings = {json.dumps(bindings)}
[evaluation]
split = "test"
iw_samples = 5
batch_size = 64
[[models]]
name = "{preset}"
configs = ["{preset}"]
[[columns]]
header = "IW-NLL"
metric = "iw.nll"
""")
    assert main(["bench", str(suite), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    [record] = [json.loads(p.read_text()) for p in (tmp_path / "out" / "zoo" / "records").glob("*.json")]
    metrics = record["metrics"]
    for value in (metrics["iw"]["nll"], metrics["elbo"]["nll"], metrics["paper"]["ppl"], metrics["latent"]["mi"]):
        assert math.isfinite(value)
    assert metrics["iw"]["nll"] <= metrics["elbo"]["nll"] + 1e-6 and 0 <= metrics["latent"]["au"] <= 8

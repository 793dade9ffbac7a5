"""Components of the zoo's presets, each by its defining behaviour: BN-VAE's and delta-VAE's KL floors whatever the
encoder gives, free bits per dimension, and skip-VAE's output layer reading z_enc without looking ahead."""

from __future__ import annotations

import pytest
import torch

from seqvae_zoo import build_model, parse_config
from seqvae_zoo.errors import UserError
from seqvae_zoo.latents.batch_norm import BatchNormGaussianFamily
from seqvae_zoo.latents.committed_rate import CommittedRateGaussianFamily
from test_latents import batch

VOCAB, PAD, BOS, EOS, UNK = 23, 0, 1, 2, 3
SMALL = ["EMBEDDING = 12", "HIDDEN = 16", "LATENT = 5"]


def small_model(bindings=(), seed: int = 0):
    parse_config(["vrae"], SMALL + list(bindings))
    torch.manual_seed(seed)
    return build_model(vocab_size=VOCAB, pad_id=PAD, bos_id=BOS, unk_id=UNK, eos_id=EOS).double()


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per sentence, from torch.distributions (no code shared with the zoo)."""
    q = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    return torch.distributions.kl_divergence(q, p).sum(-1)


def encoder_outputs(dim: int, seed: int):
    """Encoder output layers of every kind: tiny, huge, shifted, one dimension constant, every sign of log sigma^2."""
    generator = torch.Generator().manual_seed(seed)
    for scale, offset in [(0.1, 0.0), (1.0, 0.0), (100.0, -50.0), (3.0, 7.0)]:
        params = offset + scale * torch.randn(64, 2 * dim, generator=generator, dtype=torch.float64)
        yield params
    constant = torch.randn(64, 2 * dim, generator=generator, dtype=torch.float64)
    constant[:, 0] = 3.0
    yield constant


# -- BN-VAE ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gamma", [0.3, 0.6, 0.7, 1.5])
def test_bn_vae_batch_mean_kl_is_at_least_n_gamma_squared_over_two_whatever_the_encoder_gives(gamma):
    dim = 8
    family = BatchNormGaussianFamily(dim, gamma=gamma).double().train()
    with torch.no_grad():
        family.shift.normal_()  # a learned shift only adds to the floor
    for params in encoder_outputs(dim, seed=1):
        q = family.posterior(params)
        varying = params[:, :dim].var(dim=0) > 1e-3  # a constant dimension has no variance to normalize
        floor = varying.sum().item() * gamma ** 2 / 2
        assert kl_to_standard_normal(q.mean, q.logvar).mean().item() >= floor * (1 - 1e-3)


def test_bn_vae_evaluates_with_running_statistics_and_saves_them_with_the_model():
    model = small_model(["encoders.lstm.family = @latents.bn_gaussian", "latents.bn_gaussian.gamma = 0.7"]).train()
    tokens, lengths = batch((5, 3, 7, 2, 4, 6))
    model(tokens, lengths)  # one training batch updates the running statistics
    state = model.state_dict()
    assert {"encoder.family.shift", "encoder.family.running_mean", "encoder.family.running_var"} <= set(state)
    assert not torch.equal(state["encoder.family.running_mean"], torch.zeros(5, dtype=torch.float64))
    model.eval()
    alone = model.encoder(tokens[:1, :lengths[0]], lengths[:1]).posterior.mean
    together = model.encoder(tokens, lengths).posterior.mean[:1]
    torch.testing.assert_close(alone, together)  # evaluation: a sentence's posterior does not depend on its batch
    assert "encoder.family.shift" in dict(model.named_parameters())


def test_bn_vae_refuses_a_scale_that_is_not_positive():
    with pytest.raises(UserError, match="gamma is the fixed scale"):
        small_model(["encoders.lstm.family = @latents.bn_gaussian", "latents.bn_gaussian.gamma = 0.0"])


# -- delta-VAE ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("delta", [0.01, 0.1, 0.5, 2.0])
def test_delta_vae_kl_of_every_sentence_is_at_least_the_committed_rate(delta):
    dim = 8
    family = CommittedRateGaussianFamily(dim, delta=delta)
    for params in [*encoder_outputs(dim, seed=2), torch.zeros(3, 2 * dim, dtype=torch.float64),
                   torch.full((3, 2 * dim), 1e4, dtype=torch.float64), torch.full((3, 2 * dim), -1e4,
                                                                                  dtype=torch.float64)]:
        q = family.posterior(params)
        assert (kl_to_standard_normal(q.mean, q.logvar) >= dim * delta * (1 - 1e-9)).all()
    zero_mean = family.posterior(torch.cat([torch.zeros(1, dim), torch.full((1, dim), 50.0)], 1).double())
    assert kl_to_standard_normal(zero_mean.mean, zero_mean.logvar).item() == pytest.approx(dim * delta, rel=1e-6)


def test_delta_vae_refuses_a_rate_that_is_not_positive():
    with pytest.raises(UserError, match="committed rate per dimension"):
        small_model(["encoders.lstm.family = @latents.delta_gaussian", "latents.delta_gaussian.delta = 0"])


# -- free bits per dimension -----------------------------------------------------------------------------------------
def test_free_bits_per_dimension_floor_each_dimensions_batch_kl():
    floor = 0.4
    model = small_model(["models.SeqVAE.regularizers = [@regularizers.free_bits()]",
                         f"regularizers.free_bits.nats = {floor}", "regularizers.free_bits.per_dimension = True"])
    model.train()
    tokens, lengths = batch((5, 3, 7, 2, 4, 6))
    with torch.no_grad():  # dimension 0 far above the floor, the rest near 0
        model.encoder.posterior.weight.zero_()
        model.encoder.posterior.bias.zero_()
        model.encoder.posterior.bias[0] = 2.0
    terms = model(tokens, lengths)
    q = model.encoder(tokens, lengths).posterior
    per_dimension = torch.stack([kl_to_standard_normal(q.mean[:, i:i + 1], q.logvar[:, i:i + 1]).mean()
                                 for i in range(5)])
    expected = terms.nll.mean() + per_dimension.clamp_min(floor).sum()
    torch.testing.assert_close(model.objective(terms, {}), expected)
    assert per_dimension[0] > floor and (per_dimension[1:] < floor).all()
    # the whole-term floor would hide dimension 0's excess under the others' shortfall
    whole = small_model(["models.SeqVAE.regularizers = [@regularizers.free_bits()]",
                         f"regularizers.free_bits.nats = {5 * floor}"])
    whole.load_state_dict(model.state_dict())
    assert whole.objective(terms, {}) != model.objective(terms, {})


def test_free_bits_per_dimension_needs_a_prior_that_factorizes():
    with pytest.raises(UserError, match="KL of each latent dimension"):
        small_model(["models.SeqVAE.regularizers = [@regularizers.free_bits()]",
                     "regularizers.free_bits.per_dimension = True", "models.SeqVAE.latent_prior = @priors.mixture"])


def test_free_bits_per_dimension_refuses_a_term_without_dimensions():
    with pytest.raises(UserError, match="per_dimension floors the dimensions of the sentence latent"):
        small_model(["models.SeqVAE.regularizers = [@regularizers.free_bits()]",
                     "regularizers.free_bits.per_dimension = True", "regularizers.free_bits.terms = ['z_t']"])


# -- skip-VAE -------------------------------------------------------------------------------------------------------
def test_skip_vae_output_reads_z_enc_without_the_recurrence_and_never_looks_ahead():
    model = small_model(["decoders.lstm.skip_connections = True"]).eval()
    decoder = model.decoder
    tokens, lengths = batch((6, 6))
    inputs = model.decoder_inputs(tokens, torch.ones_like(tokens, dtype=torch.bool))
    with torch.no_grad():
        decoder.rnn.weight_ih_l0[:, 12:] = 0  # z_enc no longer enters the recurrence
    z = torch.randn(2, 5, dtype=torch.float64)

    def logits(inputs, z):
        return decoder.logits(decoder(inputs, lengths, z, None).hidden)

    assert not torch.allclose(logits(inputs, z), logits(inputs, z + 1.0))  # through the skip alone
    changed = inputs.clone()
    changed[:, 4] = (changed[:, 4] + 1 - UNK) % (VOCAB - UNK - 1) + UNK + 1
    torch.testing.assert_close(logits(changed, z)[:, :4], logits(inputs, z)[:, :4])
    assert not torch.allclose(logits(changed, z)[:, 4:], logits(inputs, z)[:, 4:])
    # generation step by step gives the teacher-forced logits
    state = decoder.start(z, 2)
    for t in range(6):
        step_logits, state = decoder.step(inputs[:, t], state, z)
        torch.testing.assert_close(step_logits, logits(inputs, z)[:, t])


def test_skip_connections_need_a_sentence_latent():
    parse_config(["lstm"], SMALL + ["decoders.lstm.skip_connections = True"])
    with pytest.raises(UserError, match="no sentence latent"):
        build_model(vocab_size=VOCAB, pad_id=PAD, bos_id=BOS, unk_id=UNK, eos_id=EOS)

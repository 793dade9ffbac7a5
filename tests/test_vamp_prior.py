"""VampPrior: the prior holds parameters (pseudo-inputs) and reads the model's encoder; its density is the mixture of
the encoder's posteriors at the pseudo-inputs, computed here one pseudo-input at a time."""

from __future__ import annotations

import math

import gin
import pytest
import torch

from seqvae_zoo import build_model, parse_config
from seqvae_zoo.errors import UserError
from seqvae_zoo.latents.gaussian import GaussianLatent
from seqvae_zoo.priors.vamp import VampPrior

VOCAB, PAD, BOS, EOS, UNK = 23, 0, 1, 2, 3
SMALL = ["EMBEDDING = 12", "HIDDEN = 16", "LATENT = 5", "models.SeqVAE.latent_prior = @priors.vamp",
         "priors.vamp.components = 4", "priors.vamp.length = 3"]


def vamp_model(bindings=(), seed: int = 0):
    parse_config(["vrae"], SMALL + list(bindings))
    torch.manual_seed(seed)
    return build_model(vocab_size=VOCAB, pad_id=PAD, bos_id=BOS, unk_id=UNK, eos_id=EOS).double().eval()


def log_normal(z, mean, logvar):
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mean).pow(2) * torch.exp(-logvar)).sum(-1)


@pytest.mark.parametrize("family", ["gaussian", "vmf"])
def test_the_vamp_density_is_the_mixture_of_the_posteriors_at_the_pseudo_inputs(family):
    model = vamp_model([f"encoders.lstm.family = @latents.{family}"])
    prior = model.latent_prior
    z = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    if family == "vmf":
        z = z / z.norm(dim=-1, keepdim=True)
    per_component = []
    for u in prior.pseudo_inputs:  # (length, embedding) each, through the encoder's LSTM by hand
        output, _ = model.encoder.rnn(u[None])
        parameters = model.encoder.posterior(output[0, -1])
        if family == "gaussian":
            mean, logvar = parameters.chunk(2)
            per_component.append(log_normal(z, mean, logvar))
        else:  # d = 5: I_{3/2}(k) = sqrt(2 / (pi k)) (cosh k - sinh k / k)
            kappa, direction = 50.0, parameters / parameters.norm()
            bessel = math.sqrt(2 / (math.pi * kappa)) * (math.cosh(kappa) - math.sinh(kappa) / kappa)
            log_c = 1.5 * math.log(kappa) - 2.5 * math.log(2 * math.pi) - math.log(bessel)
            per_component.append(log_c + kappa * (z @ direction))
    expected = torch.logsumexp(torch.stack(per_component, dim=1), dim=1) - math.log(4)
    assert torch.allclose(prior.log_prob(z), expected, rtol=1e-10, atol=1e-10)


def test_the_pseudo_inputs_are_the_priors_only_parameters_and_learn():
    """The encoder's weights stay the model's (listed once), the pseudo-inputs are the prior's, and the training loss
    reaches them: they are used."""
    model = vamp_model().train()
    state = model.state_dict()
    assert [key for key in state if key.startswith("latent_prior.")] == ["latent_prior.pseudo_inputs"]
    assert state["latent_prior.pseudo_inputs"].shape == (4, 3, 12)
    tokens = torch.tensor([[5, 6, 7, EOS], [8, 9, EOS, PAD]])
    terms = model(tokens, torch.tensor([4, 3]))
    model.objective(terms, {}).backward()
    assert model.latent_prior.pseudo_inputs.grad.abs().sum() > 0
    assert not torch.allclose(terms.kl["z_enc"], terms.kl["z_enc"][0].expand(2))  # Monte Carlo, per sentence


def test_sampling_draws_each_component_equally_often(monkeypatch):
    """Components given as four narrow Gaussians far apart: a quarter of the draws near each mean, none between."""
    model = vamp_model()
    means = torch.arange(4.0).double()[:, None].expand(4, 5) * 10
    components = GaussianLatent(means, torch.full((4, 5), -12.0).double())
    monkeypatch.setattr(model.latent_prior, "component_posteriors", lambda: components)
    torch.manual_seed(0)
    draws = model.latent_prior.sample(4000)
    nearest = (draws[:, None, :] - means).norm(dim=-1).min(dim=1)
    assert draws.shape == (4000, 5) and (nearest.values < 0.1).all()
    shares = torch.bincount(nearest.indices, minlength=4) / 4000
    assert torch.allclose(shares, torch.full((4,), 0.25), atol=0.03)


def test_bad_vamp_settings_are_refused():
    with pytest.raises(UserError, match="at least one pseudo-input"):
        VampPrior(latent_dim=3, components=0)
    with pytest.raises(UserError, match="SeqVAE's latent_prior"):
        VampPrior(latent_dim=3).log_prob(torch.zeros(2, 3))
    token_reader = small_encoder()
    token_reader.embedding_dim = None
    with pytest.raises(UserError, match="reads only token ids"):
        VampPrior(latent_dim=3).bind(token_reader)


def small_encoder():
    """An LSTM encoder built outside any config (gin's bindings cleared)."""
    from seqvae_zoo.encoders.lstm import LSTMEncoder

    gin.clear_config()
    return LSTMEncoder(vocab_size=VOCAB, pad_id=PAD, embedding_dim=4, hidden_size=4, latent_dim=3)

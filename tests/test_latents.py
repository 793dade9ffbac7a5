"""Latent families: the von Mises-Fisher family's defining properties, checked against closed forms and numerical
integration that share no code with it; the Gaussian family gives the numbers the diagonal Gaussian always gave; and
the model refuses a prior of another family than its encoder's."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from seqvae_zoo import build_model, parse_config
from seqvae_zoo.errors import UserError
from seqvae_zoo.evaluation.latent import mutual_information
from seqvae_zoo.latents.gaussian import GaussianLatent
from seqvae_zoo.latents.vmf import VMFFamily, VonMisesFisher
from seqvae_zoo.priors.base import FamilyMismatchError
from seqvae_zoo.registry import UnknownComponentError

VOCAB, PAD, BOS, EOS, UNK = 23, 0, 1, 2, 3
SMALL = ["EMBEDDING = 12", "HIDDEN = 16", "LATENT = 5"]
VMF = ["encoders.lstm.family = @latents.vmf", "models.SeqVAE.latent_prior = @priors.uniform_sphere"]


def small_model(bindings=(), seed: int = 0):
    parse_config(["vrae"], SMALL + list(bindings))
    torch.manual_seed(seed)
    return build_model(vocab_size=VOCAB, pad_id=PAD, bos_id=BOS, unk_id=UNK, eos_id=EOS).double().eval()


def batch(lengths=(5, 3, 7, 2), seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.full((len(lengths), max(lengths)), PAD)
    for row, length in enumerate(lengths):
        tokens[row, :length - 1] = torch.randint(UNK + 1, VOCAB, (length - 1,), generator=generator)
        tokens[row, length - 1] = EOS
    return tokens, torch.tensor(lengths)


def vmf(directions: torch.Tensor, kappa: float) -> VonMisesFisher:
    directions = F.normalize(directions.double(), dim=-1)
    return VonMisesFisher(directions, torch.full(directions.shape[:-1], kappa, dtype=torch.float64))


def draws(q: VonMisesFisher, count: int, seed: int = 0) -> torch.Tensor:
    """(count, *batch, D) samples of q."""
    return q.map(lambda t: t.expand(count, *t.shape)).rsample(generator=torch.Generator().manual_seed(seed))


def log_surface(dim: int) -> float:
    """log |S^{dim-1}| = log(2 pi^{d/2} / Gamma(d/2))."""
    return math.log(2) + dim / 2 * math.log(math.pi) - math.lgamma(dim / 2)


def log_integral_of_w(dim: int, kappa: float, power: int = 0) -> float:
    """log of int_{-1}^{1} w^power exp(kappa w) (1 - w^2)^{(d-3)/2} dw by the trapezoid rule on a grid dense near
    w = 1, where the mass of a concentrated vMF lies: the marginal of w = mu^T z, up to |S^{d-2}| and C_d."""
    t = torch.linspace(0, 1, 400_001, dtype=torch.float64)
    w = 1 - 2 * t ** 4  # spacing shrinks toward w = 1
    log_f = kappa * (w - 1) + (dim - 3) / 2 * torch.log1p(-w ** 2).nan_to_num(neginf=-1e300)
    f = w ** power * torch.exp(log_f)
    return math.log(abs(torch.trapezoid(f, w).item())) + kappa


# -- von Mises-Fisher ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kappa", [0.3, 4.0, 60.0, 800.0])
def test_vmf_on_the_two_sphere_has_the_known_normalizer_and_mean_length(kappa):
    """d = 3: C_3(kappa) = kappa / (4 pi sinh kappa) and A_3(kappa) = coth(kappa) - 1/kappa (the Langevin function),
    here in forms that do not overflow at kappa = 800."""
    q = vmf(torch.tensor([[0.3, -1.0, 2.0]]), kappa)
    log_c3 = math.log(kappa) - math.log(2 * math.pi) - kappa - math.log1p(-math.exp(-2 * kappa))
    z = q.direction  # log q at the mode is log C + kappa
    assert q.log_prob(z).item() == pytest.approx(log_c3 + kappa, rel=1e-12, abs=1e-12)
    langevin = (1 + math.exp(-2 * kappa)) / (1 - math.exp(-2 * kappa)) - 1 / kappa
    assert q.mean_resultant_length().item() == pytest.approx(langevin, rel=1e-10)


@pytest.mark.parametrize("dim, kappa", [(3, 5.0), (16, 10.0), (32, 80.0), (64, 300.0)])
def test_vmf_samples_lie_on_the_sphere_and_their_mean_resultant_length_is_a_d(dim, kappa):
    """||z|| = 1, and E[mu^T z] = A_d(kappa), here computed by integrating the marginal of w = mu^T z; E[z] points
    along mu (so the reflection takes the first axis to mu, whatever mu)."""
    directions = torch.randn(3, dim, generator=torch.Generator().manual_seed(dim))
    q = vmf(directions, kappa)
    z = draws(q, 20_000)
    assert torch.allclose(z.norm(dim=-1), torch.ones(()).double(), atol=1e-12)
    expected = math.exp(log_integral_of_w(dim, kappa, 1) - log_integral_of_w(dim, kappa))
    w = (z * q.direction).sum(-1)
    standard_error = w.std().item() / math.sqrt(z.size(0))
    assert w.mean(0).sub(expected).abs().max().item() < 5 * standard_error
    assert q.mean_resultant_length()[0].item() == pytest.approx(expected, rel=1e-6)
    along = F.normalize(z.mean(0), dim=-1)
    assert ((along * q.direction).sum(-1) > 0.99).all()


@pytest.mark.parametrize("dim, kappa", [(8, 2.0), (32, 80.0), (50, 500.0)])
def test_vmf_density_integrates_to_one(dim, kappa):
    """int q = C_d(kappa) |S^{d-2}| int exp(kappa w) (1 - w^2)^{(d-3)/2} dw = 1, i.e. log q(mu) - kappa (= log C)
    is minus the log of that integral."""
    q = vmf(torch.ones(1, dim), kappa)
    log_c = q.log_prob(q.direction).item() - kappa
    assert log_c + log_surface(dim - 1) + log_integral_of_w(dim, kappa) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("dim, kappa", [(3, 2.0), (16, 30.0), (32, 150.0)])
def test_vmf_kl_to_the_uniform_prior_matches_monte_carlo_and_ignores_the_direction(dim, kappa):
    """KL(q || U(S^{d-1})) = E_q[log q(z) + log |S^{d-1}|]: the estimate at 40,000 draws is within five standard
    errors; and every mean direction gives the same KL."""
    q = vmf(torch.randn(5, dim, generator=torch.Generator().manual_seed(1)), kappa)
    closed = q.kl_uniform()
    assert torch.allclose(closed, closed[0].expand(5), rtol=0, atol=1e-12)
    log_ratio = q.log_prob(draws(q, 40_000, seed=2)) + log_surface(dim)
    standard_error = log_ratio.std().item() / math.sqrt(log_ratio.size(0))
    assert (log_ratio.mean(0) - closed).abs().max().item() < 5 * standard_error + 1e-9


def test_vmf_kl_between_two_matches_monte_carlo_and_a_distribution_has_none_to_itself():
    dim = 10
    p, q = vmf(torch.randn(1, dim, generator=torch.Generator().manual_seed(3)), 20.0), vmf(torch.ones(1, dim), 7.0)
    log_ratio = (lambda z: p.log_prob(z) - q.log_prob(z))(draws(p, 40_000, seed=4))
    assert p.kl(q).item() == pytest.approx(log_ratio.mean().item(), abs=5 * log_ratio.std().item() / 200)
    assert p.kl(p).item() == pytest.approx(0.0, abs=1e-10)


def test_the_reparameterized_gradient_is_the_gradient_of_the_expectation():
    """E_q[a^T z] = A_d(kappa) a^T mu with mu = p / |p|: the sample's gradient with respect to the encoder's output p,
    averaged over draws, is A_d(kappa) (a - (a^T mu) mu) / |p| (A_d by the integral above)."""
    dim, kappa, count = 6, 40.0, 40_000
    generator = torch.Generator().manual_seed(5)
    output = torch.randn(dim, dtype=torch.float64, generator=generator).requires_grad_()
    a = torch.randn(dim, dtype=torch.float64, generator=generator)
    torch.manual_seed(6)
    z = VMFFamily(latent_dim=dim, kappa=kappa).posterior(output.expand(count, dim)).rsample()
    (z @ a).mean().backward()
    mu = output.detach() / output.detach().norm()
    a_d = math.exp(log_integral_of_w(dim, kappa, 1) - log_integral_of_w(dim, kappa))
    expected = a_d * (a - (a @ mu) * mu) / output.detach().norm()
    assert torch.allclose(output.grad, expected, atol=0.02 * expected.abs().max().item())


def test_moment_matching_a_vmf_with_itself_gives_it_back_and_the_mixture_points_between():
    q = vmf(torch.tensor([[1.0, 2.0, 0.5, -1.0]]).expand(3, 4), 25.0)
    matched = q.moment_matched()
    assert torch.allclose(matched.direction, q.direction[0]) and matched.kappa.item() == pytest.approx(25.0, rel=1e-6)
    two = vmf(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), 25.0).moment_matched()
    assert torch.allclose(two.direction, F.normalize(torch.tensor([1.0, 1.0, 0.0]).double(), dim=0))
    assert two.kappa.item() < 25.0  # the mixture is broader than either


@pytest.mark.parametrize("options, words", [
    ({"kappa": 0.0}, "must be positive"), ({"kappa": -3.0}, "must be positive"), ({"latent_dim": 1}, "d >= 2")])
def test_bad_vmf_settings_are_refused(options, words):
    with pytest.raises(UserError, match=words):
        VMFFamily(**{"latent_dim": 4, **options})


# -- the Gaussian family is the diagonal Gaussian it replaced --------------------------------------------------------
def test_the_gaussian_family_gives_the_numbers_of_the_diagonal_gaussian():
    """Same parameters, same draw, same KL and importance weight as N(mean, exp(logvar)) with N(0, I) computed here;
    the encoder's output layer keeps its shape (checkpoints load)."""
    model = small_model()
    tokens, lengths = batch()
    assert model.encoder.posterior.weight.shape == (10, 16)
    mean, logvar = model.encoder.posterior(model.encoder(tokens, lengths).final).chunk(2, dim=-1)
    torch.manual_seed(3)
    terms = model(tokens, lengths)
    torch.manual_seed(3)
    z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, dtype=mean.dtype)
    assert torch.equal(terms.z_enc, z)
    assert torch.equal(terms.kl["z_enc"], 0.5 * (torch.exp(logvar) + mean.pow(2) - 1.0 - logvar).sum(-1))
    log_normal = lambda x, m, lv: -0.5 * (math.log(2 * math.pi) + lv + (x - m).pow(2) * torch.exp(-lv)).sum(-1)
    expected = log_normal(z, 0, torch.zeros((), dtype=torch.float64)) - log_normal(z, mean, logvar) - terms.nll
    assert torch.allclose(terms.log_weight, expected, rtol=1e-12, atol=1e-12)


def test_mutual_information_of_gaussians_is_the_estimate_it_was():
    """He et al.'s estimator written out for diagonal Gaussians, with the same draws."""
    generator = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(40, 3, generator=generator), torch.randn(40, 3, generator=generator) - 1
    noise = torch.randn(2, 40, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    m, lv = mean.double(), logvar.double()
    z = (m + torch.exp(0.5 * lv) * noise).reshape(-1, 3)
    log_q = -0.5 * (math.log(2 * math.pi) + lv + (z[:, None] - m).pow(2) * torch.exp(-lv)).sum(-1)
    own = log_q.gather(1, torch.arange(40).repeat(2)[:, None])[:, 0]
    expected = (own - torch.logsumexp(log_q, dim=1) + math.log(40)).mean().item()
    value = mutual_information(GaussianLatent(mean, logvar), samples_per_sentence=2, block_size=16,
                               generator=torch.Generator().manual_seed(9))
    assert value == pytest.approx(expected, rel=1e-12)


# -- a vMF model ------------------------------------------------------------------------------------------------------
def test_a_vmf_model_puts_z_enc_on_the_sphere_with_a_constant_kl():
    model = small_model(VMF + ["latents.vmf.kappa = 30.0"])
    tokens, lengths = batch()
    terms = model(tokens, lengths)
    assert torch.allclose(terms.z_enc.norm(dim=-1), torch.ones(()).double(), atol=1e-12)
    assert torch.allclose(terms.kl["z_enc"], terms.kl["z_enc"][0].expand(4), rtol=0, atol=1e-12)
    mean_mode = model(tokens, lengths, latent_mode="posterior_mean")
    assert torch.allclose(mean_mode.z_enc, model.encoder(tokens, lengths).posterior.direction)


@pytest.mark.parametrize("family, prior", [("vmf", "standard_normal"), ("vmf", "mixture"),
                                           ("gaussian", "uniform_sphere")])
def test_a_prior_of_another_family_is_refused_when_the_model_is_built(family, prior):
    with pytest.raises(FamilyMismatchError) as error:
        small_model([f"encoders.lstm.family = @latents.{family}", f"models.SeqVAE.latent_prior = @priors.{prior}"])
    assert f"priors.{prior}" in str(error.value) and f"latents.{family}" in str(error.value)


def test_an_encoder_without_a_latent_family_is_refused_by_the_prior():
    from seqvae_zoo.priors.standard_normal import StandardNormalPrior

    with pytest.raises(FamilyMismatchError, match="declares no latent family"):
        StandardNormalPrior(latent_dim=4).bind(torch.nn.Linear(2, 2))


def test_the_family_may_be_named_by_a_string_and_a_wrong_one_is_refused():
    model = small_model(['encoders.lstm.family = "vmf"', "models.SeqVAE.latent_prior = @priors.uniform_sphere"])
    assert isinstance(model.encoder.family, VMFFamily)
    with pytest.raises(UnknownComponentError, match="Did you mean 'vmf'"):
        small_model(['encoders.lstm.family = "vfm"'])
    with pytest.raises(UserError, match="latent family's name or class"):
        small_model(["encoders.lstm.family = 3"])
